// pgws/client: a typed client for the pgws protocol v2 (PROTOCOL.md §9, with `since` and
// `offset` from §10). One socket, many subscriptions, publish and call with answers,
// automatic reconnect with backoff and jitter, resubscribe with `since`, token refresh
// through a provider.
//
// No runtime dependencies, one file: it runs in browsers, in Node 22+ (global WebSocket) and
// in older Node with the `ws` package's WebSocket passed in. It is compiled without the DOM
// lib and without Node types; the host features it uses are declared below as structural
// types (WebSocketLike, Host).
//
// Decisions, in one place:
// - Request ids are increasing numbers, per client (not per socket).
// - Subscriptions are local objects. The server shares one `sub` between subscriptions of the
//   same (channel, filter, echo) on a socket and counts it once, so the client counts its
//   local subscriptions per server `sub`: a `message` goes to every local one, and the server
//   is told `unsubscribe` only when the last one goes and no subscribe on that channel is
//   still unanswered (an answer to it could name the same `sub`).
// - Requests made while the socket is not open wait for it (their timeout runs from the
//   call). A request already sent when the socket drops is rejected `connection_lost` and never
//   retried: a publish may or may not have been delivered.
// - After a reconnect every live subscription is sent again, once per former server `sub`,
//   with `since` = the lowest offset its local subscriptions saw (the offset of the last
//   message, else that of the `subscribed` answer), when there is one. A message whose offset
//   is not above the last one a subscription got is not delivered to it again.
// - Handshake refused (401 and the like; only `ws` reports the status, a browser sees a bare
//   1006), server gone, socket dropped: retry with backoff, whatever the token kind, and an
//   `error` event for each failed attempt. A provider is asked again at every attempt. A fixed
//   token whose `exp` has passed (by the server's 3001 close, or by the local clock before an
//   attempt) ends the client: `error` with code `expired`, then state `closed`.
// - The token's `exp` is read from its payload without verifying it (the server verifies).

// ---------------------------------------------------------------------------------------------
// Public types

/** A JSON value. */
export type Json = string | number | boolean | null | readonly Json[] | { readonly [key: string]: Json };

/** A filter condition's plain value: equality (an object here would be an operator object). */
export type FilterValue = string | number | boolean | null | readonly Json[];

/** Operators of one filter condition (PROTOCOL.md §9 Filters); give at least one. */
export interface FilterOperators {
  readonly ne?: Json;
  readonly in?: readonly Json[];
  readonly nin?: readonly Json[];
  readonly lt?: number | string;
  readonly lte?: number | string;
  readonly gt?: number | string;
  readonly gte?: number | string;
  readonly exists?: boolean;
}

/** `{"payload.room": 7, "payload.price": {"gte": 10}}`: dotted paths into the notification JSON. */
export type Filter = { readonly [path: string]: FilterValue | FilterOperators };

/** Error codes the server sends (PROTOCOL.md §9). */
export type ServerErrorCode =
  | 'bad_request'
  | 'forbidden'
  | 'not_subscribed'
  | 'too_many_subscriptions'
  | 'payload_too_large'
  | 'db_error'
  | 'invalid_token'
  | 'history_unavailable'
  | 'not_found';

/**
 * Error codes of the client itself:
 * - `timeout`: no answer within `requestTimeoutMs` (or no socket opened within it);
 * - `closed`: `close()` was called (or the subscription was ended before it was answered);
 * - `connection_lost`: the socket dropped while the request was in flight (not retried);
 * - `expired`: a fixed token expired: the client is closed;
 * - `connect_failed`: one attempt to open the socket failed (the client retries);
 * - `token_unavailable`: the token provider threw or gave no string.
 */
export type ClientErrorCode = 'timeout' | 'closed' | 'connection_lost' | 'expired' | 'connect_failed' | 'token_unavailable';

export type PgwsErrorCode = ServerErrorCode | ClientErrorCode;

export class PgwsError extends Error {
  override readonly name = 'PgwsError';
  /** A server code as sent (a code added to the server later comes through as it is), or a client code. */
  readonly code: PgwsErrorCode;
  /** HTTP status of a refused handshake, when the WebSocket implementation reports it (`ws` does, browsers do not). */
  readonly status: number | undefined;

  constructor(code: PgwsErrorCode, message: string, options: { readonly status?: number; readonly cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status;
  }
}

export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ReconnectOptions {
  /** Delay before the first retry, ms. Default 500. */
  readonly initialDelayMs?: number;
  /** Longest delay between retries, ms. Default 30000. */
  readonly maxDelayMs?: number;
  /** Each retry waits `factor` times longer than the one before. Default 2. */
  readonly factor?: number;
  /** A delay is shortened by a random fraction of at most this (0 to 1). Default 0.5. */
  readonly jitter?: number;
}

/** Called before every attempt to open the socket and before the token expires. */
export type TokenProvider = () => string | Promise<string>;

/** What the client needs from a WebSocket event handler (method syntax: any event type fits). */
type Handler<E> = { bivarianceHack(event: E): void }['bivarianceHack'];

/** The part of a WebSocket the client uses: the browser's, Node 22's and `ws`'s all fit. */
export interface WebSocketLike {
  readonly protocol: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ readonly data: unknown }> | null;
  onclose: Handler<{ readonly code: number; readonly reason: string }> | null;
  onerror: Handler<unknown> | null;
}

export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike;

export interface ConnectOptions {
  /** A token, or a provider of one. Leave out when the browser sends a cookie (PGWS_JWT_COOKIE). */
  readonly token?: string | TokenProvider;
  /** Default: globalThis.WebSocket. In Node 20, pass `WebSocket` from the `ws` package. */
  readonly WebSocket?: WebSocketConstructor;
  /** Backoff of reconnects; `false`: no reconnect (a lost socket closes the client). */
  readonly reconnect?: ReconnectOptions | false;
  /** With a provider: ask it for a new token this long before `exp` (at the latest at half the remaining time). Default 30. */
  readonly refreshBeforeExpirySeconds?: number;
  /** A request without an answer this long rejects with code `timeout`; also the limit for opening a socket. Default 10000. */
  readonly requestTimeoutMs?: number;
  /** After this long without a frame from the server, send a `ping`; no answer within `requestTimeoutMs`: reconnect. 0: never. Default 30000. */
  readonly heartbeatIntervalMs?: number;
}

export interface MessageMeta {
  readonly channel: string;
  /** The server's subscription id. */
  readonly sub: string;
  /** Journal offset of this message, when it came through the journal (PROTOCOL.md §10). */
  readonly offset?: string;
}

export interface SubscribeOptions {
  readonly filter?: Filter;
  /** `false`: skip notifications caused by this socket's own publishes. Default true. */
  readonly echo?: boolean;
  /** `data` is the notification JSON as the server sent it (usually `{"channel": ..., "payload": ...}`). */
  onMessage(data: Json, meta: MessageMeta): void;
}

/** `subscribing` until the first `subscribed` answer; `ended` for good (unsubscribed, refused, revoked, client closed). */
export type SubscriptionState = 'subscribing' | 'active' | 'ended';

export interface Subscription {
  readonly channel: string;
  readonly filter: Filter | undefined;
  readonly echo: boolean;
  /** Resolves at the first `subscribed` answer; rejects with a PgwsError when refused (the subscription is then ended). */
  readonly ready: Promise<void>;
  /** The last journal offset seen, if any. */
  readonly offset: string | undefined;
  readonly state: SubscriptionState;
  /** Resolves once this subscription gets no more messages (the server confirmed, or the socket is gone). */
  unsubscribe(): Promise<void>;
}

export interface ClientEvents {
  readonly state: ClientState;
  readonly error: PgwsError;
  /** A subscription the server ended (e.g. "not allowed by the new token") or refused when it was sent again after a reconnect. */
  readonly unsubscribed: { readonly channel: string; readonly reason: string; readonly subscription: Subscription };
  /** A subscription sent again after a reconnect. `recovered: false`: messages may have been missed: reload state. */
  readonly resubscribed: { readonly channel: string; readonly recovered: boolean; readonly subscription: Subscription };
}

export type Listener<E extends keyof ClientEvents> = (value: ClientEvents[E]) => void;

export interface PgwsClient {
  readonly state: ClientState;
  subscribe(channel: string, options: SubscribeOptions): Subscription;
  /** Resolves once the NOTIFY committed (`published`). */
  publish(channel: string, payload: Json): Promise<void>;
  /** Resolves with the `data` of the `result` answer (PROTOCOL.md §12). */
  call(fn: string, args?: Json): Promise<Json>;
  /** Resolves with the round trip in ms. */
  ping(): Promise<number>;
  /** Returns a function that removes the listener. */
  on<E extends keyof ClientEvents>(event: E, listener: Listener<E>): () => void;
  off<E extends keyof ClientEvents>(event: E, listener: Listener<E>): void;
  /** No reconnect afterwards; requests waiting for an answer reject with code `closed`. Resolves when the socket closed. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Helpers with no client state (exported for tests and for apps that want them)

const RECONNECT_DEFAULTS: Required<ReconnectOptions> = { initialDelayMs: 500, maxDelayMs: 30_000, factor: 2, jitter: 0.5 };

/** Delay before retry number `attempt` (0 = the first): exponential, capped, shortened by up to `jitter` at random. */
export function backoffDelay(attempt: number, options: ReconnectOptions = {}, random: () => number = Math.random): number {
  const o = { ...RECONNECT_DEFAULTS, ...options };
  const base = Math.min(o.maxDelayMs, o.initialDelayMs * o.factor ** attempt);
  return Math.round(base * (1 - o.jitter * random()));
}

/** The `exp` claim (seconds since the epoch) of a JWT, read without verifying it; undefined when absent or unreadable. */
export function tokenExpiry(token: string): number | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined) return undefined;
  const text = base64UrlText(payload);
  if (text === undefined) return undefined;
  try {
    const claims: unknown = JSON.parse(text);
    if (isRecord(claims) && typeof claims.exp === 'number' && Number.isFinite(claims.exp)) return claims.exp;
  } catch {
    // not JSON: no exp
  }
  return undefined;
}

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** base64url (padding allowed) to UTF-8 text; undefined when it is neither. */
function base64UrlText(input: string): string | undefined {
  const s = input.replace(/=+$/, '');
  if (s.length % 4 === 1) return undefined;
  let bits = 0;
  let value = 0;
  let escaped = '';
  for (const ch of s) {
    const n = BASE64URL.indexOf(ch === '+' ? '-' : ch === '/' ? '_' : ch);
    if (n < 0) return undefined;
    value = (value << 6) | n;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      escaped += `%${((value >> bits) & 0xff).toString(16).padStart(2, '0')}`;
    }
  }
  try {
    return decodeURIComponent(escaped);
  } catch {
    return undefined; // not UTF-8
  }
}

/** Offsets are canonical decimal bigint text: compare by length, then by digits. */
function offsetAbove(a: string, b: string): boolean {
  return a.length !== b.length ? a.length > b.length : a > b;
}

function isRecord(value: unknown): value is { readonly [key: string]: unknown } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------------------------------------
// Host features (declared here: no DOM lib, no Node types)

interface Host {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  readonly WebSocket?: WebSocketConstructor;
}
const host = globalThis as unknown as Host;

/** Longest delay one setTimeout can wait; longer waits are chained. */
const MAX_TIMER_MS = 2_147_483_647;

type Cancel = () => void;

function later(callback: () => void, ms: number): Cancel {
  let handle: unknown;
  const arm = (left: number): void => {
    handle = host.setTimeout(left > MAX_TIMER_MS ? () => arm(left - MAX_TIMER_MS) : callback, Math.min(Math.max(0, left), MAX_TIMER_MS));
  };
  arm(ms);
  return () => host.clearTimeout(handle);
}

/** Runs user code: an exception is reported as the host reports uncaught ones, and the client goes on. */
function runUserCode(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    host.setTimeout(() => {
      throw err;
    }, 0);
  }
}

// ---------------------------------------------------------------------------------------------
// Server frames, read at the edge

type ServerFrame =
  | { readonly type: 'message'; readonly sub: string; readonly channel: string; readonly data: Json; readonly offset: string | undefined }
  | {
      readonly type: 'subscribed';
      readonly id: unknown;
      readonly channel: string;
      readonly sub: string;
      readonly offset: string | null;
      readonly recovered: boolean | undefined;
    }
  | { readonly type: 'unsubscribed'; readonly id: unknown; readonly sub: string; readonly reason: string | undefined }
  | { readonly type: 'published'; readonly id: unknown }
  | { readonly type: 'refreshed'; readonly id: unknown; readonly exp: number | null }
  | { readonly type: 'result'; readonly id: unknown; readonly data: Json }
  | { readonly type: 'pong'; readonly id: unknown }
  | { readonly type: 'error'; readonly id: unknown; readonly code: PgwsErrorCode; readonly message: string };

type AnswerType = 'published' | 'refreshed' | 'result' | 'pong';
type Answer<T extends AnswerType> = Extract<ServerFrame, { readonly type: T }>;

const str = (v: unknown): v is string => typeof v === 'string';

/** One frame of the server, or undefined for what this client does not know (ignored: forward compatibility). */
function readFrame(text: string): ServerFrame | undefined {
  let f: unknown;
  try {
    f = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(f)) return undefined;
  const { id } = f;
  switch (f.type) {
    case 'message':
      if (!str(f.sub) || !str(f.channel) || !('data' in f)) return undefined;
      return { type: 'message', sub: f.sub, channel: f.channel, data: f.data as Json, offset: str(f.offset) ? f.offset : undefined };
    case 'subscribed':
      if (!str(f.sub) || !str(f.channel)) return undefined;
      return {
        type: 'subscribed',
        id,
        channel: f.channel,
        sub: f.sub,
        offset: str(f.offset) ? f.offset : null,
        recovered: typeof f.recovered === 'boolean' ? f.recovered : undefined,
      };
    case 'unsubscribed':
      if (!str(f.sub)) return undefined;
      return { type: 'unsubscribed', id, sub: f.sub, reason: str(f.reason) ? f.reason : undefined };
    case 'published':
    case 'pong':
      return { type: f.type, id };
    case 'refreshed':
      return { type: 'refreshed', id, exp: typeof f.exp === 'number' ? f.exp : null };
    case 'result':
      return { type: 'result', id, data: 'data' in f ? (f.data as Json) : null };
    case 'error':
      return { type: 'error', id, code: (str(f.code) ? f.code : 'bad_request') as PgwsErrorCode, message: str(f.message) ? f.message : '' };
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// The client

/** One `subscribe()` of the application. */
interface LocalSub {
  readonly api: Subscription;
  readonly channel: string;
  readonly filter: Filter | undefined;
  readonly echo: boolean;
  readonly onMessage: SubscribeOptions['onMessage'];
  state: SubscriptionState;
  /** The server subscription it is counted in (of the current socket when `entry.live`). */
  entry: Entry | undefined;
  /** Last offset seen: the last message's, else the `subscribed` answer's. Sent as `since`. */
  offset: string | undefined;
  /** Offset of the last message delivered: a message at or below it is a duplicate. */
  delivered: string | undefined;
  settleReady(error?: PgwsError): void;
}

/** One server subscription (`sub`) and the local subscriptions counted in it. */
interface Entry {
  readonly sub: string;
  readonly channel: string;
  readonly locals: Set<LocalSub>;
  /** In the current socket's table; false once unsubscribed or once its socket is gone. */
  live: boolean;
  /** unsubscribe() calls waiting for the server's `unsubscribed`. */
  readonly waiters: { resolve(): void; reject(error: PgwsError): void }[];
}

interface RequestBase {
  readonly frame: { readonly type: string; readonly [key: string]: Json | undefined };
  readonly label: string;
  cancelTimer: Cancel;
}
interface PendingRequest extends RequestBase {
  readonly kind: 'request';
  readonly expect: AnswerType;
  resolve(frame: ServerFrame): void;
  reject(error: PgwsError): void;
  sent: boolean;
}
interface PendingSubscribe extends RequestBase {
  readonly kind: 'subscribe';
  readonly channel: string;
  readonly locals: readonly LocalSub[];
  readonly since: string | undefined;
  /** Given up on (its local subscriptions were told `timeout`); a late answer is still matched. */
  timedOut: boolean;
}
interface PendingUnsubscribe extends RequestBase {
  readonly kind: 'unsubscribe';
  readonly entry: Entry;
}
type Pending = PendingRequest | PendingSubscribe | PendingUnsubscribe;

function positive(name: string, value: number | undefined, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new TypeError(`pgws/client: ${name} must be a number >= ${min}`);
  }
  return value;
}

/** Opens a client: the socket opens at once and reopens after every loss until close(). */
export function connect(url: string, options: ConnectOptions = {}): PgwsClient {
  const givenWebSocket = options.WebSocket ?? host.WebSocket;
  if (typeof givenWebSocket !== 'function') {
    throw new TypeError('pgws/client: no global WebSocket here: pass one as the WebSocket option (in Node 20, `WebSocket` from the ws package)');
  }
  const WebSocketImpl: WebSocketConstructor = givenWebSocket;
  if (typeof url !== 'string' || url === '') throw new TypeError('pgws/client: the URL must be a ws:// or wss:// address');
  const tokenOption = options.token;
  if (tokenOption !== undefined && typeof tokenOption !== 'string' && typeof tokenOption !== 'function') {
    throw new TypeError('pgws/client: token must be a string or a function returning one');
  }
  const backoff: Required<ReconnectOptions> | undefined =
    options.reconnect === false
      ? undefined
      : {
          initialDelayMs: positive('reconnect.initialDelayMs', options.reconnect?.initialDelayMs, RECONNECT_DEFAULTS.initialDelayMs),
          maxDelayMs: positive('reconnect.maxDelayMs', options.reconnect?.maxDelayMs, RECONNECT_DEFAULTS.maxDelayMs),
          factor: positive('reconnect.factor', options.reconnect?.factor, RECONNECT_DEFAULTS.factor, 1),
          jitter: Math.min(1, positive('reconnect.jitter', options.reconnect?.jitter, RECONNECT_DEFAULTS.jitter)),
        };
  const refreshBeforeMs = 1000 * positive('refreshBeforeExpirySeconds', options.refreshBeforeExpirySeconds, 30);
  const timeoutMs = positive('requestTimeoutMs', options.requestTimeoutMs, 10_000, 1);
  const heartbeatMs = positive('heartbeatIntervalMs', options.heartbeatIntervalMs, 30_000);
  const provider: TokenProvider | undefined = typeof tokenOption === 'function' ? tokenOption : undefined;

  let state: ClientState = 'connecting';
  let everOpened = false;
  /** The current socket (connecting or open); undefined between attempts and after close. */
  let socket: WebSocketLike | undefined;
  /** Bumped by every attempt and by close(): an async step of an older attempt stops. */
  let attemptGeneration = 0;
  let attempt = 0;
  let nextId = 1;
  /** The token of the current socket (after a `refreshed`: the new one). */
  let currentToken: string | undefined = typeof tokenOption === 'string' ? tokenOption : undefined;
  let lastFrameAt = 0;
  let closing: Promise<void> | undefined;
  const socketClosed = new Map<WebSocketLike, Promise<void>>();

  const pending = new Map<number, Pending>();
  /** Requests made while no socket was open, sent when one opens. */
  const outbox: PendingRequest[] = [];
  const locals = new Set<LocalSub>();
  const entries = new Map<string, Entry>();
  /** Timers of the current socket (connect deadline, refresh, heartbeat) and of the next attempt. */
  const socketTimers = new Set<Cancel>();
  let retryTimer: Cancel | undefined;

  const listeners: { [E in keyof ClientEvents]: Set<Listener<E>> } = {
    state: new Set(),
    error: new Set(),
    unsubscribed: new Set(),
    resubscribed: new Set(),
  };

  function emit<E extends keyof ClientEvents>(event: E, value: ClientEvents[E]): void {
    for (const listener of [...listeners[event]]) runUserCode(() => listener(value));
  }

  function setState(next: ClientState): void {
    if (state === next) return;
    state = next;
    emit('state', next);
  }

  const isOpen = (): boolean => socket !== undefined && state === 'open';

  function socketTimer(callback: () => void, ms: number): Cancel {
    const cancel = later(() => {
      socketTimers.delete(cancel);
      callback();
    }, ms);
    socketTimers.add(cancel);
    return () => {
      socketTimers.delete(cancel);
      cancel();
    };
  }

  function clearSocketTimers(): void {
    for (const cancel of [...socketTimers]) cancel();
    socketTimers.clear();
  }

  // ---- Opening sockets

  async function obtainToken(): Promise<string | undefined> {
    if (provider === undefined) return currentToken;
    let token: unknown;
    try {
      token = await provider();
    } catch (err) {
      throw new PgwsError('token_unavailable', `the token provider failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (typeof token !== 'string' || token === '') throw new PgwsError('token_unavailable', 'the token provider gave no token (not a non-empty string)');
    return token;
  }

  function fixedTokenExpired(): boolean {
    if (provider !== undefined || currentToken === undefined) return false;
    const exp = tokenExpiry(currentToken);
    return exp !== undefined && exp * 1000 <= Date.now();
  }

  /** One attempt. Never synchronous: listeners added right after connect() see its events. */
  function openSocket(): void {
    const generation = ++attemptGeneration;
    obtainToken().then(
      (token) => {
        if (generation !== attemptGeneration || state === 'closed') return;
        if (fixedTokenExpired()) {
          finish(new PgwsError('expired', 'the token has expired: give the client a token provider to keep it connected'), true);
          return;
        }
        createSocket(token);
      },
      (error: unknown) => {
        if (generation !== attemptGeneration || state === 'closed') return;
        emit('error', error instanceof PgwsError ? error : new PgwsError('token_unavailable', String(error)));
        retry();
      },
    );
  }

  function createSocket(token: string | undefined): void {
    let ws: WebSocketLike;
    try {
      ws = new WebSocketImpl(url, token === undefined ? ['pgws.v2'] : ['pgws.v2', `pgws.bearer.${token}`]);
    } catch (err) {
      // A malformed URL or token: no retry can fix it. Browsers quote the offending
      // subprotocol, which holds the token: it is cut out of the message (and no cause is kept).
      const text = err instanceof Error ? err.message : String(err);
      const shown = token === undefined ? text : text.split(token).join('<token>');
      finish(new PgwsError('connect_failed', `cannot open a WebSocket: ${shown}`), true);
      return;
    }
    socket = ws;
    currentToken = token;
    let opened = false;
    let status: number | undefined;
    let markClosed: () => void = () => undefined;
    socketClosed.set(ws, new Promise<void>((resolve) => (markClosed = resolve)));

    socketTimer(() => {
      if (socket !== ws || opened) return;
      dropSocket(ws);
      lost(false, undefined, new PgwsError('connect_failed', `the socket did not open within ${timeoutMs} ms`));
    }, timeoutMs);

    // Handlers stay attached for the socket's whole life (an `error` of `ws` with no listener
    // would throw); each one first checks that its socket is still the current one.
    ws.onopen = () => {
      if (socket !== ws) return;
      opened = true;
      onOpen(ws);
    };
    ws.onmessage = (event) => {
      if (socket !== ws || typeof event.data !== 'string') return;
      lastFrameAt = Date.now();
      onFrame(event.data);
    };
    ws.onerror = (event) => {
      status ??= handshakeStatus(event);
      if (opened || socket !== ws) return;
      // The handshake failed. Browsers and `ws` follow with a close event, but not every
      // implementation does (Node 20's undici WebSocket stays CONNECTING): do not wait for it.
      dropSocket(ws);
      lost(false, undefined, notOpened(status, undefined));
    };
    ws.onclose = (event) => {
      socketClosed.delete(ws);
      markClosed();
      if (socket !== ws) return;
      socket = undefined;
      if (event.code === 3001) {
        expiredWhileOpen();
        return;
      }
      lost(opened, event, opened ? undefined : notOpened(status, event));
    };
  }

  /** The error event of a failed attempt: by HTTP status when known (401 -> invalid_token...). */
  function notOpened(status: number | undefined, close: { readonly code: number; readonly reason: string } | undefined): PgwsError {
    const code: PgwsErrorCode = status === 401 ? 'invalid_token' : status === 403 ? 'forbidden' : status === 400 ? 'bad_request' : 'connect_failed';
    const why =
      status !== undefined
        ? `HTTP ${status}`
        : close !== undefined
          ? `closed ${close.code}${close.reason ? ` ${close.reason}` : ''}`
          : 'refused or unreachable; the WebSocket implementation does not say which';
    return new PgwsError(code, `the socket could not be opened (${why})`, status === undefined ? {} : { status });
  }

  /** The HTTP status of a refused handshake, from the error `ws` reports ("Unexpected server response: 401"). */
  function handshakeStatus(event: unknown): number | undefined {
    if (!isRecord(event)) return undefined;
    const texts = [event.message, isRecord(event.error) ? event.error.message : undefined];
    for (const text of texts) {
      const match = typeof text === 'string' ? /Unexpected server response: (\d{3})/.exec(text) : null;
      if (match?.[1] !== undefined) return Number(match[1]);
    }
    return undefined;
  }

  function onOpen(ws: WebSocketLike): void {
    clearSocketTimers();
    if (ws.protocol !== 'pgws.v2') {
      dropSocket(ws);
      lost(false, undefined, new PgwsError('connect_failed', `the server did not select the pgws.v2 subprotocol (it selected "${ws.protocol}"): it does not speak protocol v2`));
      return;
    }
    attempt = 0;
    everOpened = true;
    lastFrameAt = Date.now();
    setState('open');
    scheduleRefresh(ws, currentToken === undefined ? undefined : tokenExpiry(currentToken));
    if (heartbeatMs > 0) heartbeat(ws);
    resubscribeAll();
    for (const request of outbox.splice(0)) sendRequest(request);
  }

  /** Closes a socket the client gives up on; its events are ignored from now on. */
  function dropSocket(ws: WebSocketLike): void {
    if (socket === ws) socket = undefined;
    try {
      ws.close(1000);
    } catch {
      // already closing
    }
  }

  /** The socket is gone (closed, refused, or dropped by the client); `socket` is already cleared. */
  function lost(wasOpen: boolean, close: { readonly code: number; readonly reason: string } | undefined, error: PgwsError | undefined): void {
    clearSocketTimers();
    for (const entry of entries.values()) {
      entry.live = false;
      settleWaiters(entry);
    }
    entries.clear();
    for (const [id, p] of pending) {
      pending.delete(id);
      p.cancelTimer();
      if (p.kind === 'request') p.reject(connectionLost(p, close));
      else if (p.kind === 'unsubscribe') settleWaiters(p.entry);
      // subscribe: its local subscriptions are sent again on the next socket
    }
    if (state === 'closed') return;
    if (backoff === undefined) {
      const why = close === undefined ? '' : ` (closed ${close.code}${close.reason ? ` ${close.reason}` : ''})`;
      const what = wasOpen ? `the connection was lost${why}` : 'the socket could not be opened';
      finish(error ?? new PgwsError('connection_lost', `${what} and reconnect is off`), true);
      return;
    }
    if (error !== undefined) emit('error', error);
    retry();
  }

  function connectionLost(p: PendingRequest, close: { readonly code: number; readonly reason: string } | undefined): PgwsError {
    const why = close === undefined ? 'the connection was lost' : `the connection was lost (closed ${close.code}${close.reason ? ` ${close.reason}` : ''})`;
    if (p.frame.type === 'publish') {
      return new PgwsError('connection_lost', `${why} before the server acknowledged the publish: it may or may not have been delivered, and it is not retried`);
    }
    return new PgwsError('connection_lost', `${why} before the server answered the ${p.label}`);
  }

  function retry(): void {
    if (state === 'closed' || backoff === undefined) return;
    setState(everOpened ? 'reconnecting' : 'connecting');
    retryTimer?.();
    retryTimer = later(() => {
      retryTimer = undefined;
      if (state !== 'closed') openSocket();
    }, backoffDelay(attempt++, backoff));
  }

  /** Closed 3001: with a provider, reconnect (it gives a fresh token); with a fixed token, the end. */
  function expiredWhileOpen(): void {
    if (provider === undefined) finish(new PgwsError('expired', 'the token expired (closed 3001): give the client a token provider to keep it connected'), true);
    else lost(true, { code: 3001, reason: 'JWT expired' }, undefined);
  }

  /** Ends the client: no socket, no retry, every waiting promise rejected with `error`. */
  function finish(error: PgwsError, report: boolean): void {
    if (state === 'closed') return;
    attemptGeneration++;
    retryTimer?.();
    retryTimer = undefined;
    clearSocketTimers();
    const ws = socket;
    socket = undefined;
    if (ws !== undefined) {
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
    for (const [id, p] of pending) {
      pending.delete(id);
      p.cancelTimer();
      if (p.kind === 'request') p.reject(error);
      else if (p.kind === 'unsubscribe') settleWaiters(p.entry);
    }
    for (const request of outbox.splice(0)) {
      request.cancelTimer();
      request.reject(error);
    }
    for (const entry of entries.values()) {
      entry.live = false;
      settleWaiters(entry);
    }
    entries.clear();
    for (const local of [...locals]) endLocal(local, error);
    if (report) emit('error', error);
    setState('closed');
  }

  // ---- Token refresh

  function scheduleRefresh(ws: WebSocketLike, exp: number | undefined): void {
    if (provider === undefined || exp === undefined) return;
    const left = exp * 1000 - Date.now();
    socketTimer(() => void refresh(ws, exp), Math.max(left - refreshBeforeMs, left / 2, 0));
  }

  /** After a failed refresh: try again at half the time left, while there is some; else the 3001 close reconnects. */
  function refreshAgainLater(ws: WebSocketLike, exp: number): void {
    const left = exp * 1000 - Date.now();
    if (left > 1000) socketTimer(() => void refresh(ws, exp), Math.max(500, left / 2));
  }

  async function refresh(ws: WebSocketLike, exp: number): Promise<void> {
    if (socket !== ws || !isOpen()) return;
    let token: string | undefined;
    try {
      token = await obtainToken();
    } catch (err) {
      if (socket !== ws) return;
      emit('error', err instanceof PgwsError ? err : new PgwsError('token_unavailable', String(err)));
      refreshAgainLater(ws, exp);
      return;
    }
    if (socket !== ws || token === undefined) return;
    try {
      const answer = await request<'refreshed'>({ type: 'refresh', token }, 'refreshed', 'refresh');
      if (socket !== ws) return;
      currentToken = token;
      const next = answer.exp ?? tokenExpiry(token);
      // A token that does not live longer than the last one: ask again later, not in a loop.
      if (next !== undefined && next <= exp) refreshAgainLater(ws, next);
      else scheduleRefresh(ws, next);
    } catch (err) {
      if (socket !== ws) return;
      if (err instanceof PgwsError && err.code !== 'connection_lost' && err.code !== 'closed') emit('error', err);
      refreshAgainLater(ws, exp);
    }
  }

  // ---- Heartbeat

  function heartbeat(ws: WebSocketLike): void {
    socketTimer(() => {
      if (socket !== ws) return;
      if (Date.now() - lastFrameAt >= heartbeatMs) {
        request<'pong'>({ type: 'ping' }, 'pong', 'ping').catch((err: unknown) => {
          if (socket === ws && err instanceof PgwsError && err.code === 'timeout') {
            dropSocket(ws);
            lost(true, undefined, new PgwsError('connection_lost', `no answer to a ping within ${timeoutMs} ms: reconnecting`));
          }
        });
      }
      heartbeat(ws);
    }, heartbeatMs);
  }

  // ---- Frames

  /** Sends one frame; `undefined` members are left out. A filter is JSON too (its operators are typed apart). */
  function send(frame: { readonly [key: string]: Json | Filter | undefined }): void {
    try {
      socket?.send(JSON.stringify(frame));
    } catch {
      // The socket is closing: its close event follows.
    }
  }

  function onFrame(text: string): void {
    const frame = readFrame(text);
    if (frame === undefined) return;
    if (frame.type === 'message') {
      deliver(frame);
      return;
    }
    if (frame.type === 'unsubscribed' && frame.id === undefined) {
      revoked(frame.sub, frame.reason ?? 'ended by the server');
      return;
    }
    if (frame.type === 'error' && (frame.id === null || frame.id === undefined)) {
      emit('error', new PgwsError(frame.code, frame.message));
      return;
    }
    const p = typeof frame.id === 'number' ? pending.get(frame.id) : undefined;
    if (p === undefined || typeof frame.id !== 'number') return; // late answer to a request given up on
    pending.delete(frame.id);
    p.cancelTimer();
    switch (p.kind) {
      case 'request':
        if (frame.type === 'error') p.reject(new PgwsError(frame.code, frame.message));
        else if (frame.type === p.expect) p.resolve(frame);
        else p.reject(new PgwsError('bad_request', `unexpected answer "${frame.type}" to a ${p.label}`));
        return;
      case 'subscribe':
        if (frame.type === 'subscribed') subscribed(p, frame);
        else if (frame.type === 'error') subscribeRefused(p, new PgwsError(frame.code, frame.message));
        return;
      case 'unsubscribe':
        if (frame.type === 'error' && frame.code !== 'not_subscribed') rejectWaiters(p.entry, new PgwsError(frame.code, frame.message));
        else settleWaiters(p.entry);
        return;
    }
  }

  function deliver(frame: Extract<ServerFrame, { readonly type: 'message' }>): void {
    const entry = entries.get(frame.sub);
    if (entry === undefined) return;
    const meta: MessageMeta =
      frame.offset === undefined ? { channel: frame.channel, sub: frame.sub } : { channel: frame.channel, sub: frame.sub, offset: frame.offset };
    for (const local of [...entry.locals]) {
      if (local.state === 'ended') continue;
      if (frame.offset !== undefined) {
        if (local.delivered !== undefined && !offsetAbove(frame.offset, local.delivered)) continue;
        local.delivered = frame.offset;
        local.offset = frame.offset;
      }
      runUserCode(() => local.onMessage(frame.data, meta));
    }
  }

  // ---- Requests

  function request<T extends AnswerType>(
    frame: { readonly type: string; readonly [key: string]: Json | undefined },
    expect: T,
    label: string,
  ): Promise<Answer<T>> {
    if (state === 'closed') return Promise.reject(new PgwsError('closed', `the client is closed: ${label} not sent`));
    return new Promise<Answer<T>>((resolve, reject) => {
      const p: PendingRequest = {
        kind: 'request',
        frame,
        label,
        expect,
        sent: false,
        resolve: (answer) => resolve(answer as Answer<T>),
        reject,
        cancelTimer: () => undefined,
      };
      p.cancelTimer = later(() => {
        const queued = outbox.indexOf(p);
        if (queued >= 0) outbox.splice(queued, 1);
        for (const [id, q] of pending) if (q === p) pending.delete(id);
        const what =
          !p.sent
            ? `no socket opened within ${timeoutMs} ms: ${label} not sent`
            : frame.type === 'publish'
              ? `no answer to the publish within ${timeoutMs} ms: it may or may not have been delivered`
              : `no answer to the ${label} within ${timeoutMs} ms`;
        reject(new PgwsError('timeout', what));
      }, timeoutMs);
      if (isOpen()) sendRequest(p);
      else outbox.push(p);
    });
  }

  function sendRequest(p: PendingRequest): void {
    const id = nextId++;
    p.sent = true;
    pending.set(id, p);
    send({ ...p.frame, id });
  }

  // ---- Subscriptions

  function sendSubscribe(group: readonly LocalSub[], since: string | undefined): void {
    const first = group[0];
    if (first === undefined) return;
    const id = nextId++;
    const p: PendingSubscribe = {
      kind: 'subscribe',
      channel: first.channel,
      locals: group,
      since,
      timedOut: false,
      frame: { type: 'subscribe' },
      label: 'subscribe',
      cancelTimer: () => undefined,
    };
    p.cancelTimer = later(() => {
      // The request stays pending: a late answer is still matched (and released if unwanted).
      p.timedOut = true;
      for (const local of group) {
        if (local.state === 'subscribing') endLocal(local, new PgwsError('timeout', `no answer to the subscribe to "${local.channel}" within ${timeoutMs} ms`));
        else if (local.state === 'active') emit('error', new PgwsError('timeout', `no answer within ${timeoutMs} ms to subscribing again to "${local.channel}"; still waiting`));
      }
    }, timeoutMs);
    pending.set(id, p);
    send({
      type: 'subscribe',
      id,
      channel: first.channel,
      filter: first.filter,
      since,
      echo: first.echo ? undefined : false,
    });
  }

  /** After a reconnect: every live subscription again, once per former server subscription. */
  function resubscribeAll(): void {
    const groups = new Map<Entry | LocalSub, LocalSub[]>();
    for (const local of locals) {
      const key = local.entry ?? local;
      const group = groups.get(key);
      if (group) group.push(local);
      else groups.set(key, [local]);
    }
    for (const group of groups.values()) {
      let since: string | undefined;
      for (const local of group) {
        if (local.offset !== undefined && (since === undefined || offsetAbove(since, local.offset))) since = local.offset;
      }
      sendSubscribe(group, since);
    }
  }

  function subscribed(p: PendingSubscribe, frame: Extract<ServerFrame, { readonly type: 'subscribed' }>): void {
    let entry = entries.get(frame.sub);
    if (entry === undefined) {
      entry = { sub: frame.sub, channel: frame.channel, locals: new Set(), live: true, waiters: [] };
      entries.set(frame.sub, entry);
    }
    const recovered = p.since !== undefined && frame.recovered === true;
    for (const local of p.locals) {
      if (local.state === 'ended') continue;
      local.entry = entry;
      entry.locals.add(local);
      // The entry is in use again: an unsubscribe() waiting for it to be released is done.
      settleWaiters(entry);
      if (!recovered) {
        local.offset = frame.offset ?? undefined;
        local.delivered = undefined;
      }
      if (local.state === 'subscribing') {
        local.state = 'active';
        local.settleReady();
      } else {
        emit('resubscribed', { channel: local.channel, recovered, subscription: local.api });
      }
    }
    releaseIdle(p.channel);
  }

  function subscribeRefused(p: PendingSubscribe, error: PgwsError): void {
    const live = p.locals.filter((local) => local.state !== 'ended');
    if (error.code === 'history_unavailable' && p.since !== undefined && isOpen()) {
      // No history from that offset: live messages only (answered recovered false).
      sendSubscribe(live, undefined);
      return;
    }
    for (const local of live) {
      const wasActive = local.state === 'active';
      endLocal(local, error);
      if (wasActive) emit('unsubscribed', { channel: local.channel, reason: `${error.code}: ${error.message}`, subscription: local.api });
    }
    releaseIdle(p.channel);
  }

  /** The server ended a subscription on its own (e.g. after a refresh). */
  function revoked(sub: string, reason: string): void {
    const entry = entries.get(sub);
    if (entry === undefined) return;
    entries.delete(sub);
    entry.live = false;
    settleWaiters(entry);
    for (const local of [...entry.locals]) {
      endLocal(local, new PgwsError('forbidden', reason));
      emit('unsubscribed', { channel: local.channel, reason, subscription: local.api });
    }
  }

  /**
   * Tells the server to end subscriptions of `channel` that no local one uses any more, unless a
   * subscribe to that channel is unanswered: its answer may name one of them.
   */
  function releaseIdle(channel: string): void {
    if (!isOpen()) return;
    for (const p of pending.values()) if (p.kind === 'subscribe' && p.channel === channel && !p.timedOut) return;
    for (const entry of [...entries.values()]) {
      if (entry.channel !== channel || entry.locals.size > 0) continue;
      entries.delete(entry.sub);
      entry.live = false;
      const id = nextId++;
      const p: PendingUnsubscribe = {
        kind: 'unsubscribe',
        entry,
        frame: { type: 'unsubscribe' },
        label: 'unsubscribe',
        cancelTimer: () => undefined,
      };
      p.cancelTimer = later(() => {
        pending.delete(id);
        rejectWaiters(entry, new PgwsError('timeout', `no answer to the unsubscribe within ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(id, p);
      send({ type: 'unsubscribe', id, sub: entry.sub });
    }
  }

  function settleWaiters(entry: Entry): void {
    for (const waiter of entry.waiters.splice(0)) waiter.resolve();
  }

  function rejectWaiters(entry: Entry, error: PgwsError): void {
    for (const waiter of entry.waiters.splice(0)) waiter.reject(error);
  }

  function endLocal(local: LocalSub, error: PgwsError): void {
    if (local.state === 'ended') return;
    const wasSubscribing = local.state === 'subscribing';
    local.state = 'ended';
    locals.delete(local);
    local.entry?.locals.delete(local);
    if (wasSubscribing) local.settleReady(error);
  }

  function subscribe(channel: string, subscribeOptions: SubscribeOptions): Subscription {
    if (typeof subscribeOptions?.onMessage !== 'function') throw new TypeError('pgws/client: subscribe needs an onMessage function');
    let resolveReady: () => void = () => undefined;
    let rejectReady: (error: PgwsError) => void = () => undefined;
    const ready = new Promise<void>((resolve, reject) => {
      resolveReady = resolve;
      rejectReady = reject;
    });
    // Nobody has to await `ready`: a refusal is then not an unhandled rejection.
    ready.catch(() => undefined);
    const api: Subscription = {
      channel,
      filter: subscribeOptions.filter,
      echo: subscribeOptions.echo ?? true,
      ready,
      get offset() {
        return local.offset;
      },
      get state() {
        return local.state;
      },
      unsubscribe: () => unsubscribeLocal(local),
    };
    const local: LocalSub = {
      api,
      channel,
      filter: subscribeOptions.filter,
      echo: subscribeOptions.echo ?? true,
      onMessage: subscribeOptions.onMessage,
      state: 'subscribing',
      entry: undefined,
      offset: undefined,
      delivered: undefined,
      settleReady: (error) => (error === undefined ? resolveReady() : rejectReady(error)),
    };
    if (state === 'closed') {
      local.state = 'ended';
      rejectReady(new PgwsError('closed', 'the client is closed'));
      return api;
    }
    locals.add(local);
    if (isOpen()) sendSubscribe([local], undefined);
    return api;
  }

  function unsubscribeLocal(local: LocalSub): Promise<void> {
    if (local.state === 'ended') return Promise.resolve();
    const entry = local.entry;
    endLocal(local, new PgwsError('closed', 'unsubscribed before the server answered'));
    if (entry === undefined || !entry.live || entry.locals.size > 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      entry.waiters.push({ resolve, reject });
      releaseIdle(entry.channel);
    });
  }

  openSocket();

  return {
    get state() {
      return state;
    },
    subscribe,
    async publish(channel, payload) {
      await request<'published'>({ type: 'publish', channel, payload }, 'published', 'publish');
    },
    async call(fn, args) {
      const answer = await request<'result'>({ type: 'call', fn, args }, 'result', 'call');
      return answer.data;
    },
    async ping() {
      const started = Date.now();
      await request<'pong'>({ type: 'ping' }, 'pong', 'ping');
      return Date.now() - started;
    },
    on(event, listener) {
      listeners[event].add(listener);
      return () => listeners[event].delete(listener);
    },
    off(event, listener) {
      listeners[event].delete(listener);
    },
    close() {
      if (closing !== undefined) return closing;
      const ws = socket;
      const closed = ws === undefined ? undefined : socketClosed.get(ws);
      finish(new PgwsError('closed', 'the client was closed'), false);
      closing =
        closed === undefined
          ? Promise.resolve()
          : new Promise<void>((resolve) => {
              // A socket that does not confirm its close (a dead connection) is not waited on forever.
              const cancel = later(resolve, timeoutMs);
              void closed.then(() => {
                cancel();
                resolve();
              });
            });
      return closing;
    },
  };
}
