// Ceiling (b), raw fan-out: a bare uWebSockets.js server with no database and
// no auth. A socket on /<channel>/<anything> is subscribed to <channel>. The
// producer feeds it over a plain TCP connection (lines "<channel>\t<payload>"),
// read by a Node socket exactly as pgws reads notifications from PostgreSQL,
// and each line is published as is through the same C++ topics, with the same
// socket options: pgws minus the database, the routing and the auth.
// A line may name several topics, "<topic>,<topic>,...\t<payload>": the payload is
// published to each (the v2 scenarios: a notification that matches many filters is one
// frame per subscription topic, and the producer's core could not build them all).
// With protocol v2 the payload is pgws's `message` frame and the topics stand for its
// subscriptions (/f7/x: the sockets of filter 7): what pgws publishes, minus parsing,
// filtering and building frames.
// (Publishing from inside a uWS message handler instead would write each
// message separately instead of letting uWS batch them per socket, a much
// lower and misleading "ceiling".) It is also the handshake ceiling.
import net from 'node:net';
import { loadUws } from '../../dist/transport/uws-loader.js';

export async function start(listenPort = 0) {
  const { uws } = loadUws();
  const app = uws.App();
  let listenSocket;
  const sockets = new Set();
  app.ws('/*', {
    maxPayloadLength: 1024 * 1024,
    maxBackpressure: 1024 * 1024,
    closeOnBackpressureLimit: true,
    idleTimeout: 32,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      const url = req.getUrl();
      const channel = decodeURIComponent(url.split('/')[1] ?? '');
      res.upgrade(
        { channel },
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open: (ws) => {
      sockets.add(ws);
      ws.subscribe(ws.getUserData().channel);
    },
    close: (ws) => sockets.delete(ws),
  });
  const port = await new Promise((resolve, reject) =>
    app.listen('127.0.0.1', listenPort, (s) => {
      if (!s) return reject(new Error('bare uWS could not listen'));
      listenSocket = s;
      resolve(uws.us_socket_local_port(s));
    }),
  );
  const feed = net.createServer((socket) => {
    let rest = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk) => {
      const text = rest + chunk;
      let start = 0;
      for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
        const tab = text.indexOf('\t', start);
        const topic = text.slice(start, tab);
        if (topic.includes(',')) {
          const payload = text.slice(tab + 1, nl);
          for (const each of topic.split(',')) app.publish(each, payload, false, false);
        } else app.publish(topic, text.slice(tab + 1, nl), false, false);
        start = nl + 1;
      }
      rest = text.slice(start);
    });
    socket.on('error', () => undefined);
  });
  await new Promise((resolve) => feed.listen(0, '127.0.0.1', resolve));
  return {
    port,
    feedPort: feed.address().port,
    async stop() {
      feed.close();
      for (const ws of [...sockets]) ws.end(1001, 'bye');
      uws.us_listen_socket_close(listenSocket);
    },
  };
}
