// The ws transport: the `ws` package on node:http / node:https, for systems where no
// uWebSockets.js build loads or where TLS is needed and the loaded build has none.
// It keeps uws's behaviour: per-channel subscriber sets instead of C++ topics, the same
// close codes, size limit, ping schedule and backpressure rule, and the same HTTP answers.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import http, { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocketServer, WebSocket, type RawData } from 'ws';
import { Close, type CloseCode } from '../types.js';
import { limitCloseReason } from './close-reason.js';
import { listenAddress } from './listen-address.js';
import { createUpgradeGate } from './upgrade-gate.js';
import { startKeepalive, type KeptAlive } from './keepalive.js';
import { Outbox, textFrame, type Outlet } from './outbox.js';
import type {
  HttpAnswer,
  SendResult,
  TlsFiles,
  Transport,
  TransportHandlers,
  TransportOptions,
  TransportSocket,
  UpgradeDecision,
  UpgradeRequest,
} from './types.js';

/** Same hard cap as the uws transport. Past it ws closes with 1009 itself (uws cuts with 1006). */
const HARD_FRAME_CAP_BYTES = 1024 * 1024;
/** How long shutdown waits for clients to answer the close frame before cutting them. */
const SHUTDOWN_GRACE_MS = 1500;

/** How long a socket over the backpressure limit has to drain below it before it counts as slow. */
const BACKPRESSURE_GRACE_MS = 100;

/** What a socket closed without a close frame reports (RFC 6455: 1006, never sent on the wire). */
const CUT_CODE = 1006;

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function createWsTransport<S>(options: TransportOptions, handlers: TransportHandlers<S>, tls?: TlsFiles): Transport<S> {
  const server = tls
    ? https.createServer({ cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) })
    : http.createServer();
  /** The subprotocol each accepted upgrade selects, set by the decision just before handleUpgrade asks. */
  const selectedProtocol = new WeakMap<IncomingMessage, string>();
  const wss = new WebSocketServer({
    noServer: true,
    // The server's choice, never simply the first offered (which may be a bearer token).
    handleProtocols: (_offered, req) => selectedProtocol.get(req) ?? false,
    // Above our limit, as for uws: frames between the two get a 1009 with our reason.
    maxPayload: Math.max(HARD_FRAME_CAP_BYTES, options.maxMessageBytes),
    perMessageDeflate: false,
    clientTracking: false,
  });
  const sockets = new Set<WsSocket<S>>();
  /** Topic -> its subscribers (a v1 channel, a v2 subscription: the relay names them). */
  const topics = new Map<string, Set<WsSocket<S>>>();
  const keepalive = startKeepalive(options.idleTimeoutSeconds, () => sockets);
  let closing = false;
  let onEmpty: (() => void) | undefined;

  const gate = createUpgradeGate(options.maxConnections, options.handshakeTimeoutMs);

  const outbox = new Outbox();
  const hub: Hub<S> = {
    maxBackpressureBytes: options.maxBackpressureBytes,
    outbox,
    cut: (socket) => finish(socket, CUT_CODE, ''),
    overBackpressure: (socket, bytes) => {
      // The server closes it with 1008 and a reason; the close frame waits behind
      // what the reader has not read yet, so it arrives once the reader catches up.
      if (handlers.overBackpressure) handlers.overBackpressure(socket, bytes);
      else socket.cut();
    },
    subscribe(topic, socket) {
      let subscribers = topics.get(topic);
      if (subscribers === undefined) topics.set(topic, (subscribers = new Set()));
      subscribers.add(socket);
    },
    unsubscribe(topic, socket) {
      const subscribers = topics.get(topic);
      subscribers?.delete(socket);
      if (subscribers?.size === 0) topics.delete(topic);
    },
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const method = (req.method ?? 'GET').toUpperCase();
    handlers.http({ method, path: pathOf(req) }).then(
      (answer) => writeAnswer(res, answer, method === 'HEAD'),
      () => writeAnswer(res, { status: 500, headers: {}, body: 'Internal error\n' }),
    );
  });

  server.on('upgrade', (req: IncomingMessage, raw: Duplex, head: Buffer) => {
    // The client may go away while its token is checked: note it, and never write to it after.
    let gone = false;
    raw.on('error', () => undefined);
    raw.once('close', () => {
      gone = true;
    });
    if (closing) {
      handlers.refused?.('shutting-down');
      rejectUpgrade(raw, 503, 'Server shutting down');
      return;
    }
    if (!gate.hasRoom(sockets.size)) {
      handlers.refused?.('max-connections');
      rejectUpgrade(raw, 503, 'Too many connections');
      return;
    }
    const settleSlot = gate.hold(() => {
      if (gone || raw.destroyed) return;
      handlers.refused?.('handshake-timeout');
      rejectUpgrade(raw, 503, 'Handshake timed out');
    });
    /** Frees the slot; false when the answer must not be written (already answered, or the client left). */
    const settle = (): boolean => settleSlot() && !gone && !raw.destroyed;
    raw.once('close', () => void settleSlot());
    const remoteAddress = req.socket.remoteAddress ?? '';
    const request: UpgradeRequest = {
      ...splitTarget(req),
      remoteAddress,
      authorization: req.headers.authorization ?? '',
      cookie: req.headers.cookie ?? '',
      protocols: headerText(req.headers['sec-websocket-protocol']),
      origin: req.headers.origin ?? '',
    };
    // ws does its own handshake work on later turns anyway, so a decision made at once
    // takes the same path as one that waited for jose (and a throw becomes a 500).
    new Promise<UpgradeDecision<S>>((resolve) => resolve(handlers.upgrade(request))).then(
      (decision) => {
        if (!settle()) return;
        if (closing) {
          handlers.refused?.('shutting-down');
          rejectUpgrade(raw, 503, 'Server shutting down');
        } else if (!decision.accept) rejectUpgrade(raw, decision.status, decision.reason);
        else {
          if (decision.protocol !== undefined) selectedProtocol.set(req, decision.protocol);
          wss.handleUpgrade(req, raw, head, (ws) => open(ws, raw, decision.session, remoteAddress));
        }
      },
      () => {
        if (!settle()) return;
        handlers.refused?.('internal-error');
        rejectUpgrade(raw, 500, 'Internal error');
      },
    );
  });

  /** Once per socket: on its close event, or at once when the server cuts it (as uws reports a cut). */
  function finish(socket: WsSocket<S>, code: number, reason: string): void {
    if (!sockets.delete(socket)) return;
    for (const topic of socket.topics) hub.unsubscribe(topic, socket);
    handlers.close(socket, code, reason);
    if (sockets.size === 0) onEmpty?.();
  }

  function open(ws: WebSocket, raw: Duplex, session: S, remoteAddress: string): void {
    const socket = new WsSocket(ws, raw, session, remoteAddress, hub);
    sockets.add(socket);
    // ws reports protocol errors (bad UTF-8 in a text frame, a frame over maxPayload) here and
    // then closes with the matching code itself; the close handler below does the bookkeeping.
    ws.on('error', () => undefined);
    ws.on('pong', () => socket.heard());
    ws.on('ping', () => socket.heard());
    ws.on('message', (data: RawData, isBinary: boolean) => {
      socket.heard();
      const bytes = toBuffer(data);
      if (bytes.byteLength > options.maxMessageBytes) {
        socket.close(Close.TooBig, `Message too big: ${bytes.byteLength} bytes, the limit is ${options.maxMessageBytes}`);
        return;
      }
      // ws has already checked text frames (1007); binary frames are read as UTF-8 (PROTOCOL.md §3).
      let text: string;
      try {
        text = isBinary ? utf8.decode(bytes) : bytes.toString('utf8');
      } catch {
        socket.close(Close.BadUtf8, 'Invalid UTF-8 in binary frame');
        return;
      }
      handlers.message(socket, text);
    });
    ws.once('close', (code: number, reason: Buffer) => finish(socket, code, reason.toString('utf8')));
    handlers.open(socket);
  }

  return {
    name: 'ws',
    version: `ws ${wsVersion()} on node:${tls ? 'https' : 'http'}`,
    tlsAvailable: true,

    listen() {
      return new Promise<number>((resolve, reject) => {
        const failed = (err: Error): void =>
          reject(new Error(`cannot listen on ${options.host}:${options.port} (${err.message})`));
        server.once('error', failed);
        server.listen({ host: listenAddress(options.host), port: options.port }, () => {
          server.off('error', failed);
          const address = server.address();
          resolve(typeof address === 'object' && address !== null ? address.port : options.port);
        });
      });
    },

    publish(topic, text, except) {
      const subscribers = topics.get(topic);
      if (subscribers === undefined || subscribers.size === 0) return 0;
      const skipped = except !== undefined && subscribers.has(except as WsSocket<S>);
      if (skipped && subscribers.size === 1) return 0;
      // Framed once for every reader (server frames are not masked); written when the tick ends.
      const frame = textFrame(text);
      const index = outbox.add(frame);
      for (const socket of subscribers) if (socket !== except) outbox.queue(socket, index, frame);
      return subscribers.size - (skipped ? 1 : 0);
    },

    async shutdown(code, reason) {
      closing = true;
      keepalive.stop();
      for (const socket of [...sockets]) socket.close(code, reason);
      server.close();
      server.closeIdleConnections();
      if (sockets.size > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, SHUTDOWN_GRACE_MS);
          onEmpty = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      // Clients that never answered the close frame (a paused reader) are cut.
      for (const socket of [...sockets]) socket.cut();
      server.closeAllConnections();
    },

    socketCount() {
      return sockets.size;
    },
  };
}

/** What a socket needs from its transport. */
interface Hub<S> {
  readonly maxBackpressureBytes: number;
  /** Frames waiting for the end of the tick, shared by every socket of the transport. */
  readonly outbox: Outbox;
  /** The socket was cut: forget it now rather than when its close event comes. */
  cut(socket: WsSocket<S>): void;
  /** The socket has more than maxBackpressureBytes waiting (called once per socket). */
  overBackpressure(socket: WsSocket<S>, bytes: number): void;
  subscribe(topic: string, socket: WsSocket<S>): void;
  unsubscribe(topic: string, socket: WsSocket<S>): void;
}

class WsSocket<S> implements TransportSocket<S>, KeptAlive, Outlet {
  lastInbound = Date.now();
  pingedAt: number | undefined;
  readonly topics = new Set<string>();
  // This tick's frames for the socket, kept by the transport's Outbox (outbox.ts).
  outBytes = 0;
  outFirst = 0;
  outEnd = 0;
  outList: Buffer[] | undefined = undefined;
  private overLimit = false;
  private checkPending = false;

  constructor(
    private readonly ws: WebSocket,
    /** The TCP (or TLS) socket under ws: our frames are written to it directly. */
    private readonly raw: Duplex,
    readonly session: S,
    readonly remoteAddress: string,
    private readonly hub: Hub<S>,
  ) {}

  /** Set while pgws does not read from the socket (flow control). */
  paused = false;

  /** Any inbound frame counts as life, as it does for uWebSockets.js. */
  heard(): void {
    this.lastInbound = Date.now();
    this.pingedAt = undefined;
  }

  send(text: string): SendResult {
    if (this.ws.readyState !== WebSocket.OPEN) return 'dropped';
    const frame = textFrame(text);
    this.hub.outbox.queue(this, this.hub.outbox.add(frame), frame);
    return 'queued';
  }

  /**
   * Writes this tick's frames (Outbox.flush), one whole buffer per write, so a ping, pong or
   * close frame that ws writes to the same socket never lands inside one of them. A socket
   * that is closing or closed gets nothing. The same rule as the uws transport: a socket
   * whose queue grows past the limit is handed to overBackpressure (the server closes it
   * with 1008), never skipped in silence and never left to grow.
   */
  flush(bytes: Buffer): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.raw.write(bytes);
    // ws's bufferedAmount is the raw socket's writable length: what the kernel did not take.
    if (this.ws.bufferedAmount > this.hub.maxBackpressureBytes) this.checkBackpressureSoon();
  }

  /**
   * A tick's burst leaves in one write, so right after it bufferedAmount can count most
   * of the burst, even for a reader that keeps up. The verdict therefore waits: the next
   * turn of the event loop (the kernel has taken what it can), then, if still over, a
   * short grace for the reader to take it. Only a socket over the limit at both checks is
   * slow. Memory per socket stays bounded by the limit plus that grace's traffic.
   */
  private checkBackpressureSoon(): void {
    if (this.checkPending || this.overLimit) return;
    this.checkPending = true;
    setImmediate(() => {
      if (!this.stillOverLimit()) {
        this.checkPending = false;
        return;
      }
      const confirm = setTimeout(() => {
        this.checkPending = false;
        const buffered = this.bufferedAmount();
        if (this.stillOverLimit() && !this.overLimit) {
          this.overLimit = true;
          this.hub.overBackpressure(this, buffered);
        }
      }, BACKPRESSURE_GRACE_MS);
      confirm.unref();
    });
  }

  private stillOverLimit(): boolean {
    return this.bufferedAmount() > this.hub.maxBackpressureBytes;
  }

  close(code: CloseCode, reason: string): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    // Read again, or the client's answering close frame would never be seen.
    this.resume();
    // What this tick published to it goes first, as it would have without the outbox.
    const queued = this.hub.outbox.take(this);
    if (queued !== undefined) this.raw.write(queued);
    this.ws.close(code, limitCloseReason(reason));
  }

  subscribe(topic: string): void {
    if (this.ws.readyState !== WebSocket.OPEN || this.topics.has(topic)) return;
    this.topics.add(topic);
    this.hub.subscribe(topic, this);
  }

  unsubscribe(topic: string): void {
    if (!this.topics.delete(topic)) return;
    this.hub.unsubscribe(topic, this);
  }

  /** The outbox already writes a tick's frames to a socket in one write. */
  cork(write: () => void): void {
    write();
  }

  /** Written but not yet taken by the kernel, plus what this tick queued. */
  bufferedAmount(): number {
    return this.ws.readyState === WebSocket.OPEN ? this.ws.bufferedAmount + this.outBytes : 0;
  }

  /**
   * ws pauses the net.Socket under it: the kernel's buffers fill and TCP stops the client.
   * Frames ws has already read are still emitted.
   */
  pause(): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.pause();
    this.paused = true;
    return true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.heard();
    this.ws.resume();
  }

  ping(): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.ping();
  }

  cut(): void {
    this.ws.terminate();
    this.hub.cut(this);
  }
}

/** The raw path without the query string, as uWebSockets.js's getUrl() gives it. */
function pathOf(req: IncomingMessage): string {
  return splitTarget(req).path;
}

/** The request target's raw path and raw query string (without '?', '' when none, as uWS's getQuery gives it). */
function splitTarget(req: IncomingMessage): { path: string; query: string } {
  const url = req.url ?? '/';
  const query = url.indexOf('?');
  return query === -1 ? { path: url, query: '' } : { path: url.slice(0, query), query: url.slice(query + 1) };
}

/** Node joins repeated headers with ', ' for most names; the rest arrive as arrays. */
function headerText(value: string | string[] | undefined): string {
  return Array.isArray(value) ? value.join(', ') : (value ?? '');
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/**
 * A refused upgrade gets a real HTTP answer on the raw socket, as uws gives it: status,
 * plain-text reason, then the connection is closed.
 */
function rejectUpgrade(raw: Duplex, status: number, reason: string): void {
  const body = `${reason}\n`;
  raw.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Status'}\r\n` +
      'Content-Type: text/plain; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}

function writeAnswer(res: ServerResponse, answer: HttpAnswer, headOnly = false): void {
  const headers: Record<string, string> = { 'Content-Type': 'text/plain; charset=utf-8', ...answer.headers };
  const hasLength = Object.keys(headers).some((name) => name.toLowerCase() === 'content-length');
  if (!hasLength) headers['Content-Length'] = String(Buffer.byteLength(answer.body));
  res.writeHead(answer.status, headers);
  if (headOnly) res.end();
  else res.end(answer.body);
}

const require = createRequire(import.meta.url);

export function wsVersion(): string {
  try {
    return (require('ws/package.json') as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
