// The relay most people write by hand on day one: `ws` for sockets, `pg`
// (node-postgres) for one LISTEN client and a pool for NOTIFY, jose for the
// JWT, and a JavaScript loop over the sockets of a channel. It speaks the same
// protocol as pgws (PROTOCOL.md §1-3: both URL forms, r/w/rw, the same
// envelope, 8000-byte NOTIFY limit), so the same clients work against both.
// Plain and correct, not tuned, not crippled.
import http from 'node:http';
import { importJWK, jwtVerify } from 'jose';
import pg from 'pg';
import { WebSocketServer } from 'ws';

const LISTEN_CHANNEL = 'postgres-websockets-listener';

export async function start(dbUri, secret, port = 0) {
  const key = await verificationKey(secret);
  const pool = new pg.Pool({ connectionString: dbUri, max: 10 });
  const listener = new pg.Client({ connectionString: dbUri });
  /** channel -> Set of sockets that may read it */
  const readers = new Map();

  await listener.connect();
  await listener.query(`LISTEN "${LISTEN_CHANNEL}"`);
  listener.on('notification', (msg) => {
    const payload = msg.payload ?? '';
    let channel = msg.channel;
    try {
      const parsed = JSON.parse(payload);
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed) && typeof parsed.channel === 'string') {
        channel = parsed.channel;
      }
    } catch {
      // not JSON: goes to the database channel
    }
    const sockets = readers.get(channel);
    if (!sockets) return;
    for (const ws of sockets) if (ws.readyState === ws.OPEN) ws.send(payload);
  });

  const server = http.createServer((req, res) => res.end('baseline relay\n'));
  const wss = new WebSocketServer({ noServer: true, maxPayload: 8 * 1024 });

  server.on('upgrade', async (req, socket, head) => {
    const grant = await authorize(req.url ?? '/', key).catch((err) => ({ status: 401, reason: err.message }));
    if (grant.status) {
      socket.end(`HTTP/1.1 ${grant.status} Refused\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n${grant.reason}\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => onOpen(ws, grant));
  });

  function onOpen(ws, grant) {
    if (grant.mode !== 'w') {
      for (const channel of grant.channels) {
        if (!readers.has(channel)) readers.set(channel, new Set());
        readers.get(channel).add(ws);
      }
    }
    ws.on('close', () => {
      for (const channel of grant.channels) {
        const set = readers.get(channel);
        set?.delete(ws);
        if (set?.size === 0) readers.delete(channel);
      }
    });
    ws.on('message', async (data) => {
      if (grant.mode === 'r') return;
      const text = data.toString('utf8');
      const claims = { ...grant.claims, message_delivered_at: Date.now() / 1000 };
      for (const channel of grant.channels) {
        const envelope = JSON.stringify({ event: 'WebsocketMessage', channel, payload: text, claims });
        if (Buffer.byteLength(envelope) >= 8000) {
          ws.close(1009, 'Message too big');
          return;
        }
        try {
          await pool.query('SELECT pg_notify($1, $2)', [LISTEN_CHANNEL, envelope]);
        } catch {
          ws.close(1011, 'Database error: message not delivered');
          return;
        }
      }
    });
  }

  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    async stop() {
      for (const ws of wss.clients) ws.terminate();
      server.close();
      await Promise.all([listener.end(), pool.end()]);
    },
  };
}

/** An HMAC secret, or an identity provider's public key as a JWK (JSON) naming its `alg`. */
async function verificationKey(secret) {
  if (!secret.trim().startsWith('{')) return { key: new TextEncoder().encode(secret), algorithms: ['HS256', 'HS384', 'HS512'] };
  const jwk = JSON.parse(secret);
  return { key: await importJWK(jwk, jwk.alg), algorithms: [jwk.alg] };
}

/** PROTOCOL.md §1: /<channel>/<jwt> or /<jwt>; returns {mode, channels, claims} or {status, reason}. */
async function authorize(url, { key, algorithms }) {
  const segments = url.split('?')[0].split('/').filter((s, i, all) => !(s === '' && (i === 0 || i === all.length - 1)));
  if (segments.length > 2) return { status: 400, reason: 'Bad request' };
  const [first, second] = segments.map(decodeURIComponent);
  const requested = second === undefined ? undefined : first;
  const token = second ?? first ?? '';
  const claims = token === '' ? {} : (await jwtVerify(token, key, { algorithms })).payload;
  if (!['r', 'w', 'rw'].includes(claims.mode)) return { status: 401, reason: 'Missing mode' };
  const allowed = [...new Set([...(typeof claims.channel === 'string' ? [claims.channel] : []), ...(Array.isArray(claims.channels) ? claims.channels : [])])];
  let channels;
  if (requested === undefined) channels = allowed;
  else if (allowed.length === 0 || allowed.includes(requested)) channels = [requested];
  else channels = [];
  if (channels.length === 0) return { status: 403, reason: 'No allowed channels' };
  return { mode: claims.mode, channels, claims };
}
