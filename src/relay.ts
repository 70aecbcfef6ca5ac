// The routing rules of PROTOCOL.md §2-4, and nothing else: which channel a
// notification goes to, what envelope a frame becomes, what a socket may do, and how
// fast a socket's frames are taken in (flow control: see onFrame).
// It knows sockets only through TransportSocket and the database only through
// the Notifier interface, so it is tested without either engine.
import { createNotifyBatcher, NotifyTimeoutError } from './db/batcher.js';
import { createExpirySchedule } from './expiry.js';
import { Fifo } from './fifo.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { createRateLimiter, type RateLimiter } from './rate.js';
import type { AuthResult } from './auth/index.js';
import type { Journal } from './db/journal.js';
import type { TransportSocket } from './transport/types.js';
import { Close, NOTIFY_PAYLOAD_LIMIT, type Claims, type CloseCode, type Grant, type Json } from './types.js';
import { createV2Protocol, type V2Deps, type V2State } from './v2/protocol.js';
import { createSubscriptionTable, parseNotification, type ParsedNotification } from './v2/subscriptions.js';

export type EnvelopeEvent = 'WebsocketMessage' | 'ConnectionOpen' | 'ConnectionClose';

/**
 * The JSON a socket's frame (or a meta event) becomes on the listen channel. The payload of a
 * v1 frame is its text; a v2 publish carries the JSON value it was given (PROTOCOL.md §9).
 */
export interface Envelope<P extends Json = string> {
  readonly event: EnvelopeEvent;
  readonly channel: string;
  readonly payload: P;
  readonly claims: Claims & { readonly message_delivered_at: number };
}

/** Where NOTIFYs go. `notifyAll` sends its payloads in one statement: all or none. */
export interface RelayNotifier {
  notifyAll(channel: string, payloads: readonly string[]): Promise<void>;
}

/** A frame taken from a socket while its queue was full, with the time it arrived. */
interface HeldFrame {
  readonly text: string;
  readonly at: number;
}

/** What pgws keeps per socket. */
export interface Session {
  /** Replaced only by a v2 `refresh`. */
  grant: Grant;
  /** Set once the socket was closed for an error: nothing more from it is sent. */
  failed: boolean;
  readonly rate: RateLimiter;
  /** Frames that arrived while the socket's queue was full, oldest first, waiting for room. */
  readonly held: Fifo<HeldFrame>;
  /** UTF-16 code units of the held frames' text (what they cost in memory, roughly halved). */
  heldChars: number;
  /** Reading from the socket is paused until its queue drains (flow control). */
  paused: boolean;
  /** Whether the socket receives the notifications its own frames caused (`?echo=false`: no). */
  readonly echo: boolean;
  /** A pgws.v2 socket's subscriptions and counters; undefined for v1. */
  readonly v2: V2State | undefined;
}

/** What a socket asked for at the upgrade, beside its grant. */
export interface SessionOptions {
  readonly echo: boolean;
  /** The socket speaks pgws.v2 (its grant came from an EACH_REQUEST check). */
  readonly v2?: boolean;
}

export interface RelayOptions {
  readonly listenChannel: string;
  readonly metaChannel: string | undefined;
  readonly notifier: RelayNotifier;
  /** Sends text to a topic's sockets, leaving out `except` when given (topics: see v1Topic, subscriptions.ts). */
  readonly publish: (topic: string, text: string, except?: TransportSocket<Session>) => void;
  /** Checks a v2 `refresh` token as an upgrade's would be (EACH_REQUEST). */
  readonly authorizeV2?: (token: string) => AuthResult | Promise<AuthResult>;
  /** Subscriptions one v2 socket may hold (PGWS_MAX_SUBSCRIPTIONS; default 100). */
  readonly maxSubscriptions?: number;
  /** A v2 replay writes while a socket holds less than this (half of PGWS_MAX_BACKPRESSURE). */
  readonly replayRoomBytes?: number;
  /** PGWS_RPC_SCHEMA: runs v2 calls (src/rpc.ts). */
  readonly call?: V2Deps<Session>['call'];
  /** PGWS_JOURNAL=on: v2 subscribes read offsets and history from it (the notifier writes through pgws.publish). */
  readonly journal?: Pick<Journal, 'newestOffset' | 'replay'>;
  readonly log: Logger;
  /** Clock in Unix seconds (fractional); injectable for tests. */
  readonly now?: () => number;
  /** NOTIFY batches in flight at once; the pool size (default 1). */
  readonly concurrency?: number;
  /**
   * Frames one socket may have waiting for NOTIFY (default 256): at this many, pgws stops
   * reading from the socket, and reads again once fewer than half are left.
   */
  readonly maxQueuedFrames?: number;
  /**
   * Characters of frames a socket may have held beyond its queue (default 256 x 7999): what
   * arrives after reading stopped (the rest of one read), or everything the socket sends
   * while the database catches up where the transport cannot stop reading. Over it: 1013.
   */
  readonly maxHeldChars?: number;
  /** Frames per second one socket may send; over it, closed with 1008. 0 = no limit (default). */
  readonly maxMessagesPerSecond?: number;
  /** A NOTIFY batch not answered within this fails the frames in it (1011); default 5000 ms. */
  readonly notifyTimeoutMs?: number;
  readonly metrics?: Metrics;
}

export interface Relay {
  newSession(grant: Grant, options?: SessionOptions): Session;
  onNotification(dbChannel: string, payload: string): void;
  onOpen(socket: TransportSocket<Session>): void;
  onFrame(socket: TransportSocket<Session>, text: string): void;
  onClose(socket: TransportSocket<Session>, code: number): void;
  /** Resolves once every accepted frame was NOTIFYed or failed (for an orderly stop). */
  idle(): Promise<void>;
  /** Sockets whose reading is paused now. */
  pausedSockets(): number;
  /** v2 subscriptions now: distinct (channel, filter, echo) triples, and held by sockets (one per socket). */
  subscriptions(): { readonly distinct: number; readonly held: number };
  /** No journaled message at or below this offset will come from the listener (committed before its LISTEN). */
  journalFloor(offset: string): void;
}

export const DEFAULT_MAX_QUEUED_FRAMES = 256;
export const DEFAULT_MAX_SUBSCRIPTIONS = 100;
const DEFAULT_MAX_HELD_CHARS = DEFAULT_MAX_QUEUED_FRAMES * (NOTIFY_PAYLOAD_LIMIT - 1);
/** An own envelope not seen back from the database within this is forgotten (the listener was down). */
const OWN_ENVELOPE_TTL_SECONDS = 60;
/** Microsecond steps keep every stamp distinct while staying a plain count of seconds. */
const STAMP_STEP_SECONDS = 1e-6;

type Socket = TransportSocket<Session>;

export function createRelay(opts: RelayOptions): Relay {
  const now = opts.now ?? ((): number => (performance.timeOrigin + performance.now()) / 1000);
  /**
   * message_delivered_at, strictly increasing, so no two envelopes pgws writes are the same
   * text: the echo check below tells envelopes apart by their text. (The batcher also keeps
   * identical payloads out of one batch, which PostgreSQL would deliver once; with distinct
   * stamps pgws's own envelopes never need that.)
   */
  let lastStamp = 0;
  const stamp = (): number => (lastStamp = Math.max(now(), lastStamp + STAMP_STEP_SECONDS));
  /**
   * Envelopes sent by sockets with echo off, by their text (unique, see stamp): when one comes
   * back from the LISTEN, its socket is left out of the fan-out. Matched by identity, so another
   * socket's frame with the same payload still reaches it. Entries go when seen, when their
   * NOTIFY fails, or after OWN_ENVELOPE_TTL_SECONDS (oldest first: a Map keeps insertion order).
   */
  const ownEnvelopes = new Map<string, { readonly socket: Socket; readonly at: number }>();
  function rememberOwn(socket: Socket, payloads: readonly string[], at: number): void {
    for (const [text, entry] of ownEnvelopes) {
      if (at - entry.at < OWN_ENVELOPE_TTL_SECONDS) break;
      ownEnvelopes.delete(text);
    }
    for (const text of payloads) ownEnvelopes.set(text, { socket, at });
  }
  function forgetOwn(payloads: readonly string[]): void {
    for (const text of payloads) ownEnvelopes.delete(text);
  }
  const maxQueued = opts.maxQueuedFrames ?? DEFAULT_MAX_QUEUED_FRAMES;
  const maxHeldChars = opts.maxHeldChars ?? DEFAULT_MAX_HELD_CHARS;
  const metrics = opts.metrics;
  let paused = 0;
  const expiries = createExpirySchedule<Socket>((socket) => socket.close(Close.JwtExpired, 'JWT expired'));
  // The socket owns its frames in the batcher: per-socket order, and a way back to the
  // socket when its queue goes down.
  const batcher = createNotifyBatcher<Socket>({
    send: (payloads) => opts.notifier.notifyAll(opts.listenChannel, payloads),
    concurrency: Math.max(1, opts.concurrency ?? 1),
    ...(opts.notifyTimeoutMs === undefined ? {} : { timeoutMs: opts.notifyTimeoutMs }),
    onBatch: (frames, ok, seconds) => metrics?.markBatch(frames, ok, seconds),
    onQueued: (frames) => metrics?.markQueued(frames),
    onUnsent: (frames) => metrics?.markUnsent(frames),
    // After a failed batch the socket is about to be closed 1011 (its frames' rejections run
    // next): nothing held may follow the failed frames into the database.
    // A v2 socket stays open after a failed publish (db_error): what it sent next still goes.
    onSettled: (socket, ok) => {
      if (ok || socket.session.v2 !== undefined) takeHeld(socket);
      else dropHeld(socket.session);
    },
  });
  const table = createSubscriptionTable();
  const v2 = createV2Protocol<Session>(
    {
      table,
      maxSubscriptions: opts.maxSubscriptions ?? DEFAULT_MAX_SUBSCRIPTIONS,
      authorize: opts.authorizeV2 ?? (() => ({ ok: false, status: 401, reason: 'Refresh is not available' })),
      notify(socket, envelope, own) {
        const at = lastStamp;
        if (own) rememberOwn(socket, [envelope], at);
        const sent = sendEnvelopes(socket, [envelope]);
        if (own) sent.catch(() => forgetOwn([envelope]));
        return sent;
      },
      envelope: (grant, channel, payload, at) => encodeEnvelope({ event: 'WebsocketMessage', channel, payload, claims: stampClaims(grant.claims, at) }),
      regranted(socket, grant) {
        expiries.remove(socket);
        if (grant.exp !== undefined) expiries.add(socket, grant.exp);
      },
      fail: (socket, code, reason) => fail(socket, code, reason),
      log: opts.log,
      ...(opts.journal === undefined ? {} : { journal: opts.journal }),
      ...(opts.call === undefined ? {} : { call: opts.call }),
      ...(opts.replayRoomBytes === undefined ? {} : { replayRoomBytes: opts.replayRoomBytes }),
    },
    opts.publish,
  );

  function sendEnvelopes(socket: Socket, payloads: readonly string[]): Promise<void> {
    return batcher.push(socket, payloads);
  }

  /** A frame's envelopes go to the batcher, or the socket is closed 1009 (envelope too big) or 1011 (NOTIFY failed). */
  function enqueue(socket: Socket, frame: HeldFrame): void {
    const { session } = socket;
    if (session.v2 !== undefined) {
      v2.onFrame(socket, frame.text, frame.at);
      return;
    }
    const { grant } = session;
    const claims = stampClaims(grant.claims, frame.at);
    const payloads = grant.channels.map((channel) => encodeEnvelope({ event: 'WebsocketMessage', channel, payload: frame.text, claims }));
    const biggest = Math.max(...payloads.map((p) => Buffer.byteLength(p)));
    if (biggest >= NOTIFY_PAYLOAD_LIMIT) {
      // Frames held behind this one came after it: they go with it.
      dropHeld(session);
      fail(socket, Close.TooBig, `Message too big: its NOTIFY envelope is ${biggest} bytes, the limit is ${NOTIFY_PAYLOAD_LIMIT - 1}`);
      return;
    }
    if (!session.echo) rememberOwn(socket, payloads, frame.at);
    sendEnvelopes(socket, payloads).catch((err: unknown) => {
      if (!session.echo) forgetOwn(payloads);
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
  }

  /**
   * Flow control: a frame that finds its socket's queue full is held, and reading from the
   * socket stops, so TCP slows the client down instead of pgws refusing it. What still
   * arrives is the rest of the read in progress. On a transport that cannot stop reading
   * (uWebSockets.js has no pause for WebSockets), everything the client sends meanwhile is
   * held; past maxHeldChars the socket is closed 1013, the one case flow control cannot fix.
   */
  function hold(socket: Socket, frame: HeldFrame): void {
    const { session } = socket;
    if (session.heldChars + frame.text.length > maxHeldChars) {
      metrics?.markQueueFull();
      opts.log.warn(
        { channels: session.grant.channels, remote: socket.remoteAddress, held: session.held.length, heldChars: session.heldChars },
        'socket sent more than it may have held while the database caught up; closing it',
      );
      fail(socket, Close.TryAgainLater, `Too many messages waiting for the database (${session.held.length} held): later ones were not delivered`);
      return;
    }
    session.held.push(frame);
    session.heldChars += frame.text.length;
  }

  /**
   * Held frames move into the socket's queue while it has fewer than `limit`; once none is
   * held and fewer than half the queue limit wait, the socket is no longer paused (and,
   * while it is open, reading resumes).
   */
  function takeHeld(socket: Socket, limit = maxQueued, open = true): void {
    const { session } = socket;
    while (session.held.length > 0 && batcher.pending(socket) < limit) {
      const frame = session.held.shift() as HeldFrame;
      session.heldChars -= frame.text.length;
      enqueue(socket, frame);
    }
    if (session.paused && session.held.length === 0 && (!open || batcher.pending(socket) < maxQueued / 2)) {
      session.paused = false;
      paused -= 1;
      if (open) socket.resume();
    }
  }

  function pause(socket: Socket): void {
    const { session } = socket;
    if (session.paused || !socket.pause()) return;
    session.paused = true;
    paused += 1;
    metrics?.markPaused();
  }

  function dropHeld(session: Session): void {
    session.held.clear();
    session.heldChars = 0;
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
    if (dropQueued) {
      batcher.drop(socket, new Error(reason));
      dropHeld(session);
    }
    socket.close(code, reason);
  }

  function metaEvent(socket: TransportSocket<Session>, event: 'ConnectionOpen' | 'ConnectionClose'): void {
    const meta = opts.metaChannel;
    if (meta === undefined) return;
    const { grant } = socket.session;
    const text = encodeEnvelope({ event, channel: meta, payload: grant.channels.join(','), claims: stampClaims(grant.claims, stamp()) });
    if (!fitsNotify(text)) {
      opts.log.warn({ event, bytes: Buffer.byteLength(text) }, 'meta event not sent: its envelope is over the 8000-byte NOTIFY limit');
      return;
    }
    sendEnvelopes(socket, [text]).catch((err: unknown) => {
      opts.log.error({ event, err: errorText(err) }, 'meta event could not be sent');
    });
  }

  return {
    newSession(grant, options) {
      return {
        echo: options?.echo ?? true,
        grant,
        failed: false,
        rate: createRateLimiter(opts.maxMessagesPerSecond ?? 0),
        held: new Fifo<HeldFrame>(),
        heldChars: 0,
        paused: false,
        v2: options?.v2 === true ? v2.newState() : undefined,
      };
    },

    onNotification(dbChannel, notification) {
      metrics?.markNotification();
      // A journaled message: v1 sockets get it exactly as published, v2 frames carry the offset.
      const journaled = splitJournalOffset(notification);
      const payload = journaled?.text ?? notification;
      const own = ownEnvelopes.size === 0 ? undefined : ownEnvelopes.get(payload);
      if (own !== undefined) ownEnvelopes.delete(payload);
      const { channel, parsed } = routeParsed(dbChannel, payload);
      opts.publish(v1Topic(channel), payload, own?.socket);
      v2.deliver(channel, payload, own?.socket, journaled?.offset, parsed);
      if (journaled !== undefined) v2.offsetSeen(journaled.offset);
    },

    onOpen(socket) {
      const { grant } = socket.session;
      // A v2 socket starts with no subscriptions: it asks for them.
      if (grant.mode !== 'w' && socket.session.v2 === undefined) for (const channel of grant.channels) socket.subscribe(v1Topic(channel));
      if (grant.exp !== undefined) {
        expiries.add(socket, grant.exp);
      }
      metaEvent(socket, 'ConnectionOpen');
    },

    onFrame(socket, text) {
      const { session } = socket;
      const { grant } = session;
      // A v1 reader's frames are ignored, as in postgres-websockets; a v2 reader subscribes with them.
      if ((grant.mode === 'r' && session.v2 === undefined) || session.failed) return;
      // A policy, not a load: over it the socket is closed whatever flow control could do.
      if (!session.rate.take()) {
        metrics?.markRateLimited();
        opts.log.warn({ channels: grant.channels, remote: socket.remoteAddress }, 'socket over its message rate; closing it');
        fail(socket, Close.PolicyViolation, `Rate limit: more than ${opts.maxMessagesPerSecond ?? 0} messages per second`);
        return;
      }
      const frame: HeldFrame = { text, at: stamp() };
      if (session.held.length === 0 && batcher.pending(socket) < maxQueued) enqueue(socket, frame);
      else hold(socket, frame);
      if (!session.failed && batcher.pending(socket) >= maxQueued) pause(socket);
    },

    onClose(socket, code) {
      expiries.remove(socket);
      v2.onClose(socket);
      // Frames the socket sent before it closed still go out, after what was queued.
      takeHeld(socket, Number.POSITIVE_INFINITY, false);
      opts.log.debug({ code, channels: socket.session.grant.channels }, 'socket closed');
      metaEvent(socket, 'ConnectionClose');
    },

    idle: () => batcher.idle(),
    pausedSockets: () => paused,
    subscriptions: () => ({ distinct: table.size(), held: v2.held() }),

    journalFloor: (offset) => v2.offsetSeen(offset),
  };
}

const OFFSET_MEMBER = '"pgws_offset":"';

/**
 * pgws.publish NOTIFYs the message with `"pgws_offset":"<id>",` inserted right after its opening
 * brace (PROTOCOL.md §10): returns the message as published and the offset, or undefined for a
 * notification without one. Only that exact shape counts (digits, then `",`).
 */
export function splitJournalOffset(notification: string): { readonly text: string; readonly offset: string } | undefined {
  let brace = 0;
  while (brace < notification.length && /\s/.test(notification.charAt(brace))) brace++;
  if (notification.charCodeAt(brace) !== 0x7b || !notification.startsWith(OFFSET_MEMBER, brace + 1)) return undefined;
  const digitsFrom = brace + 1 + OFFSET_MEMBER.length;
  let end = digitsFrom;
  while (end < notification.length && notification.charCodeAt(end) >= 0x30 && notification.charCodeAt(end) <= 0x39) end++;
  if (end === digitsFrom || end - digitsFrom > 19 || notification.charCodeAt(end) !== 0x22 || notification.charCodeAt(end + 1) !== 0x2c) return undefined;
  return { text: notification.slice(0, brace + 1) + notification.slice(end + 2), offset: notification.slice(digitsFrom, end) };
}

/**
 * The engine topic of a v1 channel: the channel itself, unless it starts with one of the two
 * characters that begin other topics (v2 subscriptions start with U+0002), which it then gets
 * U+0001 in front of. So no channel's topic is another's or a v2 subscription's, and the usual
 * channel costs nothing.
 */
export function v1Topic(channel: string): string {
  return channel.charCodeAt(0) <= 2 ? `\u0001${channel}` : channel;
}

/**
 * PROTOCOL.md §2: a JSON object with a string `channel` names its target;
 * anything else goes to the database channel it arrived on.
 */
export function routeNotification(dbChannel: string, payload: string): string {
  return routeParsed(dbChannel, payload).channel;
}

/** routeNotification, with the parse it made (undefined when the text cannot be an object), for the v2 filters to reuse. */
function routeParsed(dbChannel: string, payload: string): { readonly channel: string; readonly parsed: ParsedNotification | undefined } {
  // Cheap pre-check: only something that starts like an object can carry a channel.
  if (!/^\s*\{/.test(payload)) return { channel: dbChannel, parsed: undefined };
  // Not JSON, or no string `channel`: routed to the database channel, as postgres-websockets does.
  const parsed = parseNotification(payload);
  const channel = parsed.object?.channel;
  return { channel: typeof channel === 'string' ? channel : dbChannel, parsed };
}

export function encodeEnvelope<P extends Json>(envelope: Envelope<P>): string {
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
