// Where a socket's token comes from (PROTOCOL.md §8, Token sources): the path, a
// `pgws.bearer.<jwt>` subprotocol, `Authorization: Bearer`, a named cookie, or
// `?access_token=`. Exactly one per request; the path holds a token only when it has two
// segments, or one segment and no other source carries a token (v1). Also reads the
// subprotocol the 101 selects and `?echo=`.
//
// Everything here runs on text copied from the request before any await. Reasons are fixed
// texts: never a token, so they are safe to send back and to log.
import { parseSocketPath } from './path.js';

export type TokenSource = 'path' | 'subprotocol' | 'header' | 'cookie' | 'query';

/** The subprotocols pgws speaks. */
export type ProtocolVersion = 'pgws.v1' | 'pgws.v2';

/** The parts of an upgrade request that carry a token or say how to speak (all '' when absent). */
export interface TokenRequest {
  readonly path: string;
  readonly query: string;
  readonly authorization: string;
  readonly cookie: string;
  readonly protocols: string;
}

export interface SocketRequest {
  readonly ok: true;
  readonly token: string;
  readonly source: TokenSource;
  /** The channel the path asks for; undefined asks for every channel the token lists. */
  readonly channel: string | undefined;
  /**
   * The subprotocol to select in the 101: pgws.v1 / pgws.v2 when offered; else the first
   * offered (what pgws always did, so clients that offer one of their own keep working).
   */
  readonly protocol: string | undefined;
  /** pgws.v2 was selected. */
  readonly v2: boolean;
  /** `?echo=false`: the socket does not receive what its own frames caused. */
  readonly echo: boolean;
}

export type SocketRequestResult = SocketRequest | { readonly ok: false; readonly status: 400; readonly reason: string };

export const MORE_THAN_ONE_TOKEN = 'More than one token';
export const BEARER_NEEDS_VERSION = 'A pgws.bearer.<token> subprotocol needs pgws.v1 or pgws.v2 offered beside it';
const BAD_ECHO = 'Bad request: echo must be true or false';
const BAD_QUERY = 'Bad request: malformed query string';
const BAD_PROTOCOLS = 'Bad request: malformed Sec-WebSocket-Protocol header';
/** RFC 9110 token characters: what a subprotocol name may be made of (a JWT's base64url and dots are). */
const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

const BEARER_PREFIX = 'pgws.bearer.';
const V1: ProtocolVersion = 'pgws.v1';
const V2: ProtocolVersion = 'pgws.v2';

/**
 * Reads the token and the socket's options from a request. `cookieName` is PGWS_JWT_COOKIE
 * (undefined: cookies are never read). Never throws.
 */
export function readSocketRequest(req: TokenRequest, cookieName: string | undefined): SocketRequestResult {
  // A postgres-websockets client sends none of these: the path alone decides, as before.
  if (req.query === '' && req.authorization === '' && req.protocols === '' && (cookieName === undefined || req.cookie === '')) {
    return fromPathOnly(req.path, undefined, false, true);
  }

  const offer = readProtocols(req.protocols);
  if (!offer.ok) return offer;
  const query = readQuery(req.query);
  if (!query.ok) return query;

  const found: { token: string; source: TokenSource }[] = [];
  for (const token of offer.bearers) found.push({ token, source: 'subprotocol' });
  const header = bearerFromAuthorization(req.authorization);
  if (header !== undefined) found.push({ token: header, source: 'header' });
  const cookie = cookieName === undefined ? undefined : readCookie(req.cookie, cookieName);
  if (cookie !== undefined) found.push({ token: cookie, source: 'cookie' });
  for (const token of query.tokens) found.push({ token, source: 'query' });
  if (found.length > 1) return refuse(MORE_THAN_ONE_TOKEN);

  const [elsewhere] = found;
  if (elsewhere === undefined) return fromPathOnly(req.path, offer.selected, offer.v2, query.echo);

  const path = parseSocketPath(req.path);
  if (!path.ok) return refuse(path.reason);
  // Two segments: the second is a token too.
  if (path.channel !== undefined) return refuse(MORE_THAN_ONE_TOKEN);
  // One segment names a channel; `/` asks for every channel the token lists.
  const channel = path.token === '' ? undefined : path.token;
  return { ok: true, token: elsewhere.token, source: elsewhere.source, channel, protocol: offer.selected, v2: offer.v2, echo: query.echo };
}

function fromPathOnly(rawPath: string, protocol: string | undefined, v2: boolean, echo: boolean): SocketRequestResult {
  const path = parseSocketPath(rawPath);
  if (!path.ok) return refuse(path.reason);
  return { ok: true, token: path.token, source: 'path', channel: path.channel, protocol, v2, echo };
}

// ---------------------------------------------------------------------------
// Sources

interface ProtocolOffer {
  readonly ok: true;
  readonly bearers: readonly string[];
  readonly selected: string | undefined;
  readonly v2: boolean;
}

/**
 * `Sec-WebSocket-Protocol` is a comma-separated list, in the client's order of preference:
 * the first pgws version offered is selected. A bearer entry is never selected (the 101
 * would echo the token).
 */
function readProtocols(header: string): ProtocolOffer | { readonly ok: false; readonly status: 400; readonly reason: string } {
  if (header === '') return { ok: true, bearers: [], selected: undefined, v2: false };
  const bearers: string[] = [];
  let firstOther: string | undefined;
  let version: ProtocolVersion | undefined;
  const seen = new Set<string>();
  for (const raw of header.split(',')) {
    const entry = raw.trim();
    // RFC 6455 §4.1: a list of distinct HTTP tokens. The ws engine refuses anything else only
    // after the upgrade was decided; refused here, both transports answer the same 400 first.
    if (!HTTP_TOKEN.test(entry) || seen.has(entry)) return refuse(BAD_PROTOCOLS);
    seen.add(entry);
    if (entry.startsWith(BEARER_PREFIX)) bearers.push(entry.slice(BEARER_PREFIX.length));
    else if (entry === V1 || entry === V2) version ??= entry;
    else firstOther ??= entry;
  }
  if (bearers.length > 0 && version === undefined) return refuse(BEARER_NEEDS_VERSION);
  return { ok: true, bearers, selected: version ?? firstOther, v2: version === V2 };
}

/** `Authorization: Bearer <token>` (scheme case-insensitive); other schemes are not a token source. */
function bearerFromAuthorization(header: string): string | undefined {
  const value = header.trim();
  const space = value.indexOf(' ');
  if (space === -1 || value.slice(0, space).toLowerCase() !== 'bearer') return undefined;
  return value.slice(space + 1).trim();
}

/** The first cookie of that name (the most specific path comes first, RFC 6265 §5.4). */
function readCookie(header: string, name: string): string | undefined {
  if (header === '') return undefined;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq === -1 || pair.slice(0, eq).trim() !== name) continue;
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    return value;
  }
  return undefined;
}

interface QueryParts {
  readonly ok: true;
  readonly tokens: readonly string[];
  readonly echo: boolean;
}

/** `access_token` (each one counts: two are more than one token) and `echo`. */
function readQuery(query: string): QueryParts | { readonly ok: false; readonly status: 400; readonly reason: string } {
  if (query === '') return { ok: true, tokens: [], echo: true };
  const tokens: string[] = [];
  let echo = true;
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    const name = decodeQueryPart(eq === -1 ? pair : pair.slice(0, eq));
    const value = decodeQueryPart(eq === -1 ? '' : pair.slice(eq + 1));
    if (name === undefined || value === undefined) return refuse(BAD_QUERY);
    if (name === 'access_token') tokens.push(value);
    else if (name === 'echo') {
      if (value !== 'true' && value !== 'false') return refuse(BAD_ECHO);
      echo = value === 'true';
    }
    // Other parameters are the client's business (cache busters, tracing): ignored.
  }
  return { ok: true, tokens, echo };
}

/** application/x-www-form-urlencoded: '+' is a space. Undefined for a malformed escape. */
function decodeQueryPart(part: string): string | undefined {
  if (!part.includes('%') && !part.includes('+')) return part;
  try {
    return decodeURIComponent(part.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

function refuse(reason: string): { readonly ok: false; readonly status: 400; readonly reason: string } {
  return { ok: false, status: 400, reason };
}
