// A pgws.v2 socket (PROTOCOL.md §9): its requests, answered one frame each, and what the
// relay's notifications send it. The relay keeps what every socket shares (the NOTIFY batcher,
// flow control, expiry, meta events) and hands a v2 socket's frames here, in the order they
// arrived; this module decides, per request, what is allowed and what is answered.
//
// Fan-out stays in the engine: a subscription is the server-wide triple (channel, filter, echo)
// of subscriptions.ts, and a socket holding it is subscribed to the triple's topic. A
// notification costs one filter evaluation per distinct filter and one publish per triple.
import type { AuthResult } from '../auth/index.js';
import { NotifyTimeoutError } from '../db/batcher.js';
import { describeDbError } from '../db/errors.js';
import type { Logger } from '../log.js';
import type { TransportSocket } from '../transport/types.js';
import { Close, NOTIFY_PAYLOAD_LIMIT, type Claims, type CloseCode, type Grant, type Json } from '../types.js';
import { JOURNAL_POOL_SIZE, type Journal } from '../db/journal.js';
import { delay } from '../timer.js';
import { compileFilter } from './filter.js';
import { createHistoryReader, type HistoryReader } from './history.js';
import {
  errorFrame,
  messageFrame,
  parseRequest,
  pongFrame,
  publishedFrame,
  refreshedFrame,
  resultFrame,
  subscribedFrame,
  unsubscribedFrame,
  type ErrorCode,
  type RequestId,
  type V2Request,
} from './frames.js';
import type { ParsedNotification, Subscription, SubscriptionTable } from './subscriptions.js';

const DEFAULT_REPLAY_ROOM_BYTES = 512 * 1024;
/** How often a replay waiting for room looks again. */
const REPLAY_POLL_MS = 5;

/** Resolves once the socket holds less than `bytes` waiting to be written, or is closed. */
async function roomFor(socket: TransportSocket<V2Session>, state: V2State, bytes: number): Promise<void> {
  while (!state.closed && socket.bufferedAmount() >= bytes) await delay(REPLAY_POLL_MS);
}

/**
 * How long a replay waits for the listener to deliver the newest row it replayed. Until then a
 * row's NOTIFY may still be on its way and would reach the socket a second time, live; after it
 * (the listener is down), the subscription goes live anyway.
 */
const LISTENER_CATCH_UP_MS = 5000;

/** Frames that are not JSON a v2 socket may send in a row; one more closes it 1008. */
export const MAX_NOT_JSON_IN_A_ROW = 10;
export const NOT_ALLOWED_BY_NEW_TOKEN = 'not allowed by the new token';

/** What pgws keeps for a v2 socket, beside its Session. */
export interface V2State {
  /**
   * This socket's subscriptions. An array, not a Map: a few entries, found by a scan of at most
   * PGWS_MAX_SUBSCRIPTIONS, and several hundred bytes less per socket than a Map's hash table.
   */
  readonly subs: Subscription[];
  /** Frames that were not JSON since the last one that was. */
  notJsonInARow: number;
  /** Subscriptions with echo off: while any, the envelopes of this socket's publishes are remembered. */
  echoOff: number;
  /** Refreshes answered so far: a verdict that arrives after a later one was applied is dropped. */
  refreshes: number;
  /** Set at close: later frames (held ones still being taken) answer nothing and subscribe nothing. */
  closed: boolean;
}

/** The part of a Session this module reads and changes. */
export interface V2Session {
  grant: Grant;
  readonly v2: V2State | undefined;
  readonly failed: boolean;
}

/** What a call answers: its result, or a refusal with one of the codes of PROTOCOL.md §12. */
export type CallOutcome =
  | { readonly ok: true; readonly data: Json }
  | { readonly ok: false; readonly code: 'forbidden' | 'not_found' | 'db_error'; readonly message: string };

export interface V2Deps<S extends V2Session> {
  readonly table: SubscriptionTable;
  readonly maxSubscriptions: number;
  /** The same checks as an upgrade's, for a v2 grant (channels checked here, per request). */
  readonly authorize: (token: string) => AuthResult | Promise<AuthResult>;
  /**
   * NOTIFYs one envelope on the listen channel for the socket, in the socket's order with its
   * other frames; resolves once committed. `own`: remember it, to leave the socket out of
   * echo-off subscriptions when it comes back.
   */
  readonly notify: (socket: TransportSocket<S>, envelope: string, own: boolean) => Promise<void>;
  /** Encodes a publish's envelope, stamped with the time the frame arrived. */
  readonly envelope: (grant: Grant, channel: string, payload: Json, at: number) => string;
  /** The grant changed (refresh): the relay moves the expiry timer. */
  readonly regranted: (socket: TransportSocket<S>, grant: Grant) => void;
  /** Closes the socket for an error (the relay's one way to do it). */
  readonly fail: (socket: TransportSocket<S>, code: CloseCode, reason: string) => void;
  readonly log: Logger;
  /** With PGWS_RPC_SCHEMA: runs a call as the token's role (src/rpc.ts, PROTOCOL.md §12); never rejects. */
  readonly call?: (claims: Claims, fn: string, args: Json | undefined) => Promise<CallOutcome>;
  /** A replay writes its next chunk only while the socket holds less than this (half of PGWS_MAX_BACKPRESSURE). */
  readonly replayRoomBytes?: number;
  /** With PGWS_JOURNAL=on: `subscribed` carries the newest offset, and `since` replays (PROTOCOL.md §10). */
  readonly journal?: Pick<Journal, 'newestOffset' | 'replay'>;
  /** Journal reads at a time; subscribes queued behind them share a read of the same history (default: the journal's pool size). */
  readonly journalReads?: number;
}

/**
 * A socket's subscription between its subscribe and its answer, while the journal is read: the
 * frames live notifications send it meanwhile wait here, so that the history, then these (less
 * what the history already held, by offset), then the live topic follow one another with no
 * gap and no duplicate.
 */
interface CatchUp {
  readonly socket: TransportSocket<V2Session>;
  readonly waiting: { readonly frame: string; readonly offset: string | undefined }[];
}

export interface V2Protocol<S extends V2Session> {
  newState(): V2State;
  /** One frame from the socket (`at`: when it arrived, the envelope's stamp). */
  onFrame(socket: TransportSocket<S>, text: string, at: number): void;
  /** The socket closed: its subscriptions are released (the transport already dropped its topics). */
  onClose(socket: TransportSocket<S>): void;
  /**
   * Sends a notification routed to `channel` to the v2 subscriptions it matches. `origin`: the
   * socket whose publish caused it, left out of echo-off subscriptions.
   */
  deliver(channel: string, text: string, origin: TransportSocket<S> | undefined, offset?: string, parsed?: ParsedNotification): void;
  /** Subscriptions held by sockets now, counted once per socket. */
  held(): number;
  /**
   * The listener delivered a journaled message with this offset (they arrive in commit order), or
   * will never deliver one at or below it (read before its LISTEN).
   */
  offsetSeen(offset: string): void;
}

/** Whether a v2 grant allows a channel: listed by the token, or any when it lists none. */
export function allowsChannel(grant: Grant, channel: string): boolean {
  return grant.anyChannel === true || grant.channels.includes(channel);
}

export function createV2Protocol<S extends V2Session>(
  deps: V2Deps<S>,
  publish: (topic: string, text: string, except?: TransportSocket<S>) => void,
): V2Protocol<S> {
  type Socket = TransportSocket<S>;
  const { table } = deps;
  let held = 0;
  const history = deps.journal === undefined ? undefined : createHistoryReader(deps.journal, deps.journalReads ?? JOURNAL_POOL_SIZE);
  /** The highest journal offset the listener has delivered, and replays waiting for one. */
  let seenOffset = 0n;
  const offsetWaiters = new Set<{ readonly until: bigint; readonly done: () => void }>();

  /** Resolves once the listener delivered `until` (or a later offset), or after `ms`. */
  function offsetDelivered(until: bigint, ms: number): Promise<void> {
    if (seenOffset >= until) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter = {
        until,
        done: () => {
          clearTimeout(timer);
          offsetWaiters.delete(waiter);
          resolve();
        },
      };
      const timer = setTimeout(waiter.done, ms);
      offsetWaiters.add(waiter);
    });
  }

  /** Subscriptions that sockets are catching up on, with those sockets' waiting frames. */
  const catchUps = new Map<Subscription, Set<CatchUp>>();

  function stopCatchingUp(subscription: Subscription, catchUp: CatchUp): void {
    const set = catchUps.get(subscription);
    set?.delete(catchUp);
    if (set?.size === 0) catchUps.delete(subscription);
  }

  function answer(socket: Socket, state: V2State, frame: string): void {
    if (!state.closed) socket.send(frame);
  }

  function refuse(socket: Socket, state: V2State, id: RequestId | null | undefined, code: ErrorCode, message: string): void {
    answer(socket, state, errorFrame(id, code, message));
  }

  function subscribe(socket: Socket, state: V2State, request: Extract<V2Request, { type: 'subscribe' }>): void {
    const { grant } = socket.session;
    const { id, channel } = request;
    if (grant.mode === 'w') return refuse(socket, state, id, 'forbidden', 'the token\'s mode is "w": it may publish, not subscribe');
    if (!allowsChannel(grant, channel)) return refuse(socket, state, id, 'forbidden', 'the token does not allow this channel');
    const compiled = compileFilter(request.filter, request.filterBytes);
    if (!compiled.ok) return refuse(socket, state, id, 'bad_request', compiled.message);
    // Without the journal there is no history: a `since` is answered as an incomplete one.
    const recovered = request.since === undefined ? undefined : false;
    const subscription = table.acquire(channel, compiled.filter, request.echo);
    if (state.subs.includes(subscription)) {
      // The same triple again: the same subscription, held once by this socket (already live:
      // nothing to replay).
      table.release(subscription);
      if (deps.journal === undefined) return answer(socket, state, subscribedFrame(id, channel, subscription.sub, null, recovered));
      deps.journal.newestOffset(channel).then(
        (offset) => answer(socket, state, subscribedFrame(id, channel, subscription.sub, offset, recovered)),
        (err: unknown) => refuse(socket, state, id, 'db_error', `could not read the journal: ${describeDbError(err)}`),
      );
      return;
    }
    if (state.subs.length >= deps.maxSubscriptions) {
      table.release(subscription);
      return refuse(socket, state, id, 'too_many_subscriptions', `at most ${deps.maxSubscriptions} subscriptions per socket`);
    }
    state.subs.push(subscription);
    held += 1;
    if (!subscription.echo) state.echoOff += 1;
    if (history === undefined) {
      socket.subscribe(subscription.topic);
      return answer(socket, state, subscribedFrame(id, channel, subscription.sub, null, recovered));
    }
    catchUp(socket, state, subscription, id, request.since, history);
  }

  /**
   * Answers a subscribe from the journal: the channel's newest offset, and with `since` every row
   * after it that the filter matches, in order; then the live frames that arrived meanwhile,
   * less those at or below the last row sent (or, with no history sent, the answer's offset);
   * then the live topic. Registered before the first query, so a message committed at any
   * moment is in the rows, in the waiting frames, or both (then sent once).
   */
  function catchUp(
    socket: Socket,
    state: V2State,
    subscription: Subscription,
    id: RequestId | undefined,
    since: string | undefined,
    history: HistoryReader,
  ): void {
    const entry: CatchUp = { socket, waiting: [] };
    let set = catchUps.get(subscription);
    if (set === undefined) catchUps.set(subscription, (set = new Set()));
    set.add(entry);
    const { channel, sub } = subscription;
    // Unsubscribed, revoked by a refresh, or closed meanwhile: nothing more is sent.
    const ended = (): boolean => state.closed || !state.subs.includes(subscription);
    history.read(channel, since).then(
      async (read) => {
        const { offset, replay } = read;
        if (ended()) {
          stopCatchingUp(subscription, entry);
          return refuse(socket, state, id, 'not_subscribed', 'the subscription ended before its history was read');
        }
        answer(socket, state, subscribedFrame(id, channel, sub, offset, replay === undefined ? undefined : replay.complete));
        let last = since === undefined ? undefined : BigInt(since);
        if (replay?.complete === true) {
          // In chunks, each one write, and only while the socket has room: a long history must
          // not make a healthy reader look slow (the slow-reader rule would close it 1008).
          // Live frames keep waiting in `entry` meanwhile.
          for (let index = 0, count = history.chunkCount(read); index < count; index++) {
            await roomFor(socket, state, deps.replayRoomBytes ?? DEFAULT_REPLAY_ROOM_BYTES);
            if (ended()) return stopCatchingUp(subscription, entry);
            const frames = history.chunk(read, subscription, index);
            socket.cork(() => {
              for (const frame of frames) answer(socket, state, frame);
            });
          }
          const newest = replay.rows.at(-1);
          if (newest !== undefined) {
            last = BigInt(newest.offset);
            // Replayed rows whose NOTIFY has not reached pgws yet would come again, live:
            // stay off the topic (their frames wait here, and are dropped) until it has.
            await offsetDelivered(last, LISTENER_CATCH_UP_MS);
          }
        } else {
          // No history sent: the answer's `offset` is where the subscription starts. A message at or
          // below it is history, which a later `since` from that offset would skip, so one whose
          // NOTIFY is still on its way is not sent live either: wait for the listener to pass it.
          last = offset === null ? undefined : BigInt(offset);
          if (last !== undefined) await offsetDelivered(last, LISTENER_CATCH_UP_MS);
        }
        stopCatchingUp(subscription, entry);
        if (ended()) return;
        socket.cork(() => {
          for (const { frame, offset: at } of entry.waiting) {
            if (last !== undefined && at !== undefined && BigInt(at) <= last) continue;
            answer(socket, state, frame);
          }
        });
        socket.subscribe(subscription.topic);
      },
      (err: unknown) => {
        stopCatchingUp(subscription, entry);
        deps.log.warn({ channel, err: describeDbError(err) }, 'v2 subscribe: the journal could not be read');
        if (state.subs.includes(subscription)) end(socket, state, subscription);
        refuse(socket, state, id, 'db_error', `could not read the journal: ${describeDbError(err)}`);
      },
    ).catch((err: unknown) => deps.log.error({ channel, err: describeDbError(err) }, 'v2 subscribe: replay failed'));
  }

  function end(socket: Socket, state: V2State, subscription: Subscription): void {
    state.subs.splice(state.subs.indexOf(subscription), 1);
    held -= 1;
    if (!subscription.echo) state.echoOff -= 1;
    socket.unsubscribe(subscription.topic);
    table.release(subscription);
  }

  function unsubscribe(socket: Socket, state: V2State, id: RequestId | undefined, sub: string): void {
    const subscription = state.subs.find((held) => held.sub === sub);
    if (subscription === undefined) return refuse(socket, state, id, 'not_subscribed', 'no subscription with this id on this socket');
    end(socket, state, subscription);
    answer(socket, state, unsubscribedFrame(id, sub));
  }

  function publishRequest(socket: Socket, state: V2State, request: Extract<V2Request, { type: 'publish' }>, at: number): void {
    const { grant } = socket.session;
    const { id, channel } = request;
    if (grant.mode === 'r') return refuse(socket, state, id, 'forbidden', 'the token\'s mode is "r": it may subscribe, not publish');
    if (!allowsChannel(grant, channel)) return refuse(socket, state, id, 'forbidden', 'the token does not allow this channel');
    const envelope = deps.envelope(grant, channel, request.payload, at);
    const bytes = Buffer.byteLength(envelope);
    if (bytes >= NOTIFY_PAYLOAD_LIMIT) {
      return refuse(
        socket,
        state,
        id,
        'payload_too_large',
        `the NOTIFY envelope would be ${bytes} bytes, the limit is ${NOTIFY_PAYLOAD_LIMIT - 1}; the message was not sent`,
      );
    }
    deps.notify(socket, envelope, state.echoOff > 0).then(
      () => answer(socket, state, publishedFrame(id)),
      (err: unknown) => {
        deps.log.warn({ channel, remote: socket.remoteAddress, err: describeDbError(err) }, 'v2 publish failed');
        refuse(socket, state, id, 'db_error', databaseFailure(err));
      },
    );
  }

  function refresh(socket: Socket, state: V2State, id: RequestId | undefined, token: string): void {
    const turn = ++state.refreshes;
    const apply = (verdict: AuthResult): void => {
      if (state.closed || socket.session.failed) return;
      if (turn !== state.refreshes) {
        // A later refresh was sent meanwhile: it decides; this one only answers.
        if (!verdict.ok) refuse(socket, state, id, 'invalid_token', `${verdict.reason}; a later refresh decides`);
        else answer(socket, state, refreshedFrame(id, verdict.grant.exp ?? null));
        return;
      }
      if (!verdict.ok) return refuse(socket, state, id, 'invalid_token', `${verdict.reason}; the old token stays until it expires`);
      const { grant } = verdict;
      socket.session.grant = grant;
      deps.regranted(socket, grant);
      for (const subscription of [...state.subs]) {
        if (grant.mode !== 'w' && allowsChannel(grant, subscription.channel)) continue;
        end(socket, state, subscription);
        answer(socket, state, unsubscribedFrame(undefined, subscription.sub, NOT_ALLOWED_BY_NEW_TOKEN));
      }
      answer(socket, state, refreshedFrame(id, grant.exp ?? null));
    };
    const verdict = deps.authorize(token);
    if (verdict instanceof Promise) verdict.then(apply, () => apply({ ok: false, status: 401, reason: 'Invalid token' }));
    else apply(verdict);
  }

  /** PROTOCOL.md §12: needs mode w or rw; answered in the order the database finishes. */
  function call(socket: Socket, state: V2State, id: RequestId | undefined, fn: string, args: Json | undefined): void {
    if (deps.call === undefined) return refuse(socket, state, id, 'not_found', 'calls are not enabled on this server (PGWS_RPC_SCHEMA is not set)');
    const { grant } = socket.session;
    if (grant.mode === 'r') return refuse(socket, state, id, 'forbidden', 'the token\'s mode is "r": calls need "w" or "rw"');
    deps.call(grant.claims, fn, args).then(
      (outcome) => (outcome.ok ? answer(socket, state, resultFrame(id, outcome.data)) : refuse(socket, state, id, outcome.code, outcome.message)),
      (err: unknown) => refuse(socket, state, id, 'db_error', `the call failed: ${describeDbError(err)}`),
    );
  }

  function handle(socket: Socket, state: V2State, request: V2Request, at: number): void {
    switch (request.type) {
      case 'subscribe':
        return subscribe(socket, state, request);
      case 'unsubscribe':
        return unsubscribe(socket, state, request.id, request.sub);
      case 'publish':
        return publishRequest(socket, state, request, at);
      case 'refresh':
        return refresh(socket, state, request.id, request.token);
      case 'call':
        return call(socket, state, request.id, request.fn, request.args);
      case 'ping':
        return answer(socket, state, pongFrame(request.id));
    }
  }

  return {
    newState: () => ({ subs: [], notJsonInARow: 0, echoOff: 0, refreshes: 0, closed: false }),

    onFrame(socket, text, at) {
      const state = socket.session.v2;
      if (state === undefined) return;
      const parsed = parseRequest(text);
      if (state.closed) {
        // Held frames taken after the close: only publishes still matter (sent before the client left).
        if (parsed.ok && parsed.request.type === 'publish') publishRequest(socket, state, parsed.request, at);
        return;
      }
      if (parsed.ok) {
        state.notJsonInARow = 0;
        handle(socket, state, parsed.request, at);
        return;
      }
      if (parsed.notJson) {
        state.notJsonInARow += 1;
        if (state.notJsonInARow > MAX_NOT_JSON_IN_A_ROW) {
          deps.fail(socket, Close.PolicyViolation, `More than ${MAX_NOT_JSON_IN_A_ROW} frames in a row that are not JSON`);
          return;
        }
      } else state.notJsonInARow = 0;
      refuse(socket, state, parsed.id, 'bad_request', parsed.message);
    },

    onClose(socket) {
      const state = socket.session.v2;
      if (state === undefined) return;
      state.closed = true;
      for (const subscription of state.subs) table.release(subscription);
      held -= state.subs.length;
      state.subs.length = 0;
      state.echoOff = 0;
    },

    deliver(channel, text, origin, offset, parsed) {
      for (const { subscription, frame } of table.deliveries(channel, text, offset, parsed)) {
        publish(subscription.topic, frame, subscription.echo ? undefined : origin);
        const catching = catchUps.size === 0 ? undefined : catchUps.get(subscription);
        if (catching === undefined) continue;
        for (const entry of catching) {
          if (subscription.echo || entry.socket !== origin) entry.waiting.push({ frame, offset });
        }
      }
    },

    held: () => held,

    offsetSeen(offset) {
      const value = BigInt(offset);
      if (value <= seenOffset) return;
      seenOffset = value;
      for (const waiter of offsetWaiters) if (waiter.until <= value) waiter.done();
    },
  };
}

/** A db_error's message: what happened to the message, as far as pgws knows. */
function databaseFailure(err: unknown): string {
  if (err instanceof NotifyTimeoutError) {
    return 'database timeout: the NOTIFY was abandoned unanswered, so the message may still be delivered';
  }
  return 'database error: the message was not delivered';
}
