// The composition root: the only module that wires auth, database, relay,
// HTTP, admin endpoints and transport together. start(config) returns a running
// server with an ordered, idempotent stop(), so tests can run many servers in one
// process. Each part registers its own stop on one teardown list as it starts, so a
// failed start and stop() unwind the same list, in reverse.
import { EventEmitter } from 'node:events';
import { healthAnswer, metricsNotHereAnswer, readyAnswer, type ReadinessProbes } from './admin/endpoints.js';
import { startAdminServer } from './admin/server.js';
import { createAuthenticator, EACH_REQUEST, loggableChannel, type AuthResult, type ChannelRequest } from './auth/index.js';
import { createOriginPolicy } from './auth/origins.js';
import { readSocketRequest, type SocketRequest } from './auth/token-source.js';
import { createListener, type Listener } from './db/listener.js';
import { describeDbError } from './db/errors.js';
import { createJournal, journalGrants, readJournalFloor, type Journal } from './db/journal.js';
import { createRpc } from './rpc.js';
import { createNotifier } from './db/notifier.js';
import { bannerAnswer } from './http/banner.js';
import { createStaticHandler, type StaticHandler } from './http/static.js';
import { createLogger, type Logger } from './log.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createRelay, type Relay, type Session } from './relay.js';
import { delay } from './timer.js';
import { createTransport, planTransport, TransportUnavailableError } from './transport/select.js';
import type { HttpAnswer, HttpRequest, Transport, TransportHandlers, UpgradeDecision, UpgradeRequest } from './transport/types.js';
import { Close, type Claims, type Config, type Json } from './types.js';

/** The 400 of a pgws.v2 upgrade whose path names a channel (PROTOCOL.md §9). */
export const V2_PATH = 'Bad request: a pgws.v2 socket opens on / (or /<jwt>) and names channels in its requests';
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
  /** The admin port (/health, /ready, /metrics) when PGWS_ADMIN_PORT is set. */
  readonly adminPort: number | undefined;
  readonly transport: string;
  readonly events: EventEmitter<ServerEvents>;
  listenerPid(): number | undefined;
  socketCount(): number;
  /** What pgws counted (src/metrics.ts): for tests, and the source of /metrics. */
  readonly metrics: Metrics;
  /** Refuses new sockets, closes open ones with 1001, ends database connections. Safe to call twice. */
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly log?: Logger;
  /** Overrides IDLE_TIMEOUT_SECONDS, so keep-alive tests need not wait half a minute. */
  readonly idleTimeoutSeconds?: number;
  /** Overrides the 5 s NOTIFY timeout, so a test can stall the database longer than an idle timeout. */
  readonly notifyTimeoutMs?: number;
}

/** Stops of the parts started so far; run() calls them last-started first, once. */
function createTeardown() {
  const steps: (() => Promise<void>)[] = [];
  return {
    push(step: () => Promise<void>): void {
      steps.push(step);
    },
    async run(): Promise<void> {
      while (steps.length > 0) await steps.pop()?.();
    },
  };
}

export async function start(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  const log = options.log ?? createLogger(config.logLevel);
  const { dbUri, jwtSecret } = config;
  if (dbUri === undefined || (jwtSecret === undefined && config.jwksUrl === undefined)) {
    throw new Error('start() needs a database URI and a JWT secret or JWK Set URL (embedded mode fills them in before calling it)');
  }
  const events = new EventEmitter<ServerEvents>();
  const metrics = createMetrics();
  const authenticator = await createAuthenticator({
    jwtSecret,
    jwtSecretIsBase64: config.jwtSecretIsBase64,
    modeClaim: config.modeClaim,
    channelsClaim: config.channelsClaim,
    defaultMode: config.defaultMode,
    audience: config.jwtAudience,
    issuer: config.jwtIssuer,
    jwksUrl: config.jwksUrl,
    retries: config.retries,
    log,
  });
  const serveStatic = config.rootPath ? await createStaticHandler(config.rootPath) : undefined;
  const teardown = createTeardown();
  teardown.push(async () => authenticator.stop());
  let stopping = false;
  /** A fatal loss before start() returns has no subscriber yet: start() fails with it instead. */
  let fatalDuringStart: Error | undefined;

  try {
    const notifier = createNotifier(dbUri, config.poolSize, config.journal);
    teardown.push(() => notifier.stop().catch(() => undefined));

    let relay: Relay | undefined;
    /** Read before each LISTEN; held until the relay exists (the first one is read before it). */
    let journalFloor: string | null = null;
    const listener = createListener({
      uri: dbUri,
      channel: config.listenChannel,
      checkIntervalMs: config.checkListenerInterval,
      log,
      onNotification: (channel, payload) => relay?.onNotification(channel, payload),
      onFatal: (error) => {
        fatalDuringStart ??= error;
        events.emit('fatal', error);
      },
      ...(config.journal
        ? {
            beforeListen: async (sql) => {
              journalFloor = await readJournalFloor(sql);
              if (journalFloor !== null) relay?.journalFloor(journalFloor);
            },
          }
        : {}),
    });
    teardown.push(() => listener.stop());
    watchListener(listener, events, metrics);

    const probes: ReadinessProbes = {
      stopping: () => stopping,
      listenerUp: () => listener.isReady(),
      pingPool: () => notifier.ping(),
    };
    // Before the database is reached: while start-up retries, /health answers and /ready says why not.
    const admin =
      config.adminPort === undefined ? undefined : await startAdminServer(config.adminHost, config.adminPort, probes, metrics);
    if (admin) teardown.push(() => admin.stop());

    await listener.start(config.retries);
    await notifier.ping();
    const journal = config.journal ? await startJournal(dbUri, config.journalRetention, log, teardown) : undefined;
    const rpc =
      config.rpcSchema === undefined
        ? undefined
        : createRpc({ uri: dbUri, schema: config.rpcSchema, defaultRole: config.rpcDefaultRole, timeoutMs: config.rpcTimeout });
    if (rpc) teardown.push(() => rpc.stop().catch(() => undefined));

    const handlers = socketHandlers(config, log, metrics, {
      stopping: () => stopping,
      authorize: (channel, token) => authenticator.authorizeToken(channel, token),
      relay: () => relay,
      answerHttp: (req) => answerHttp(req, config, probes, serveStatic),
    });
    const tls = config.certificateFile && config.keyFile ? { certFile: config.certificateFile, keyFile: config.keyFile } : undefined;
    const plan = planTransport(config.transport, tls !== undefined);
    if (!plan.ok) throw new TransportUnavailableError(plan.error);
    if (plan.fallback !== undefined) log.warn({ transport: plan.engine }, plan.fallback);
    const activeTransport: Transport<Session> = createTransport<Session>(
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
    const activeRelay = createRelay({
      listenChannel: config.listenChannel,
      metaChannel: config.metaChannel,
      notifier,
      publish: (topic, text, except) => metrics.markFramesSent(activeTransport.publish(topic, text, except)),
      authorizeV2: (token) => authenticator.authorizeToken(EACH_REQUEST, token),
      maxSubscriptions: config.maxSubscriptions,
      ...(journal === undefined ? {} : { journal }),
      replayRoomBytes: Math.floor(config.maxBackpressure / 2),
      ...(rpc === undefined ? {} : { call: (claims: Claims, fn: string, args: Json | undefined) => rpc.call(claims, fn, args) }),
      log,
      concurrency: config.poolSize,
      maxQueuedFrames: config.maxQueuedMessages,
      // The most one socket may have held beyond its queue: as many frames again, each of the largest size.
      maxHeldChars: config.maxQueuedMessages * config.maxMessageSize,
      maxMessagesPerSecond: config.maxMessagesPerSecond,
      ...(options.notifyTimeoutMs === undefined ? {} : { notifyTimeoutMs: options.notifyTimeoutMs }),
      metrics,
    });
    relay = activeRelay;
    if (journalFloor !== null) activeRelay.journalFloor(journalFloor);
    // Frames accepted before the sockets closed (and ConnectionClose events) still go out.
    teardown.push(async () => {
      const flushed = new AbortController();
      await Promise.race([activeRelay.idle(), delay(STOP_FLUSH_MS, flushed.signal)]);
      flushed.abort();
    });
    metrics.readLive({
      socketsOpen: () => activeTransport.socketCount(),
      listenerUp: () => listener.isReady(),
      socketsPaused: () => activeRelay.pausedSockets(),
      subscriptions: () => activeRelay.subscriptions(),
    });

    const port = await activeTransport.listen();
    teardown.push(() => activeTransport.shutdown(Close.GoingAway, 'server shutting down'));
    if (fatalDuringStart) throw fatalDuringStart;
    log.info(
      {
        port,
        host: config.host,
        tls: tls !== undefined,
        tlsAvailable: activeTransport.tlsAvailable,
        transport: `${activeTransport.name} (${activeTransport.version})`,
        adminPort: admin?.port ?? null,
      },
      'pgws ready',
    );

    let stopped: Promise<void> | undefined;
    return {
      port,
      adminPort: admin?.port,
      transport: activeTransport.name,
      events,
      listenerPid: () => listener.pid(),
      socketCount: () => activeTransport.socketCount(),
      metrics,
      stop: () =>
        (stopped ??= (async () => {
          stopping = true;
          await teardown.run();
          log.info('pgws stopped');
        })()),
    };
  } catch (err) {
    stopping = true;
    await teardown.run();
    throw err;
  }
}

/** PGWS_JOURNAL=on without `pgws sql install` on the database: start-up stops (exit 1) saying what to run. */
export class JournalMissingError extends Error {
  constructor() {
    super('PGWS_JOURNAL=on, but this database has no pgws journal (no function pgws.publish(text)): run `pgws sql install --apply` first');
    this.name = 'JournalMissingError';
  }
}

/** PGWS_JOURNAL=on with a role that may not use the journal: start-up stops (exit 1) with the GRANTs to run. */
export class JournalRightsError extends Error {
  constructor(role: string, missing: readonly string[]) {
    super(
      `PGWS_JOURNAL=on, but role "${role}" may not use the journal: it lacks ${missing.join(', ')}. ` +
        `As the journal's owner, run: ${journalGrants(role)}`,
    );
    this.name = 'JournalRightsError';
  }
}

/** Most often the journal is pruned: every min(retention, 10 s) (PROTOCOL.md §10). */
const PRUNE_EVERY_MS = 10_000;

/**
 * Checks the journal is installed and starts pruning it in the background: one batch after
 * another while there is anything older than the retention, then again a period later. Only
 * one pgws process prunes at a time (prune() skips while another holds the lock).
 */
async function startJournal(uri: string, retentionSeconds: number, log: Logger, teardown: ReturnType<typeof createTeardown>): Promise<Journal> {
  const journal = createJournal(uri);
  teardown.push(() => journal.stop().catch(() => undefined));
  if (!(await journal.installed())) throw new JournalMissingError();
  // Checked now, not found out frame by frame (1011, db_error) or never (pruning only logs).
  const rights = await journal.missingRights();
  if (rights.missing.length > 0) throw new JournalRightsError(rights.role, rights.missing);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const prune = async (): Promise<void> => {
    try {
      let deleted = 0;
      for (let batch = await journal.prune(retentionSeconds); batch > 0 && !stopped; batch = await journal.prune(retentionSeconds)) deleted += batch;
      if (deleted > 0) log.debug({ deleted }, 'journal pruned');
    } catch (err) {
      if (!stopped) log.warn({ err: describeDbError(err) }, 'journal pruning failed; trying again later');
    }
    if (!stopped) timer = setTimeout(() => void prune(), Math.min(retentionSeconds * 1000, PRUNE_EVERY_MS)).unref();
  };
  void prune();
  teardown.push(async () => {
    stopped = true;
    clearTimeout(timer);
  });
  return journal;
}

function watchListener(listener: Listener, events: EventEmitter<ServerEvents>, metrics: Metrics): void {
  listener.on('ready', (pid) => events.emit('listener-ready', pid));
  listener.on('lost', (reason) => {
    metrics.markListenerLost();
    events.emit('listener-lost', reason);
  });
  listener.on('recovered', (blindMs) => metrics.markListenerRecovered(blindMs));
}

interface HandlerParts {
  stopping(): boolean;
  authorize(channel: ChannelRequest, token: string): AuthResult | Promise<AuthResult>;
  /** Undefined only before start() created it, when no socket can be open yet. */
  relay(): Relay | undefined;
  answerHttp(req: HttpRequest): Promise<HttpAnswer>;
}

/** What the transport calls: sockets go to the relay, every answer and refusal is counted. */
function socketHandlers(config: Config, log: Logger, metrics: Metrics, parts: HandlerParts): TransportHandlers<Session> {
  const relay = (): Relay => {
    const current = parts.relay();
    if (current === undefined) throw new Error('a socket event arrived before the relay existed');
    return current;
  };
  const origins = createOriginPolicy(config.allowedOrigins);
  /** A refusal: counted and logged. The request may hold a token anywhere: only a channel is logged. */
  const refuse = (status: number, reason: string, req: UpgradeRequest, channel: string | undefined): UpgradeDecision<Session> => {
    metrics.markUpgrade(status);
    log.warn({ status, reason, remote: req.remoteAddress, channel: loggableChannel(channel) }, 'handshake rejected');
    return { accept: false, status, reason };
  };
  const decide = (result: AuthResult, req: UpgradeRequest, asked: SocketRequest): UpgradeDecision<Session> => {
    if (!result.ok) return refuse(result.status, result.reason, req, asked.channel);
    metrics.markUpgrade(101);
    return { accept: true, session: relay().newSession(result.grant, { echo: asked.echo, v2: asked.v2 }), protocol: asked.protocol };
  };
  return {
    upgrade(req) {
      if (parts.stopping()) {
        metrics.markUpgrade(503);
        return { accept: false, status: 503, reason: 'Server shutting down' };
      }
      // Before the token: a page of another site learns nothing about tokens, not even by timing.
      if (!origins.allows(req.origin)) return refuse(403, 'Origin not allowed', req, undefined);
      const asked = readSocketRequest(req, config.jwtCookie);
      if (!asked.ok) return refuse(asked.status, asked.reason, req, undefined);
      // A v2 socket names its channels in each subscribe and publish, never in its path.
      if (asked.v2 && asked.channel !== undefined) return refuse(400, V2_PATH, req, asked.channel);
      // Most tokens are decided at once (the fast path, the token cache); only jose's
      // verdicts wait. decide() is shared, so a handshake allocates no closure for it.
      const result = parts.authorize(asked.v2 ? EACH_REQUEST : asked.channel, asked.token);
      return result instanceof Promise ? result.then((verdict) => decide(verdict, req, asked)) : decide(result, req, asked);
    },
    open(socket) {
      // Guarded: building the entry would read the remote address, which a socket only
      // fetches from the engine when asked (costly per handshake under uWS).
      if (log.isLevelEnabled('debug')) {
        log.debug({ channels: socket.session.grant.channels, mode: socket.session.grant.mode, remote: socket.remoteAddress }, 'socket open');
      }
      relay().onOpen(socket);
    },
    message(socket, text) {
      metrics.markFrameReceived();
      relay().onFrame(socket, text);
    },
    close(socket, code) {
      metrics.markClosed(code);
      relay().onClose(socket, code);
    },
    http: (req) => parts.answerHttp(req),
    overBackpressure(socket, bytes) {
      metrics.markSlowReader();
      log.warn({ channels: socket.session.grant.channels, remote: socket.remoteAddress, bytes }, 'slow reader; closing it');
      socket.close(Close.PolicyViolation, `Slow reader: ${bytes} bytes waiting, the limit is ${config.maxBackpressure}`);
    },
    refused(why) {
      metrics.markTransportRefusal(why);
      log.warn({ why }, `upgrade refused with ${why === 'internal-error' ? 500 : 503}`);
    },
  };
}

/**
 * Plain HTTP on the main port. Without PGWS_ADMIN_PORT, /health and /ready are answered
 * here, before static files, so a file named `health` cannot shadow them; /metrics never is.
 */
async function answerHttp(
  req: HttpRequest,
  config: Config,
  probes: ReadinessProbes,
  serveStatic: StaticHandler | undefined,
): Promise<HttpAnswer> {
  const method = req.method === 'GET' || req.method === 'HEAD' ? req.method : undefined;
  const methodNotAllowed: HttpAnswer = { status: 405, headers: { Allow: 'GET, HEAD' }, body: 'Method not allowed\n' };
  if (req.path === '/metrics') return metricsNotHereAnswer();
  if (config.adminPort === undefined && (req.path === '/health' || req.path === '/ready')) {
    if (method === undefined) return methodNotAllowed;
    return req.path === '/health' ? healthAnswer() : readyAnswer(probes);
  }
  if (!serveStatic) return bannerAnswer(req.method);
  if (method === undefined) return methodNotAllowed;
  return serveStatic(req.path, method);
}
