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
  if (segments.length > 2) return { ok: false, reason: TOO_MANY_SEGMENTS };

  const decoded = decodeSegments(segments);
  if (decoded === undefined) return { ok: false, reason: MALFORMED_PATH };

  const [first, second] = decoded;
  // `/` has no segment at all: an empty token, which later fails as "Missing mode".
  if (first === undefined) return { ok: true, channel: undefined, token: '' };
  if (second === undefined) return { ok: true, channel: undefined, token: first };
  if (first === '') return { ok: false, reason: EMPTY_CHANNEL };
  return { ok: true, channel: first, token: second };
}

/** Three base64url parts joined by dots: what a JWS looks like. */
const LOOKS_LIKE_JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const MAX_LOGGED_CHANNEL = 100;

/**
 * The decoded channel of a `/<channel>/<jwt>` path, or undefined, for logs.
 * It never returns the token, even for a path that fails to parse, and even
 * when a client swapped the segments (`/<jwt>/chat`): a channel segment that
 * looks like a JWT is replaced by a placeholder.
 */
export function channelFromPath(rawPath: string): string | undefined {
  const parsed = parseSocketPath(rawPath);
  const channel = parsed.ok ? parsed.channel : undefined;
  if (channel === undefined) return undefined;
  if (LOOKS_LIKE_JWT.test(channel)) return '[redacted: looks like a token]';
  return channel.length > MAX_LOGGED_CHANNEL ? `${channel.slice(0, MAX_LOGGED_CHANNEL)}...` : channel;
}

/** Raw segments without the query string, the leading slash and one trailing slash. */
function splitRawSegments(rawPath: string): string[] {
  let path = stripQuery(rawPath);
  if (path.startsWith('/')) path = path.slice(1);
  if (path.endsWith('/')) path = path.slice(0, -1);
  return path === '' ? [] : path.split('/');
}

// The HTTP layer should already hand us a path without a query string;
// strip one anyway so `?x=1` can never end up inside the token.
function stripQuery(rawPath: string): string {
  const queryStart = rawPath.indexOf('?');
  return queryStart === -1 ? rawPath : rawPath.slice(0, queryStart);
}

/** Percent-decodes every segment; undefined if any escape is malformed. */
function decodeSegments(segments: readonly string[]): string[] | undefined {
  try {
    return segments.map((segment) => decodeURIComponent(segment));
  } catch {
    return undefined;
  }
}
