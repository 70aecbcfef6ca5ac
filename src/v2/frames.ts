// The protocol v2 wire codec (PROTOCOL.md §9, with `since`/`offset` from §10 and `call` from
// §12): one text frame in -> a typed request or the reason it is refused; typed answers -> the
// frame text out. No sockets, no database, no authorisation: whether a channel is allowed, a
// filter well formed, a function known, is decided by the caller.
//
// Decisions the protocol leaves open, fixed here:
// - `id`: optional. When present it must be a string of at most 128 UTF-16 code units or a
//   finite number (`null`, booleans, objects, arrays, and numbers JSON.parse turns into
//   Infinity such as 1e400 are bad_request, answered with id null). An answer repeats the id
//   *value*: a number comes back as JavaScript writes it (`1.50` -> `1.5`, `1e2` -> `100`, an
//   integer beyond 2^53 rounded), so clients that need the exact text use string ids.
// - Success answers omit `id` when the request had none; error frames always carry `id`, null
//   when the request had none or it could not be read (not JSON, not an object, bad id).
// - Members that a request type does not define are ignored (forward compatibility), and so
//   are the members of other request types (`{"type":"ping","channel":1}` is a ping).
// - Optional members given as `null`: `filter: null` and `args: null` are JSON values and pass
//   through as null (the filter or call code decides); `since: null` means no `since` (a
//   client resubscribing after a `subscribed` answer whose `offset` was null sends just that);
//   `echo: null` is bad_request, as is `id: null`.
// - `since` is 1 to 19 decimal digits no greater than 9223372036854775807 (a PostgreSQL bigint,
//   the journal's id type), returned in canonical form (leading zeros dropped: "007" -> "7").
// - `channel` is a non-empty string of at most 1024 UTF-16 code units; `sub`, `token` and `fn`
//   are non-empty strings (lengths checked by whoever uses them).
// - `filterBytes` is the UTF-8 length of JSON.stringify(filter), the compact re-serialisation,
//   not of the text as sent. A filter too deeply nested to serialise is bad_request.
// - Error messages name the field and never repeat a value, except an unknown `type` made only
//   of at most 60 letters, digits, `_` and `-` (so never a JWT, which has dots). A token is never
//   repeated, and neither is the text of a frame that is not JSON.
// - parseRequest never throws.

import type { Json } from '../types.js';

export type RequestId = string | number;

export type V2Request =
  | {
      readonly type: 'subscribe';
      readonly id: RequestId | undefined;
      readonly channel: string;
      readonly filter: Json | undefined;
      readonly filterBytes: number | undefined;
      readonly since: string | undefined;
      readonly echo: boolean;
    }
  | { readonly type: 'unsubscribe'; readonly id: RequestId | undefined; readonly sub: string }
  | { readonly type: 'publish'; readonly id: RequestId | undefined; readonly channel: string; readonly payload: Json }
  | { readonly type: 'refresh'; readonly id: RequestId | undefined; readonly token: string }
  | { readonly type: 'call'; readonly id: RequestId | undefined; readonly fn: string; readonly args: Json | undefined }
  | { readonly type: 'ping'; readonly id: RequestId | undefined };

export type ErrorCode =
  | 'bad_request'
  | 'forbidden'
  | 'not_subscribed'
  | 'too_many_subscriptions'
  | 'payload_too_large'
  | 'db_error'
  | 'invalid_token'
  | 'history_unavailable'
  | 'not_found';

export type ParseResult =
  | { readonly ok: true; readonly request: V2Request }
  | { readonly ok: false; readonly notJson: boolean; readonly id: RequestId | null; readonly message: string };

/** Longest string id, in UTF-16 code units. */
export const MAX_ID_LENGTH = 128;
/** Longest channel name, in UTF-16 code units. */
export const MAX_CHANNEL_LENGTH = 1024;
/** Largest PostgreSQL bigint: no journal offset is above it. */
const MAX_BIGINT = 9223372036854775807n;

const TYPES = ['subscribe', 'unsubscribe', 'publish', 'refresh', 'call', 'ping'] as const;
const TYPE_LIST = TYPES.join(', ');

type JsonObject = { readonly [key: string]: Json };

/** A refusal, as parseRequest returns it. */
function refuse(id: RequestId | null, message: string, notJson = false): ParseResult {
  return { ok: false, notJson, id, message };
}

/**
 * An unknown type as an error message may show it: a word of at most 60 letters, digits, `_`
 * or `-` (a typo such as "subcribe"). Anything else, which may be a token (a JWT always has
 * dots) or long input, is not shown.
 */
function shownType(type: string): string {
  return /^[A-Za-z0-9_-]{1,60}$/.test(type) ? `unknown type "${type}"` : 'unknown type (not shown)';
}

/** A member of the request, own properties only (never one inherited from Object.prototype). */
function member(object: JsonObject, key: string): Json | undefined {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

function isNonEmptyString(value: Json | undefined): value is string {
  return typeof value === 'string' && value.length > 0;
}

/** The `channel` of a subscribe or a publish (one rule for both), or what is wrong with it. */
function readChannel(value: Json | undefined, verb: 'subscribe' | 'publish'): { readonly channel: string } | { readonly problem: string } {
  if (!isNonEmptyString(value)) return { problem: `${verb} needs "channel": a non-empty string` };
  if (value.length > MAX_CHANNEL_LENGTH) return { problem: `${verb} "channel" must be at most ${MAX_CHANNEL_LENGTH} characters` };
  return { channel: value };
}

/** The canonical decimal text of a journal offset, or undefined when `value` is not one. */
function offsetText(value: string): string | undefined {
  if (!/^[0-9]{1,19}$/.test(value)) return undefined;
  const n = BigInt(value);
  return n <= MAX_BIGINT ? n.toString() : undefined;
}

/** Reads one frame of a v2 socket. Never throws. */
export function parseRequest(text: string): ParseResult {
  let parsed: Json;
  try {
    parsed = JSON.parse(text) as Json;
  } catch {
    return refuse(null, 'not JSON: a request is one JSON object', true);
  }
  try {
    return parseObject(parsed);
  } catch {
    // Nothing above is expected to throw; this keeps the promise if something does.
    return refuse(null, 'unreadable request');
  }
}

function parseObject(parsed: Json): ParseResult {
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return refuse(null, 'a request must be a JSON object');
  }
  const object = parsed as JsonObject;

  let id: RequestId | undefined;
  if (Object.hasOwn(object, 'id')) {
    const raw = object.id;
    if (typeof raw === 'string') {
      if (raw.length > MAX_ID_LENGTH) return refuse(null, `"id" must be at most ${MAX_ID_LENGTH} characters`);
      id = raw;
    } else if (typeof raw === 'number' && Number.isFinite(raw)) {
      id = raw;
    } else {
      return refuse(null, '"id" must be a string or a finite number');
    }
  }
  const answerId = id ?? null;

  const type = member(object, 'type');
  if (typeof type !== 'string') return refuse(answerId, `a request needs "type": one of ${TYPE_LIST}`);

  switch (type) {
    case 'subscribe': {
      const read = readChannel(member(object, 'channel'), 'subscribe');
      if ('problem' in read) return refuse(answerId, read.problem);
      const { channel } = read;
      const filter = member(object, 'filter');
      let filterBytes: number | undefined;
      if (filter !== undefined) {
        let filterText: string;
        try {
          filterText = JSON.stringify(filter);
        } catch {
          return refuse(answerId, 'subscribe "filter" is nested too deeply');
        }
        filterBytes = Buffer.byteLength(filterText, 'utf8');
      }
      const rawSince = member(object, 'since');
      let since: string | undefined;
      if (rawSince !== undefined && rawSince !== null) {
        since = typeof rawSince === 'string' ? offsetText(rawSince) : undefined;
        if (since === undefined) {
          return refuse(answerId, 'subscribe "since" must be an offset: a string of decimal digits (a bigint)');
        }
      }
      const rawEcho = member(object, 'echo');
      if (rawEcho !== undefined && typeof rawEcho !== 'boolean') {
        return refuse(answerId, 'subscribe "echo" must be true or false');
      }
      const echo = rawEcho ?? true;
      return { ok: true, request: { type, id, channel, filter, filterBytes, since, echo } };
    }
    case 'unsubscribe': {
      const sub = member(object, 'sub');
      if (!isNonEmptyString(sub)) return refuse(answerId, 'unsubscribe needs "sub": a non-empty string');
      return { ok: true, request: { type, id, sub } };
    }
    case 'publish': {
      const read = readChannel(member(object, 'channel'), 'publish');
      if ('problem' in read) return refuse(answerId, read.problem);
      const { channel } = read;
      const payload = member(object, 'payload');
      if (payload === undefined) return refuse(answerId, 'publish needs "payload": any JSON value');
      return { ok: true, request: { type, id, channel, payload } };
    }
    case 'refresh': {
      const token = member(object, 'token');
      if (!isNonEmptyString(token)) return refuse(answerId, 'refresh needs "token": a non-empty string');
      return { ok: true, request: { type, id, token } };
    }
    case 'call': {
      const fn = member(object, 'fn');
      if (!isNonEmptyString(fn)) return refuse(answerId, 'call needs "fn": a non-empty string');
      const args = member(object, 'args');
      return { ok: true, request: { type, id, fn, args } };
    }
    case 'ping':
      return { ok: true, request: { type, id } };
    default:
      return refuse(answerId, `${shownType(type)}: expected one of ${TYPE_LIST}`);
  }
}

// ---- Encoders. Compact JSON, members in the order of the PROTOCOL.md §9 tables; every string
// goes through JSON.stringify. `id` is left out of a success answer when the request had none.

/** `,"id":<id>` or nothing. */
function idMember(id: RequestId | undefined): string {
  return id === undefined ? '' : `,"id":${JSON.stringify(id)}`;
}

export function subscribedFrame(
  id: RequestId | undefined,
  channel: string,
  sub: string,
  offset: string | null,
  recovered: boolean | undefined,
): string {
  return (
    `{"type":"subscribed"${idMember(id)},"channel":${JSON.stringify(channel)},"sub":${JSON.stringify(sub)}` +
    `,"offset":${JSON.stringify(offset)}${recovered === undefined ? '' : `,"recovered":${recovered}`}}`
  );
}

export function unsubscribedFrame(id: RequestId | undefined, sub: string, reason?: string): string {
  return `{"type":"unsubscribed"${idMember(id)},"sub":${JSON.stringify(sub)}${
    reason === undefined ? '' : `,"reason":${JSON.stringify(reason)}`
  }}`;
}

export function publishedFrame(id: RequestId | undefined): string {
  return `{"type":"published"${idMember(id)}}`;
}

/** `exp` as the new token states it (seconds since the epoch), null when it has none. */
export function refreshedFrame(id: RequestId | undefined, exp: number | null): string {
  return `{"type":"refreshed"${idMember(id)},"exp":${JSON.stringify(exp)}}`;
}

export function resultFrame(id: RequestId | undefined, data: Json): string {
  return `{"type":"result"${idMember(id)},"data":${JSON.stringify(data)}}`;
}

export function pongFrame(id: RequestId | undefined): string {
  return `{"type":"pong"${idMember(id)}}`;
}

/** An error always carries `id`: null when the request had none or it was unknown. */
export function errorFrame(id: RequestId | null | undefined, code: ErrorCode, message: string): string {
  return `{"type":"error","id":${JSON.stringify(id ?? null)},"code":"${code}","message":${JSON.stringify(message)}}`;
}

/**
 * The `message` frame for one subscription: `data` is the notification text spliced in
 * verbatim when `isJson`, else as a JSON string; `offset` present only when given. Built by
 * concatenation, not JSON.stringify of the data (it is already JSON).
 */
export function messageFrame(sub: string, channel: string, notificationText: string, isJson: boolean, offset?: string): string {
  return `{"type":"message","sub":${JSON.stringify(sub)},"channel":${JSON.stringify(channel)},"data":${
    isJson ? notificationText : JSON.stringify(notificationText)
  }${offset === undefined ? '' : `,"offset":${JSON.stringify(offset)}`}}`;
}
