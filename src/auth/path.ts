// Splits a WebSocket request path into channel and token (PROTOCOL.md §1):
//   /<channel>/<jwt>  or  /<jwt>
// Segments are percent-decoded one by one, after splitting, so an encoded
// slash (%2F) stays inside its segment instead of creating a new one.

export type ParsedPath =
  | { ok: true; channel: string | undefined; token: string }
  | { ok: false; reason: string };

const TOO_MANY_SEGMENTS = 'Bad request: expected /<channel>/<jwt> or /<jwt>';
const MALFORMED_PATH = 'Malformed path';
const EMPTY_CHANNEL = 'Bad request: empty channel';

/** Parses a raw (still percent-encoded) request path. Never throws. */
export function parseSocketPath(rawPath: string): ParsedPath {
  const segments = splitRawSegments(rawPath);
  if (segments === undefined) return { ok: false, reason: TOO_MANY_SEGMENTS };

  const first = decodeSegment(segments.first);
  if (first === undefined) return { ok: false, reason: MALFORMED_PATH };
  // `/` has a single empty segment: an empty token, which later fails as "Missing mode".
  if (segments.second === undefined) return { ok: true, channel: undefined, token: first };
  const second = decodeSegment(segments.second);
  if (second === undefined) return { ok: false, reason: MALFORMED_PATH };
  if (first === '') return { ok: false, reason: EMPTY_CHANNEL };
  return { ok: true, channel: first, token: second };
}

/** Three base64url parts joined by dots: what a JWS looks like. */
const LOOKS_LIKE_JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const MAX_LOGGED_CHANNEL = 100;

/**
 * A decoded channel as it may be logged: one that looks like a JWT (a client that put its
 * token where a channel goes) is replaced by a placeholder, a long one is cut.
 */
export function loggableChannel(channel: string | undefined): string | undefined {
  if (channel === undefined) return undefined;
  if (LOOKS_LIKE_JWT.test(channel)) return '[redacted: looks like a token]';
  return channel.length > MAX_LOGGED_CHANNEL ? `${channel.slice(0, MAX_LOGGED_CHANNEL)}...` : channel;
}

/**
 * The one or two raw segments of a path without the query string, the leading slash and one
 * trailing slash (none at all reads as one empty segment); undefined for more than two.
 * Found with indexOf rather than split: split goes through V8's runtime for every new path,
 * and this runs once per handshake.
 */
function splitRawSegments(rawPath: string): { first: string; second: string | undefined } | undefined {
  const path = stripQuery(rawPath);
  const start = path.startsWith('/') ? 1 : 0;
  const end = path.length > start && path.endsWith('/') ? path.length - 1 : path.length;
  const slash = path.indexOf('/', start);
  if (slash === -1 || slash >= end) return { first: path.slice(start, end), second: undefined };
  const another = path.indexOf('/', slash + 1);
  if (another !== -1 && another < end) return undefined;
  return { first: path.slice(start, slash), second: path.slice(slash + 1, end) };
}

// The HTTP layer should already hand us a path without a query string;
// strip one anyway so `?x=1` can never end up inside the token.
function stripQuery(rawPath: string): string {
  const queryStart = rawPath.indexOf('?');
  return queryStart === -1 ? rawPath : rawPath.slice(0, queryStart);
}

/**
 * Percent-decodes a segment; undefined if an escape is malformed. A token never needs escapes
 * (base64url and dots), so the decoder is skipped for text without a '%', where it could
 * change nothing: one pass over the token saved per handshake.
 */
function decodeSegment(segment: string): string | undefined {
  if (!segment.includes('%')) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}
