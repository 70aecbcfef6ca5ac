// The composition root: the only module that wires auth, database, relay,
// HTTP and transport together. start(config) returns a running server with an
// ordered, idempotent stop(), so tests can run many servers in one process.
import { EventEmitter } from 'node:events';
import { createAuthenticator, channelFromPath } from './auth/index.js';
import { createListener } from './db/listener.js';
import { createNotifier } from './db/notifier.js';
import { bannerAnswer } from './http/banner.js';
import { createStaticHandler } from './http/static.js';
import { createLogger, type Logger } from './log.js';
import { createRelay, type Session } from './relay.js';
import { createTransport, planTransport, TransportUnavailableError } from './transport/select.js';
import type { HttpAnswer, HttpRequest, TransportHandlers } from './transport/types.js';
import { Close, type Config } from './types.js';

/** Frames larger than this can never fit a NOTIFY (8000 bytes), so they are refused at the socket. */
export const MAX_FRAME_BYTES = 8 * 1024;
/** Bytes queued for one slow reader before it is closed rather than let memory grow. */
export const MAX_BACKPRESSURE_BYTES = 1024 * 1024;
/** Idle seconds before the server pings; ~30 s keeps sockets alive through common proxies (60 s timeouts). */
export const IDLE_TIMEOUT_SECONDS = 32;

export interface ServerEvents {
  'listener-ready': [pid: number];
  'listener-lost': [reason: string];
  /** The listener is gone for good (PGWS_CHECK_LISTENER_INTERVAL unset): the process must exit non-zero. */
  fatal: [error: Error];
}

export interface RunningServer {
  readonly port: number;
  readonly transport: string;
  readonly events: EventEmitter<ServerEvents>;
  listenerPid(): number | undefined;
  socketCount(): number;
  /** Refuses new sockets, closes open ones with 1001, ends database connections. Safe to call twice. */
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly log?: Logger;
  /** Overrides IDLE_TIMEOUT_SECONDS, so keep-alive tests need not wait half a minute. */
  readonly idleTimeoutSeconds?: number;
}

export async function start(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  const log = options.log ?? createLogger(config.logLevel);
  const { dbUri, jwtSecret } = config;
  if (dbUri === undefined || jwtSecret === undefined) {
    throw new Error('start() needs a database URI and a JWT secret (embedded mode fills them in before calling it)');
  }
  const events = new EventEmitter<ServerEvents>();
  const authenticator = await createAuthenticator({ jwtSecret, jwtSecretIsBase64: config.jwtSecretIsBase64 });
  const serveStatic = config.rootPath ? await createStaticHandler(config.rootPath) : undefined;

  const notifier = createNotifier(dbUri, config.poolSize);
  let relayRef: ReturnType<typeof createRelay> | undefined;
  const listener = createListener({
    uri: dbUri,
    channel: config.listenChannel,
    checkIntervalMs: config.checkListenerInterval,
    log,
    onNotification: (channel, payload) => relayRef?.onNotification(channel, payload),
    onFatal: (error) => events.emit('fatal', error),
  });
  // A listener lost while still starting would be emitted before anyone subscribes to `events`.
  let fatalWhileStarting: Error | undefined;
  const noteFatal = (error: Error): void => {
    fatalWhileStarting ??= error;
  };
  events.on('fatal', noteFatal);
  listener.on('ready', (pid) => events.emit('listener-ready', pid));
  listener.on('lost', (reason) => events.emit('listener-lost', reason));

  try {
    await listener.start(config.retries);
    await notifier.ping();
  } catch (err) {
    await Promise.all([listener.stop(), notifier.stop().catch(() => undefined)]);
    throw err;
  }

  let stopping = false;
  const handlers: TransportHandlers<Session> = {
    async upgrade(req) {
      if (stopping) return { accept: false, status: 503, reason: 'Server shutting down' };
      const result = await authenticator.authorize(req.path);
      if (!result.ok) {
        // The path holds the token: only its channel part is logged.
        log.warn({ status: result.status, reason: result.reason, remote: req.remoteAddress, channel: channelFromPath(req.path) }, 'handshake rejected');
        return { accept: false, status: result.status, reason: result.reason };
      }
      return { accept: true, session: relay.newSession(result.grant) };
    },
    open(socket) {
      log.debug({ channels: socket.session.grant.channels, mode: socket.session.grant.mode, remote: socket.remoteAddress }, 'socket open');
      relay.onOpen(socket);
    },
    message: (socket, text) => relay.onFrame(socket, text),
    close: (socket, code) => relay.onClose(socket, code),
    http: (req) => answerHttp(req),
  };

  async function answerHttp(req: HttpRequest): Promise<HttpAnswer> {
    if (!serveStatic) return bannerAnswer(req.method);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return { status: 405, headers: { Allow: 'GET, HEAD' }, body: 'Method not allowed\n' };
    }
    return serveStatic(req.path, req.method);
  }

  const tls =
    config.certificateFile && config.keyFile ? { certFile: config.certificateFile, keyFile: config.keyFile } : undefined;
  let transport;
  try {
    const plan = planTransport(config.transport, tls !== undefined);
    if (!plan.ok) throw new TransportUnavailableError(plan.error);
    if (plan.fallback !== undefined) log.warn({ transport: plan.engine }, plan.fallback);
    transport = createTransport<Session>(
      plan.engine,
      { host: config.host, port: config.port, maxMessageBytes: MAX_FRAME_BYTES, maxBackpressureBytes: MAX_BACKPRESSURE_BYTES, idleTimeoutSeconds: options.idleTimeoutSeconds ?? IDLE_TIMEOUT_SECONDS },
      handlers,
      tls,
    );
  } catch (err) {
    await Promise.all([listener.stop(), notifier.stop()]);
    throw err;
  }
  const activeTransport = transport;
  const relay = createRelay({
    listenChannel: config.listenChannel,
    metaChannel: config.metaChannel,
    notifier,
    publish: (channel, text) => void activeTransport.publish(channel, text),
    log,
  });
  relayRef = relay;

  let port: number;
  try {
    port = await transport.listen();
  } catch (err) {
    await Promise.all([listener.stop(), notifier.stop()]);
    throw err;
  }
  events.off('fatal', noteFatal);
  if (fatalWhileStarting !== undefined) {
    await transport.shutdown(Close.GoingAway, 'server shutting down');
    await Promise.all([listener.stop(), notifier.stop().catch(() => undefined)]);
    throw fatalWhileStarting;
  }
  log.info({ port, host: config.host, tls: tls !== undefined, transport: `${transport.name} (${transport.version})` }, 'pgws ready');

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      stopping = true;
      await activeTransport.shutdown(Close.GoingAway, 'server shutting down');
      await listener.stop();
      await notifier.stop().catch(() => undefined);
      log.info('pgws stopped');
    })());

  return {
    port,
    transport: activeTransport.name,
    events,
    listenerPid: () => listener.pid(),
    socketCount: () => activeTransport.socketCount(),
    stop,
  };
}
