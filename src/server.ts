// The composition root: the only module that wires auth, database, relay,
// HTTP and transport together. start(config) returns a running server with an
// ordered, idempotent stop(), so tests can run many servers in one process.
import { EventEmitter } from 'node:events';
import { createAuthenticator, channelFromPath, type AuthResult } from './auth/index.js';
import { createListener } from './db/listener.js';
import { createNotifier } from './db/notifier.js';
import { bannerAnswer } from './http/banner.js';
import { createStaticHandler } from './http/static.js';
import { createLogger, type Logger } from './log.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createRelay, type Session } from './relay.js';
import { delay } from './timer.js';
import { createTransport, planTransport, TransportUnavailableError } from './transport/select.js';
import type { HttpAnswer, HttpRequest, TransportHandlers, UpgradeDecision } from './transport/types.js';
import { Close, type Config } from './types.js';

/** How long stop() lets frames already accepted reach the database before ending its connections. */
const STOP_FLUSH_MS = 2000;
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
  /** Counters of failures, refusals and recoveries (src/metrics.ts), for tests and a metrics endpoint. */
  readonly metrics: Metrics;
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
  /** A fatal loss before start() returns has no subscriber yet: start() fails with it instead. */
  let fatalDuringStart: Error | undefined;
  const metrics = createMetrics();
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
    onFatal: (error) => {
      fatalDuringStart ??= error;
      events.emit('fatal', error);
    },
  });
  listener.on('ready', (pid) => events.emit('listener-ready', pid));
  listener.on('lost', (reason) => {
    metrics.markListenerLost();
    events.emit('listener-lost', reason);
  });
  listener.on('recovered', (blindMs) => metrics.markListenerRecovered(blindMs));

  try {
    await listener.start(config.retries);
    await notifier.ping();
  } catch (err) {
    await Promise.all([listener.stop(), notifier.stop().catch(() => undefined)]);
    throw err;
  }

  let stopping = false;
  const handlers: TransportHandlers<Session> = {
    upgrade(req) {
      if (stopping) return { accept: false, status: 503, reason: 'Server shutting down' };
      const decide = (result: AuthResult): UpgradeDecision<Session> => {
        if (!result.ok) {
          // The path holds the token: only its channel part is logged.
          log.warn({ status: result.status, reason: result.reason, remote: req.remoteAddress, channel: channelFromPath(req.path) }, 'handshake rejected');
          return { accept: false, status: result.status, reason: result.reason };
        }
        return { accept: true, session: relay.newSession(result.grant) };
      };
      // Most tokens are decided at once (the HMAC fast path); only jose's verdicts wait.
      const result = authenticator.authorize(req.path);
      return result instanceof Promise ? result.then(decide) : decide(result);
    },
    open(socket) {
      log.debug({ channels: socket.session.grant.channels, mode: socket.session.grant.mode, remote: socket.remoteAddress }, 'socket open');
      relay.onOpen(socket);
    },
    message: (socket, text) => relay.onFrame(socket, text),
    close: (socket, code) => {
      metrics.markClosed(code);
      relay.onClose(socket, code);
    },
    http: (req) => answerHttp(req),
    overBackpressure(socket, bytes) {
      metrics.markSlowReader();
      log.warn({ channels: socket.session.grant.channels, remote: socket.remoteAddress, bytes }, 'slow reader; closing it');
      socket.close(Close.PolicyViolation, `Slow reader: ${bytes} bytes waiting, the limit is ${config.maxBackpressure}`);
    },
    refused(why) {
      if (why === 'max-connections') metrics.markConnectionRefused();
      else metrics.markHandshakeTimeout();
      log.warn({ why }, 'upgrade refused with 503');
    },
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
      {
        host: config.host,
        port: config.port,
        maxMessageBytes: config.maxMessageSize,
        maxBackpressureBytes: config.maxBackpressure,
        idleTimeoutSeconds: options.idleTimeoutSeconds ?? IDLE_TIMEOUT_SECONDS,
        maxConnections: config.maxConnections,
        handshakeTimeoutMs: config.handshakeTimeout,
      },
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
    concurrency: config.poolSize,
    maxQueuedFrames: config.maxQueuedMessages,
    maxMessagesPerSecond: config.maxMessagesPerSecond,
    metrics,
  });
  relayRef = relay;

  let port: number;
  try {
    port = await transport.listen();
  } catch (err) {
    await Promise.all([listener.stop(), notifier.stop()]);
    throw err;
  }
  if (fatalDuringStart) {
    await activeTransport.shutdown(Close.GoingAway, 'server shutting down');
    await Promise.all([listener.stop(), notifier.stop().catch(() => undefined)]);
    throw fatalDuringStart;
  }
  log.info({ port, host: config.host, tls: tls !== undefined, transport: `${transport.name} (${transport.version})` }, 'pgws ready');

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      stopping = true;
      await activeTransport.shutdown(Close.GoingAway, 'server shutting down');
      // Frames accepted before the close (and ConnectionClose events) still go out.
      const flushed = new AbortController();
      await Promise.race([relay.idle(), delay(STOP_FLUSH_MS, flushed.signal)]);
      flushed.abort();
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
    metrics,
    stop,
  };
}
