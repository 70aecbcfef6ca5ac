// The routing rules of PROTOCOL.md §2-4, and nothing else: which channel a
// notification goes to, what envelope a frame becomes, what a socket may do.
// It knows sockets only through TransportSocket and the database only through
// the Notifier interface, so it is tested without either engine.
import { createNotifyBatcher, NotifyTimeoutError } from './db/batcher.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { createRateLimiter, type RateLimiter } from './rate.js';
import { timer, type Timer } from './timer.js';
import type { TransportSocket } from './transport/types.js';
import { Close, NOTIFY_PAYLOAD_LIMIT, type Claims, type CloseCode, type Grant, type Json } from './types.js';

export type EnvelopeEvent = 'WebsocketMessage' | 'ConnectionOpen' | 'ConnectionClose';

/** The JSON a socket's frame (or a meta event) becomes on the listen channel. */
export interface Envelope {
  readonly event: EnvelopeEvent;
  readonly channel: string;
  readonly payload: string;
  readonly claims: Claims & { readonly message_delivered_at: number };
}

/** Where NOTIFYs go. `notifyAll` sends its payloads in one statement: all or none. */
export interface RelayNotifier {
  notifyAll(channel: string, payloads: readonly string[]): Promise<void>;
}

/** What pgws keeps per socket. */
export interface Session {
  readonly grant: Grant;
  /** Set once the socket was closed for an error: nothing more from it is sent. */
  failed: boolean;
  readonly rate: RateLimiter;
  expiry: Timer | undefined;
}

export interface RelayOptions {
  readonly listenChannel: string;
  readonly metaChannel: string | undefined;
  readonly notifier: RelayNotifier;
  readonly publish: (channel: string, text: string) => void;
  readonly log: Logger;
  /** Clock in Unix seconds (fractional); injectable for tests. */
  readonly now?: () => number;
  /** NOTIFY batches in flight at once; the pool size (default 1). */
  readonly concurrency?: number;
  /** Frames one socket may have waiting for NOTIFY; one more closes it with 1013 (default 256). */
  readonly maxQueuedFrames?: number;
  /** Frames per second one socket may send; over it, closed with 1008. 0 = no limit (default). */
  readonly maxMessagesPerSecond?: number;
  readonly metrics?: Metrics;
}

export interface Relay {
  newSession(grant: Grant): Session;
  onNotification(dbChannel: string, payload: string): void;
  onOpen(socket: TransportSocket<Session>): void;
  onFrame(socket: TransportSocket<Session>, text: string): void;
  onClose(socket: TransportSocket<Session>, code: number): void;
  /** Resolves once every accepted frame was NOTIFYed or failed (for an orderly stop). */
  idle(): Promise<void>;
}

export const DEFAULT_MAX_QUEUED_FRAMES = 256;

export function createRelay(opts: RelayOptions): Relay {
  const now = opts.now ?? ((): number => Date.now() / 1000);
  const maxQueued = opts.maxQueuedFrames ?? DEFAULT_MAX_QUEUED_FRAMES;
  const metrics = opts.metrics;
  const batcher = createNotifyBatcher<Session>({
    send: (payloads) => opts.notifier.notifyAll(opts.listenChannel, payloads),
    concurrency: Math.max(1, opts.concurrency ?? 1),
    onBatch: (frames, ok, seconds) => metrics?.markBatch(frames, ok, seconds),
    onQueued: (frames) => metrics?.markQueued(frames),
  });

  function sendEnvelopes(session: Session, payloads: readonly string[]): Promise<void> {
    return batcher.push(session, payloads);
  }

  /**
   * Closes a socket for an error. What the client can rely on: the frames it sent
   * before the refused or failed one are delivered, that one and all after it are
   * not. So a refusal at arrival (1008, 1009, 1013) lets the queue drain, and a
   * failed NOTIFY (1011) also forgets the frames queued behind it.
   */
  function fail(socket: TransportSocket<Session>, code: CloseCode, reason: string, dropQueued = false): void {
    const { session } = socket;
    if (session.failed) return;
    session.failed = true;
    if (dropQueued) batcher.drop(session, new Error(reason));
    socket.close(code, reason);
  }

  function metaEvent(socket: TransportSocket<Session>, event: 'ConnectionOpen' | 'ConnectionClose'): void {
    const meta = opts.metaChannel;
    if (meta === undefined) return;
    const { grant } = socket.session;
    const text = encodeEnvelope({ event, channel: meta, payload: grant.channels.join(','), claims: stampClaims(grant.claims, now()) });
    if (!fitsNotify(text)) {
      opts.log.warn({ event, bytes: Buffer.byteLength(text) }, 'meta event not sent: its envelope is over the 8000-byte NOTIFY limit');
      return;
    }
    sendEnvelopes(socket.session, [text]).catch((err: unknown) => {
      opts.log.error({ event, err: errorText(err) }, 'meta event could not be sent');
    });
  }

  return {
    newSession(grant) {
      return { grant, failed: false, expiry: undefined, rate: createRateLimiter(opts.maxMessagesPerSecond ?? 0) };
    },

    onNotification(dbChannel, payload) {
      metrics?.markNotification();
      opts.publish(routeNotification(dbChannel, payload), payload);
    },

    onOpen(socket) {
      const { grant } = socket.session;
      if (grant.mode !== 'w') for (const channel of grant.channels) socket.subscribe(channel);
      if (grant.exp !== undefined) {
        const expiry = timer(() => socket.close(Close.JwtExpired, 'JWT expired'), grant.exp * 1000 - Date.now());
        socket.session.expiry = expiry;
        expiry.start();
      }
      metaEvent(socket, 'ConnectionOpen');
    },

    onFrame(socket, text) {
      const { session } = socket;
      const { grant } = session;
      if (grant.mode === 'r' || session.failed) return;
      if (!session.rate.take()) {
        metrics?.markRateLimited();
        opts.log.warn({ channels: grant.channels, remote: socket.remoteAddress }, 'socket over its message rate; closing it');
        fail(socket, Close.PolicyViolation, `Rate limit: more than ${opts.maxMessagesPerSecond ?? 0} messages per second`);
        return;
      }
      if (batcher.pending(session) >= maxQueued) {
        // The database is not keeping up with this socket. Refusing is the only
        // way to keep memory bounded; the close tells the client to slow down.
        metrics?.markQueueFull();
        opts.log.warn({ channels: grant.channels, remote: socket.remoteAddress, queued: maxQueued }, 'socket queue full; closing it');
        fail(socket, Close.TryAgainLater, `Too many messages waiting for the database (${maxQueued}): later ones were not delivered`);
        return;
      }
      const at = now();
      const claims = stampClaims(grant.claims, at);
      const payloads = grant.channels.map((channel) =>
        encodeEnvelope({ event: 'WebsocketMessage', channel, payload: text, claims }),
      );
      const biggest = Math.max(...payloads.map((p) => Buffer.byteLength(p)));
      if (biggest >= NOTIFY_PAYLOAD_LIMIT) {
        fail(socket, Close.TooBig, `Message too big: its NOTIFY envelope is ${biggest} bytes, the limit is ${NOTIFY_PAYLOAD_LIMIT - 1}`);
        return;
      }
      sendEnvelopes(session, payloads).catch((err: unknown) => {
        if (session.failed) return;
        opts.log.error(
          { channels: grant.channels, remote: socket.remoteAddress, err: errorText(err) },
          'NOTIFY failed; closing the socket so the client knows its message was not delivered',
        );
        // A timed-out NOTIFY may still commit: say so rather than claim it was not delivered.
        const reason =
          err instanceof NotifyTimeoutError ? 'Database timeout: message may not have been delivered' : 'Database error: message not delivered';
        fail(socket, Close.ServerError, reason, true);
      });
    },

    onClose(socket, code) {
      socket.session.expiry?.cancel();
      opts.log.debug({ code, channels: socket.session.grant.channels }, 'socket closed');
      metaEvent(socket, 'ConnectionClose');
    },

    idle: () => batcher.idle(),
  };
}

/**
 * PROTOCOL.md §2: a JSON object with a string `channel` names its target;
 * anything else goes to the database channel it arrived on.
 */
export function routeNotification(dbChannel: string, payload: string): string {
  // Cheap pre-check: only something that starts like an object can carry a channel.
  if (!/^\s*\{/.test(payload)) return dbChannel;
  try {
    const parsed: unknown = JSON.parse(payload);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
      const channel = (parsed as { channel?: unknown }).channel;
      if (typeof channel === 'string') return channel;
    }
  } catch {
    // Not JSON: routed to the database channel, as postgres-websockets does.
  }
  return dbChannel;
}

export function encodeEnvelope(envelope: Envelope): string {
  return JSON.stringify(envelope);
}

function stampClaims(claims: Claims, at: number): Claims & { readonly message_delivered_at: number } {
  return { ...claims, message_delivered_at: at } as Claims & { message_delivered_at: number };
}

export function fitsNotify(text: string): boolean {
  return Buffer.byteLength(text) < NOTIFY_PAYLOAD_LIMIT;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export type { Json };
