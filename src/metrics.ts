// Counters of what pgws did and refused, as verbs (STYLE.md: "Metrics are verbs").
// Handlers call a verb; a later health/metrics endpoint reads snapshot(). No
// library and no labels: plain numbers a test can assert and a scraper can read.
import type { CloseCode } from './types.js';

export interface MetricsSnapshot {
  /** Frames whose envelopes were committed as NOTIFYs. */
  readonly framesNotified: number;
  /** Multi-pg_notify statements sent (one per batch). */
  readonly notifyBatches: number;
  /** Frames whose NOTIFY failed (socket closed with 1011). */
  readonly framesFailed: number;
  /** Frames refused because their socket's queue was full (socket closed with 1013). */
  readonly framesRefusedQueueFull: number;
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
  /** Most frames waiting for NOTIFY at once, across all sockets (the memory the queue held). */
  readonly queuedFramesPeak: number;
  /** Closes by code, as the server sent them or the client did. */
  readonly closes: Readonly<Record<string, number>>;
}

export interface Metrics {
  markNotified(frames: number): void;
  markBatch(): void;
  markNotifyFailed(frames: number): void;
  markQueueFull(): void;
  markRateLimited(): void;
  markSlowReader(): void;
  markConnectionRefused(): void;
  markHandshakeTimeout(): void;
  markListenerLost(): void;
  markListenerRecovered(blindMs: number): void;
  markQueued(framesNow: number): void;
  markClosed(code: number | CloseCode): void;
  snapshot(): MetricsSnapshot;
}

export function createMetrics(): Metrics {
  const counts = {
    framesNotified: 0,
    notifyBatches: 0,
    framesFailed: 0,
    framesRefusedQueueFull: 0,
    rateLimited: 0,
    slowReadersClosed: 0,
    connectionsRefused: 0,
    handshakeTimeouts: 0,
    listenerLost: 0,
    listenerRecovered: 0,
    listenerBlindMsTotal: 0,
    listenerBlindMsLast: 0,
    queuedFramesPeak: 0,
  };
  const closes: Record<string, number> = {};
  return {
    markNotified: (frames) => void (counts.framesNotified += frames),
    markBatch: () => void (counts.notifyBatches += 1),
    markNotifyFailed: (frames) => void (counts.framesFailed += frames),
    markQueueFull: () => void (counts.framesRefusedQueueFull += 1),
    markRateLimited: () => void (counts.rateLimited += 1),
    markSlowReader: () => void (counts.slowReadersClosed += 1),
    markConnectionRefused: () => void (counts.connectionsRefused += 1),
    markHandshakeTimeout: () => void (counts.handshakeTimeouts += 1),
    markListenerLost: () => void (counts.listenerLost += 1),
    markListenerRecovered(blindMs) {
      counts.listenerRecovered += 1;
      counts.listenerBlindMsTotal += blindMs;
      counts.listenerBlindMsLast = blindMs;
    },
    markQueued(framesNow) {
      if (framesNow > counts.queuedFramesPeak) counts.queuedFramesPeak = framesNow;
    },
    markClosed(code) {
      closes[code] = (closes[code] ?? 0) + 1;
    },
    snapshot: () => ({ ...counts, closes: { ...closes } }),
  };
}
