// The uWebSockets.js transport: WebSockets and HTTP on one port, fan-out through
// uWS's C++ topics (one topic per channel), so publishing never loops in JavaScript.
import type { HttpResponse, TemplatedApp, WebSocket, us_listen_socket, us_socket_context_t } from 'uWebSockets.js';
import { Close, type CloseCode } from '../types.js';
import { limitCloseReason } from './close-reason.js';
import { listenAddress } from './listen-address.js';
import { createUpgradeGate } from './upgrade-gate.js';
import { loadUws, type LoadedUws } from './uws-loader.js';
import type {
  HttpAnswer,
  SendResult,
  Transport,
  TransportHandlers,
  TransportOptions,
  TransportSocket,
  UpgradeDecision,
  UpgradeRequest,
} from './types.js';

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

/** Per-socket state kept in uWS's user data. */
interface UserData<S> {
  session: S;
  /** The client's address if the upgrade already read it; else the socket reads it when asked. */
  remoteAddress: string | undefined;
  closed: boolean;
  handle: UwsSocket<S> | undefined;
}

/** Frames above this are cut by uWS itself (the client sees 1006); below it, our limit answers 1009. */
export const HARD_FRAME_CAP_BYTES = 1024 * 1024;

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function createUwsTransport<S>(
  options: TransportOptions,
  handlers: TransportHandlers<S>,
  tls?: TlsFiles,
): Transport<S> {
  const loaded = loadUws();
  if (tls && !loaded.supportsTls) {
    throw new Error(
      `TLS was asked for (PGWS_CERTIFICATE_FILE, PGWS_KEY_FILE) but the loaded uWebSockets.js build, ${loaded.build}, has no TLS. ` +
        'Run on a system where uWebSockets.js 20.57 loads (glibc >= 2.38), or terminate TLS in a proxy in front of pgws.',
    );
  }
  const { uws } = loaded;
  const app: TemplatedApp = tls
    ? uws.SSLApp({ cert_file_name: tls.certFile, key_file_name: tls.keyFile })
    : uws.App();
  const sockets = new Set<UwsSocket<S>>();
  let listenSocket: us_listen_socket | undefined;
  let closing = false;
  const gate = createUpgradeGate(options.maxConnections, options.handshakeTimeoutMs);

  // Slow readers are found here and handed to overBackpressure, not left to
  // uWS: its closeOnBackpressureLimit cuts a socket without a close code, and
  // its maxBackpressure drops messages in silence, close frame included. A
  // socket's buffer grows only by what is published (pgws sends nothing else),
  // so every time half the limit was published, the buffers are checked on the
  // next turn of the event loop, after uWS has written that turn's publishes.
  let publishedSinceCheck = 0;
  let checkScheduled = false;
  const checkEvery = Math.max(1, Math.floor(options.maxBackpressureBytes / 2));
  function checkBackpressure(): void {
    checkScheduled = false;
    if (!handlers.overBackpressure) return;
    for (const socket of sockets) {
      const bytes = socket.bufferedAmount();
      if (bytes > options.maxBackpressureBytes) handlers.overBackpressure(socket, bytes);
    }
  }

  /** Writes the decision on an upgrade: the 101 (the socket opens) or the refusal. */
  function answer(upgrade: PendingUpgrade, decision: UpgradeDecision<S>): void {
    const { res } = upgrade;
    if (closing) {
      handlers.refused?.('shutting-down');
      writeAnswer(res, { status: 503, headers: {}, body: 'Server shutting down\n' });
    } else if (decision.accept) {
      const data: UserData<S> = { session: decision.session, remoteAddress: upgrade.request.addressIfRead(), closed: false, handle: undefined };
      // The subprotocol is the server's choice: never simply the first offered, which may be a bearer token.
      res.upgrade(data, upgrade.key, decision.protocol ?? '', upgrade.extensions, upgrade.context);
    } else {
      writeAnswer(res, { status: decision.status, headers: {}, body: `${decision.reason}\n` });
    }
  }

  app.ws<UserData<S>>('/*', {
    // uWS drops a connection without a close frame past maxPayloadLength, so it is
    // set well above our limit and frames over our limit get a proper 1009 below.
    maxPayloadLength: Math.max(HARD_FRAME_CAP_BYTES, options.maxMessageBytes),
    // 0 = uWS never drops: the check above closes a slow socket instead, so
    // its close frame always gets queued behind what it has not read yet.
    maxBackpressure: 0,
    closeOnBackpressureLimit: false,
    idleTimeout: options.idleTimeoutSeconds,
    sendPingsAutomatically: true,

    upgrade: (res, req, context) => {
      // The request object lives on the stack: copy everything before any await.
      const path = req.getUrl();
      const key = req.getHeader('sec-websocket-key');
      const extensions = req.getHeader('sec-websocket-extensions');
      const headers: UpgradeHeaders = {
        query: req.getQuery() ?? '',
        authorization: req.getHeader('authorization'),
        cookie: req.getHeader('cookie'),
        protocols: req.getHeader('sec-websocket-protocol'),
        origin: req.getHeader('origin'),
      };
      if (closing) {
        handlers.refused?.('shutting-down');
        writeAnswer(res, { status: 503, headers: {}, body: 'Server shutting down\n' });
        return;
      }
      if (!gate.hasRoom(sockets.size)) {
        handlers.refused?.('max-connections');
        writeAnswer(res, { status: 503, headers: {}, body: 'Too many connections\n' });
        return;
      }
      const request = new UwsUpgradeRequest(path, headers, res);
      const upgrade: PendingUpgrade = { res, context, key, extensions, request };

      let pending: UpgradeDecision<S> | Promise<UpgradeDecision<S>>;
      try {
        pending = handlers.upgrade(request);
      } catch {
        request.release();
        // A throw inside a uWS callback would take the process down; a rejection gets 500.
        handlers.refused?.('internal-error');
        writeAnswer(res, { status: 500, headers: {}, body: 'Internal error\n' });
        return;
      }
      if (!(pending instanceof Promise)) {
        // Decided at once (most tokens: the fast path, the token cache). Answered inside this callback,
        // where uWS has the response corked already: no slot to hold, no timer, no abort
        // handler, no later turn of the event loop, and no closure.
        answer(upgrade, pending);
        request.release();
        return;
      }
      // The response may be gone when the decision comes: its address is read now, for the logs.
      request.pinAddress();

      let aborted = false;
      const settle = gate.hold(() => {
        if (aborted) return;
        handlers.refused?.('handshake-timeout');
        res.cork(() => writeAnswer(res, { status: 503, headers: {}, body: 'Handshake timed out\n' }));
      });
      /** Frees the slot; true when this is the answer to write (the first one, to a client still there). */
      const finish = (): boolean => settle() && !aborted;
      // uWS keeps one abort handler per response: this one also frees the slot.
      res.onAborted(() => {
        aborted = true;
        settle();
      });
      pending.then(
        (decision) => {
          if (finish()) res.cork(() => answer(upgrade, decision));
        },
        () => {
          if (!finish()) return;
          handlers.refused?.('internal-error');
          res.cork(() => writeAnswer(res, { status: 500, headers: {}, body: 'Internal error\n' }));
        },
      );
    },

    open: (ws) => {
      const socket = new UwsSocket(ws);
      ws.getUserData().handle = socket;
      sockets.add(socket);
      handlers.open(socket);
    },

    message: (ws, message, isBinary) => {
      const socket = ws.getUserData().handle;
      if (!socket) return;
      if (message.byteLength > options.maxMessageBytes) {
        socket.close(Close.TooBig, `Message too big: ${message.byteLength} bytes, the limit is ${options.maxMessageBytes}`);
        return;
      }
      // Text frames are UTF-8-checked by uWS itself (it closes with 1007);
      // binary frames are read as UTF-8 text per PROTOCOL.md §3.
      let text: string;
      try {
        text = isBinary ? utf8.decode(message) : Buffer.from(message).toString('utf8');
      } catch {
        socket.close(Close.BadUtf8, 'Invalid UTF-8 in binary frame');
        return;
      }
      handlers.message(socket, text);
    },

    close: (ws, code, message) => {
      const data = ws.getUserData();
      data.closed = true;
      const socket = data.handle;
      if (!socket) return;
      sockets.delete(socket);
      handlers.close(socket, code, Buffer.from(message).toString('utf8'));
    },
  });

  app.any('/*', (res, req) => {
    const method = req.getMethod().toUpperCase();
    const path = req.getUrl();
    // uWS closes the connection after answering a request that asked for it, but does not
    // say so in the answer; a keep-alive client (Node's agent, a kubelet probe) would then
    // reuse a connection that is going away. The answer must carry the header itself.
    const closeAfter = /(^|,)\s*close\s*(,|$)/i.test(req.getHeader('connection'));
    const finalHeaders: Readonly<Record<string, string>> = closeAfter ? { Connection: 'close' } : {};
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    handlers.http({ method, path }).then(
      (answer) => {
        if (!aborted) res.cork(() => writeAnswer(res, { ...answer, headers: { ...answer.headers, ...finalHeaders } }, method === 'HEAD'));
      },
      () => {
        if (!aborted) res.cork(() => writeAnswer(res, { status: 500, headers: finalHeaders, body: 'Internal error\n' }));
      },
    );
  });

  return {
    name: 'uws',
    version: `${loaded.build} ${loaded.version}`,
    tlsAvailable: loaded.supportsTls,

    listen() {
      return new Promise<number>((resolve, reject) => {
        const done = (socket: us_listen_socket | false): void => {
          if (!socket) {
            reject(new Error(`cannot listen on ${options.host}:${options.port} (address in use, or not available on this host)`));
            return;
          }
          listenSocket = socket;
          resolve(uws.us_socket_local_port(socket));
        };
        app.listen(listenAddress(options.host), options.port, done);
      });
    },

    publish(topic, text, except) {
      // uWS's WebSocket.publish sends to every subscriber but the socket it is called on.
      const from = except instanceof UwsSocket ? except.publisher() : undefined;
      const anyone = from === undefined ? app.publish(topic, text, false, false) : from.publish(topic, text, false, false);
      if (!anyone) return 0;
      // Frame headers add at most 14 bytes per message: counted too.
      publishedSinceCheck += Buffer.byteLength(text) + 14;
      if (publishedSinceCheck >= checkEvery && !checkScheduled) {
        publishedSinceCheck = 0;
        checkScheduled = true;
        setImmediate(checkBackpressure);
      }
      return app.numSubscribers(topic) - (from?.isSubscribed(topic) === true ? 1 : 0);
    },

    async shutdown(code, reason) {
      closing = true;
      for (const socket of [...sockets]) socket.close(code, reason);
      if (listenSocket) {
        uws.us_listen_socket_close(listenSocket);
        listenSocket = undefined;
      }
    },

    socketCount() {
      return sockets.size;
    },
  };
}

/** The request's headers pgws reads, copied from the stack-allocated request. */
type UpgradeHeaders = Omit<UpgradeRequest, 'path' | 'remoteAddress'>;

/** What answering an upgrade needs, copied from the stack-allocated request. */
interface PendingUpgrade {
  readonly res: HttpResponse;
  readonly context: us_socket_context_t;
  readonly key: string;
  readonly extensions: string;
  readonly request: UwsUpgradeRequest;
}

/**
 * The request as the server sees it. The client's address is read from uWS only when asked
 * for (the log line of a refusal): uWS hands it over as a new ArrayBuffer, and making one
 * per handshake cost about a tenth of a handshake's CPU (bench: connections).
 */
class UwsUpgradeRequest implements UpgradeRequest {
  private address: string | undefined;
  private released = false;
  readonly query: string;
  readonly authorization: string;
  readonly cookie: string;
  readonly protocols: string;
  readonly origin: string;

  constructor(
    readonly path: string,
    headers: UpgradeHeaders,
    private readonly res: HttpResponse,
  ) {
    this.query = headers.query;
    this.authorization = headers.authorization;
    this.cookie = headers.cookie;
    this.protocols = headers.protocols;
    this.origin = headers.origin;
  }

  get remoteAddress(): string {
    // Once answered, the response may be gone: an address never read stays unknown.
    if (this.address === undefined && !this.released) this.address = Buffer.from(this.res.getRemoteAddressAsText()).toString();
    return this.address ?? '';
  }

  /** Reads the address while the response is certainly there, for a decision that comes later. */
  pinAddress(): void {
    void this.remoteAddress;
  }

  /** The response was answered (or handed on): the address is no longer read from it. */
  release(): void {
    this.released = true;
  }

  addressIfRead(): string | undefined {
    return this.address;
  }
}

class UwsSocket<S> implements TransportSocket<S> {
  readonly session: S;
  /** The client's address once read: from the upgrade, or from uWS on first use (logs only). */
  private address: string | undefined;

  constructor(private readonly ws: WebSocket<UserData<S>>) {
    const data = ws.getUserData();
    this.session = data.session;
    this.address = data.remoteAddress;
  }

  /** Read on first use, as the upgrade's: '' for a socket closed before anyone asked, when uWS no longer has it. */
  get remoteAddress(): string {
    if (this.address === undefined && !this.closed) this.address = Buffer.from(this.ws.getRemoteAddressAsText()).toString();
    return this.address ?? '';
  }

  private get closed(): boolean {
    return this.ws.getUserData().closed;
  }

  /** The uWS socket to publish from so that this one is left out; undefined once closed. */
  publisher(): WebSocket<UserData<S>> | undefined {
    return this.closed ? undefined : this.ws;
  }

  send(text: string): SendResult {
    if (this.closed) return 'dropped';
    // uWS: 1 = written, 0 = queued under backpressure, 2 = dropped (over the limit).
    const status = this.ws.send(text, false, false);
    return status === 1 ? 'sent' : status === 0 ? 'queued' : 'dropped';
  }

  close(code: CloseCode, reason: string): void {
    if (this.closed) return;
    this.ws.end(code, limitCloseReason(reason));
  }

  subscribe(topic: string): void {
    if (!this.closed) this.ws.subscribe(topic);
  }

  unsubscribe(topic: string): void {
    if (!this.closed) this.ws.unsubscribe(topic);
  }

  cork(write: () => void): void {
    if (this.closed) write();
    else this.ws.cork(write);
  }

  bufferedAmount(): number {
    return this.closed ? 0 : this.ws.getBufferedAmount();
  }

  /**
   * uWebSockets.js cannot stop reading a WebSocket: its C++ sockets can pause, but neither
   * build in use (20.30, 20.57) exposes that to JavaScript; HttpResponse alone has pause().
   * The relay then holds what the socket sends, up to its limit.
   */
  pause(): boolean {
    return false;
  }

  resume(): void {
    // Nothing was paused.
  }
}


/** A client may offer several subprotocols; echoing the whole list would fail the handshake. */
const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

function writeAnswer(res: HttpResponse, answer: HttpAnswer, headOnly = false): void {
  res.writeStatus(`${answer.status} ${STATUS_TEXT[answer.status] ?? 'Status'}`);
  const headers: Record<string, string> = { 'Content-Type': 'text/plain; charset=utf-8', ...answer.headers };
  for (const [name, value] of Object.entries(headers)) {
    // uWS writes Content-Length itself from the body it is given.
    if (name.toLowerCase() !== 'content-length') res.writeHeader(name, value);
  }
  if (headOnly) {
    const length = headers['Content-Length'] ?? String(Buffer.byteLength(answer.body));
    res.endWithoutBody(Number(length));
  } else {
    res.end(answer.body);
  }
}

export type { LoadedUws };
