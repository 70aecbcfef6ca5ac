// What pgws did and refused, as verbs (STYLE.md: "Metrics are verbs"), and their
// Prometheus exposition (PROTOCOL.md §13). Handlers call a verb; nothing else in pgws
// imports prom-client.
//
// Counters are plain numbers: a verb on a hot path (a frame in, a notification out to
// N sockets) is one addition, and snapshot() reads them synchronously for tests. The
// prom-client counters are views over those numbers: at each scrape, `collect` adds
// what was counted since the previous scrape, so a series only ever grows. Histograms
// are observed as batches finish, which is rare enough to go to prom-client directly.
// Each server has its own Registry, so tests can run many servers in one process.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { TransportRefusal } from './transport/types.js';
import type { CloseCode } from './types.js';

export interface MetricsSnapshot {
  /** Upgrades answered, by HTTP status (101 = accepted). */
  readonly upgrades: Readonly<Record<string, number>>;
  /** Frames received from sockets (text, or binary that decoded as UTF-8). */
  readonly framesReceived: number;
  /** Frames written to sockets: each notification once per socket it reached. */
  readonly framesSent: number;
  /** Notifications received on the LISTEN connection. */
  readonly notifications: number;
  /** Frames whose envelopes were committed as NOTIFYs. */
  readonly framesNotified: number;
  /** Multi-pg_notify statements sent (one per batch). */
  readonly notifyBatches: number;
  /** Frames whose NOTIFY failed (socket closed with 1011). */
  readonly framesFailed: number;
  /** Sockets closed 1013: more held than PGWS_MAX_QUEUED_MESSAGES x PGWS_MAX_MESSAGE_SIZE while the database caught up. */
  readonly framesRefusedQueueFull: number;
  /** Times reading from a socket was paused because its queue was full (flow control). */
  readonly pauses: number;
  /** Sockets closed for sending faster than PGWS_MAX_MESSAGES_PER_SECOND (1008). */
  readonly rateLimited: number;
  /** Sockets closed for not reading (over PGWS_MAX_BACKPRESSURE, 1008). */
  readonly slowReadersClosed: number;
  /** Upgrades refused with 503 because PGWS_MAX_CONNECTIONS sockets were open or opening. */
  readonly connectionsRefused: number;
  /** Upgrades answered 503 because deciding them took longer than PGWS_HANDSHAKE_TIMEOUT. */
  readonly handshakeTimeouts: number;
  readonly listenerLost: number;
  readonly listenerRecovered: number;
  /** Total and last time (ms) during which database notifications could not be received. */
  readonly listenerBlindMsTotal: number;
  readonly listenerBlindMsLast: number;
  /** Frames waiting for NOTIFY now, and the most at once, across all sockets. */
  readonly queuedFrames: number;
  readonly queuedFramesPeak: number;
  /** Closes by code, as the server sent them or the client did. */
  readonly closes: Readonly<Record<string, number>>;
}

/** State read at scrape time rather than counted. */
export interface LiveReadings {
  socketsOpen(): number;
  listenerUp(): boolean;
  socketsPaused(): number;
  /** pgws.v2 subscriptions: distinct ones (what a notification's fan-out costs) and held by sockets. */
  subscriptions(): { readonly distinct: number; readonly held: number };
}

export interface Metrics {
  markUpgrade(status: number): void;
  markTransportRefusal(why: TransportRefusal): void;
  markFrameReceived(): void;
  markFramesSent(sockets: number): void;
  markNotification(): void;
  /** One NOTIFY batch finished: how many frames, whether it committed, how long it took. */
  markBatch(frames: number, ok: boolean, seconds: number): void;
  /** Frames that failed without being sent (behind a failed batch, or queued while the database stalled). */
  markUnsent(frames: number): void;
  markQueueFull(): void;
  markPaused(): void;
  markRateLimited(): void;
  markSlowReader(): void;
  markListenerLost(): void;
  markListenerRecovered(blindMs: number): void;
  markQueued(framesNow: number): void;
  markClosed(code: number | CloseCode): void;
  snapshot(): MetricsSnapshot;
  /** The Prometheus registry of this server's series. */
  readonly registry: Registry;
  /** Adds the gauges read at scrape time (called once the parts they read exist). */
  readLive(readings: LiveReadings): void;
  /** Adds Node's process metrics (CPU, memory, event loop, GC); only for a server that serves /metrics. */
  collectProcessMetrics(): void;
}

const PREFIX = 'pgws_';

/** Frames per batch: from one frame to the batcher's cap of 500 payloads. */
const BATCH_SIZE_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500];
/** Seconds a batch takes to commit: sub-millisecond on a local database, up to the 5 s timeout. */
const BATCH_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export function createMetrics(): Metrics {
  const counts = {
    framesReceived: 0,
    framesSent: 0,
    notifications: 0,
    framesNotified: 0,
    notifyBatches: 0,
    framesFailed: 0,
    framesRefusedQueueFull: 0,
    pauses: 0,
    rateLimited: 0,
    slowReadersClosed: 0,
    connectionsRefused: 0,
    handshakeTimeouts: 0,
    listenerLost: 0,
    listenerRecovered: 0,
    listenerBlindMsTotal: 0,
    listenerBlindMsLast: 0,
    queuedFrames: 0,
    queuedFramesPeak: 0,
  };
  const upgrades: Record<string, number> = {};
  const transportRefusals: Record<string, number> = {};
  const closes: Record<string, number> = {};
  const bump = (table: Record<string, number>, key: string | number): void => {
    table[key] = (table[key] ?? 0) + 1;
  };

  const registry = new Registry();
  const counter = exposeCounter(registry);
  counter('upgrades_total', 'WebSocket upgrades answered, by HTTP status (101 = accepted)', () => upgrades, 'status');
  counter(
    'upgrades_refused_by_transport_total',
    'Upgrades the transport answered itself: 503 (max-connections, handshake-timeout, shutting-down) or 500 (internal-error)',
    () => ({ 'max-connections': 0, 'handshake-timeout': 0, 'shutting-down': 0, 'internal-error': 0, ...transportRefusals }),
    'why',
  );
  counter('frames_received_total', 'Frames received from sockets', () => counts.framesReceived);
  counter('frames_sent_total', 'Frames written to sockets (each notification once per socket it reached)', () => counts.framesSent);
  counter('notifications_total', 'Notifications received on the LISTEN connection', () => counts.notifications);
  counter(
    'notify_frames_total',
    'Socket frames and meta events sent as NOTIFY, by result (failed: not committed, sent or not; the v1 socket was closed 1011, the v2 publish answered db_error)',
    () => ({ committed: counts.framesNotified, failed: counts.framesFailed }),
    'result',
  );
  counter('flow_pauses_total', 'Times pgws stopped reading from a socket because its queue was full (flow control)', () => counts.pauses);
  counter(
    'queue_full_closes_total',
    'Sockets closed 1013: more held than PGWS_MAX_QUEUED_MESSAGES x PGWS_MAX_MESSAGE_SIZE characters while the database caught up',
    () => counts.framesRefusedQueueFull,
  );
  counter('rate_limit_closes_total', 'Sockets closed 1008 for PGWS_MAX_MESSAGES_PER_SECOND', () => counts.rateLimited);
  counter('slow_reader_closes_total', 'Sockets closed 1008 for PGWS_MAX_BACKPRESSURE', () => counts.slowReadersClosed);
  counter('listener_lost_total', 'Times the LISTEN connection was lost', () => counts.listenerLost);
  counter('listener_recovered_total', 'Times the LISTEN connection was re-opened', () => counts.listenerRecovered);
  counter(
    'listener_blind_seconds_total',
    'Seconds during which notifications could not be received (the LISTEN connection was down)',
    () => counts.listenerBlindMsTotal / 1000,
  );
  counter('closes_total', 'Sockets closed, by close code (sent by the server or the client)', () => closes, 'code');
  const gauge = exposeGauge(registry);
  gauge('queued_frames', 'Frames waiting for NOTIFY now, across all sockets', () => counts.queuedFrames);
  gauge('queued_frames_peak', 'Most frames waiting for NOTIFY at once since start', () => counts.queuedFramesPeak);
  const batchSize = new Histogram({
    name: `${PREFIX}notify_batch_size`,
    help: 'Frames per NOTIFY statement',
    buckets: BATCH_SIZE_BUCKETS,
    registers: [registry],
  });
  const batchSeconds = new Histogram({
    name: `${PREFIX}notify_batch_seconds`,
    help: 'Seconds from sending a NOTIFY statement to its commit (or failure)',
    buckets: BATCH_SECONDS_BUCKETS,
    registers: [registry],
  });
  let processMetrics = false;

  return {
    markUpgrade: (status) => bump(upgrades, status),
    markTransportRefusal(why) {
      bump(transportRefusals, why);
      bump(upgrades, why === 'internal-error' ? 500 : 503);
      if (why === 'max-connections') counts.connectionsRefused += 1;
      if (why === 'handshake-timeout') counts.handshakeTimeouts += 1;
    },
    markFrameReceived: () => void (counts.framesReceived += 1),
    markFramesSent: (sockets) => void (counts.framesSent += sockets),
    markNotification: () => void (counts.notifications += 1),
    markBatch(frames, ok, seconds) {
      counts.notifyBatches += 1;
      if (ok) counts.framesNotified += frames;
      else counts.framesFailed += frames;
      batchSize.observe(frames);
      batchSeconds.observe(seconds);
    },
    markUnsent: (frames) => void (counts.framesFailed += frames),
    markQueueFull: () => void (counts.framesRefusedQueueFull += 1),
    markPaused: () => void (counts.pauses += 1),
    markRateLimited: () => void (counts.rateLimited += 1),
    markSlowReader: () => void (counts.slowReadersClosed += 1),
    markListenerLost: () => void (counts.listenerLost += 1),
    markListenerRecovered(blindMs) {
      counts.listenerRecovered += 1;
      counts.listenerBlindMsTotal += blindMs;
      counts.listenerBlindMsLast = blindMs;
    },
    markQueued(framesNow) {
      counts.queuedFrames = framesNow;
      if (framesNow > counts.queuedFramesPeak) counts.queuedFramesPeak = framesNow;
    },
    markClosed: (code) => bump(closes, code),
    snapshot: () => ({ ...counts, upgrades: { ...upgrades }, closes: { ...closes } }),
    registry,
    readLive(readings) {
      gauge('sockets_open', 'WebSockets open now', () => readings.socketsOpen());
      gauge('listener_up', '1 while the LISTEN connection is up, else 0', () => (readings.listenerUp() ? 1 : 0));
      gauge('sockets_paused', 'Sockets pgws is not reading from now, until their queue drains (flow control)', () => readings.socketsPaused());
      gauge('v2_subscriptions', 'Distinct pgws.v2 subscriptions (channel, filter, echo): a notification costs one filter check and one publish per each', () => readings.subscriptions().distinct);
      gauge('v2_subscriptions_held', 'pgws.v2 subscriptions held by sockets, one per socket per subscription', () => readings.subscriptions().held);
    },
    collectProcessMetrics() {
      if (processMetrics) return;
      processMetrics = true;
      collectDefaultMetrics({ register: registry, prefix: PREFIX });
    },
  };
}

/**
 * A prom-client counter that follows a plain number (or one number per label value): at
 * each scrape it adds what was counted since the previous one.
 */
function exposeCounter(registry: Registry) {
  return (name: string, help: string, read: () => number | Readonly<Record<string, number>>, label?: string): void => {
    const reported = new Map<string, number>();
    new Counter({
      name: `${PREFIX}${name}`,
      help,
      labelNames: label === undefined ? [] : [label],
      registers: [registry],
      collect() {
        const now = read();
        const entries: [string, number][] = typeof now === 'number' ? [['', now]] : Object.entries(now);
        for (const [value, total] of entries) {
          // A series seen for the first time is written even at 0, so `rate()` has a start.
          const first = !reported.has(value);
          const delta = total - (reported.get(value) ?? 0);
          if (delta <= 0 && !first) continue;
          reported.set(value, total);
          if (label === undefined) this.inc(delta);
          else this.inc({ [label]: value }, delta);
        }
      },
    });
  };
}

/** A prom-client gauge read at scrape time. */
function exposeGauge(registry: Registry) {
  return (name: string, help: string, read: () => number): void => {
    new Gauge({
      name: `${PREFIX}${name}`,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  };
}
