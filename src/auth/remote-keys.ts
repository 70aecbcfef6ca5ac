// PGWS_JWKS_URL (PROTOCOL.md §8, Keys from a URL): the JWK Set an identity provider publishes,
// fetched at start, kept fresh, and combined with PGWS_JWT_SECRET's keys when both are set.
//
// Which key verifies a token is decided by its `kid` alone:
//  - a string `kid` naming a member of the URL's set: only the set (whose resolver checks the
//    `alg` per member), never the secret. A token claiming the provider's key is the
//    provider's to vouch for, even when no member of that kid allows its `alg`;
//  - any other token (no `kid`, or one the set lacks even after a refetch): only the secret,
//    and only with an `alg` the secret allows. An RS256 token without a `kid` therefore never
//    reaches the set, and an HS256 token never reaches an RSA member (no algorithm confusion).
// The fast path follows the same rule, except that a string `kid` the set lacks always goes to
// jose: only jose's path refetches, and the refetch may bring that kid into the set.
//
// The source's `algorithms` (what jose lets through to the resolver) also lists every
// asymmetric algorithm, whether the set holds such a key yet or not: otherwise a provider
// rotating to a key of another type (RS256 to ES256) would see the first token of the new key
// refused on its `alg` before the resolver could notice the unknown kid and refetch. The
// resolver, not that list, is what binds an `alg` to a key.
//
// The set is refetched every refreshMs and when a token names an unknown `kid` (the provider
// rotated its keys), at most once per unknownKidCooldownMs so that tokens with made-up kids
// cannot make pgws hammer the provider. One fetch at a time: every caller waiting for a
// refetch shares the one in flight. A failed refetch keeps the cached keys.
//
// The URL's userinfo and query may hold credentials (a basic-auth password, an API key), so
// every message and log line shows the URL with them replaced by "[redacted]", and the
// userinfo is sent as an Authorization header (fetch refuses a URL with credentials, and its
// error quotes the whole URL).

import { isUtf8 } from 'node:buffer';
import { errors } from 'jose';
import type { CompactJWSHeaderParameters, FlattenedJWSInput } from 'jose';
import type { Logger } from '../log.js';
import { backoffMs, delay, timer } from '../timer.js';
import { isCanonicalBase64url, type FastPath } from './fast-path.js';
import { JSON_ERROR_PREFIX, loadVerificationKeys, PUBLIC_KEY_ALGORITHMS, type KeySource } from './keys.js';

export interface RemoteKeysOptions {
  /** http:// or https:// */
  readonly url: string;
  /** Start-up attempts (PGWS_RETRIES) before start fails; below 1 (or not a number) counts as 1. */
  readonly attempts: number;
  readonly log: Logger;
  /** Periodic refetch, default 600_000 (10 min); 0 turns it off. */
  readonly refreshMs?: number;
  /** Refetch on an unknown kid at most once per this, default 30_000. */
  readonly unknownKidCooldownMs?: number;
  /** Default 5_000. */
  readonly fetchTimeoutMs?: number;
  /** Start-up backoff base, default 1000. */
  readonly retryBaseMs?: number;
}

export interface RemoteKeys {
  /** The key source in use now: the URL's set (picked by kid) combined with the secret's keys. */
  current(): KeySource;
  /** Stops the periodic refetch timer (unref'd anyway). Idempotent. */
  stop(): void;
}

const DEFAULT_REFRESH_MS = 600_000;
const DEFAULT_UNKNOWN_KID_COOLDOWN_MS = 30_000;
const DEFAULT_FETCH_TIMEOUT_MS = 5_000;
const DEFAULT_RETRY_BASE_MS = 1_000;
const STARTUP_BACKOFF_CAP_MS = 30_000;
/** A provider's set is a few kB; anything this large is not one, and is not held in memory. */
const MAX_SET_BYTES = 1024 * 1024;
/** Distinct token header texts whose route is remembered (see routedFastPath). */
const ROUTES = 16;
const REDACTED = '[redacted]';

/** A fetched set, ready to verify with. */
interface FetchedSet {
  /** The set's own key source (keys.ts): a resolver and fast path that match kid and alg per member. */
  readonly source: KeySource;
  /** Every string `kid` the set's members carry. */
  readonly kids: ReadonlySet<string>;
  readonly members: number;
  /** The members in a canonical form: equal text means the same keys. */
  readonly canonical: string;
}

/**
 * Fetches the set (retrying `attempts` times with backoff), then keeps it fresh. Rejects with
 * an Error naming the URL (userinfo and query redacted) and the last failure after the attempts.
 * `onChange` is called with the new combined source whenever a refetch brings a different set
 * (not for the first one: use current()).
 */
export async function startRemoteKeys(opts: RemoteKeysOptions, secretKeys: KeySource | undefined, onChange: (keys: KeySource) => void): Promise<RemoteKeys> {
  const endpoint = parseEndpoint(opts.url);
  const refreshMs = opts.refreshMs ?? DEFAULT_REFRESH_MS;
  const cooldownMs = opts.unknownKidCooldownMs ?? DEFAULT_UNKNOWN_KID_COOLDOWN_MS;
  const timeoutMs = opts.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
  const retryBaseMs = opts.retryBaseMs ?? DEFAULT_RETRY_BASE_MS;
  const { log } = opts;
  const stopping = new AbortController();

  const fetchOnce = (): Promise<FetchedSet> => fetchSet(endpoint, timeoutMs, stopping.signal);
  const describe = (error: unknown): string => endpoint.scrub(describeFetchError(error, timeoutMs));

  let inFlight: Promise<void> | undefined;
  let lastUnknownKidFetch = Number.NEGATIVE_INFINITY;

  let latest = await fetchAtStart();
  let combined = combine(latest);
  announce(latest);

  const periodic = timer(() => {
    void refresh().then(() => {
      if (!stopping.signal.aborted) periodic.start();
    });
  }, refreshMs);
  // 0 turns the periodic refetch off (unknown kids still refetch); a loop without pause never.
  if (refreshMs > 0) periodic.start();

  return {
    current: () => combined,
    stop() {
      periodic.cancel();
      // Also ends a fetch in flight: nothing waits long on a stopped source.
      stopping.abort();
    },
  };

  async function fetchAtStart(): Promise<FetchedSet> {
    const total = Number.isFinite(opts.attempts) ? Math.max(1, Math.floor(opts.attempts)) : 1;
    for (let attempt = 1; ; attempt++) {
      try {
        return await fetchOnce();
      } catch (error) {
        const reason = describe(error);
        if (attempt >= total) {
          throw new Error(`cannot fetch the JWK Set at ${endpoint.shown} after ${attempt} attempt(s): ${reason}`);
        }
        const wait = backoffMs(attempt - 1, retryBaseMs, STARTUP_BACKOFF_CAP_MS, false);
        log.warn({ url: endpoint.shown, attempt, of: total, retryInMs: wait, err: reason }, 'JWK Set not reachable yet');
        await delay(wait);
      }
    }
  }

  /** One fetch at a time; never rejects (a failure is logged and the cached set stays). */
  function refresh(): Promise<void> {
    inFlight ??= (async () => {
      try {
        let next: FetchedSet;
        try {
          next = await fetchOnce();
        } catch (error) {
          if (!stopping.signal.aborted) {
            log.warn({ url: endpoint.shown, err: describe(error) }, 'JWK Set refetch failed; keeping the cached keys');
          }
          return;
        }
        if (stopping.signal.aborted || next.canonical === latest.canonical) return;
        latest = next;
        combined = combine(next);
        announce(next);
        onChange(combined);
      } finally {
        inFlight = undefined;
      }
    })();
    return inFlight;
  }

  /** A token named a kid the set lacks: refetch, unless one ran too recently (then only join one in flight). */
  function refetchForUnknownKid(): Promise<void> {
    if (inFlight !== undefined) return inFlight;
    const now = Date.now();
    if (stopping.signal.aborted || now - lastUnknownKidFetch < cooldownMs) return Promise.resolve();
    lastUnknownKidFetch = now;
    return refresh();
  }

  function announce(set: FetchedSet): void {
    log.info({ url: endpoint.shown, keys: set.members, kids: [...set.kids] }, 'JWK Set in use');
  }

  /** The source handed out: the set's keys picked by kid, the secret's for every other token. */
  function combine(set: FetchedSet): KeySource {
    const getKey = async (header: CompactJWSHeaderParameters, token: FlattenedJWSInput) => {
      const { kid } = header;
      if (typeof kid === 'string') {
        if (!latest.kids.has(kid)) await refetchForUnknownKid();
        // The newest set, not `set`: a rotation that just happened serves the token that caused it.
        const now = latest;
        if (now.kids.has(kid)) {
          // `algorithms` let every asymmetric alg through; one no member allows is refused as
          // jose refuses an alg outside its list, not as an unknown kid.
          if (header.alg === undefined || !now.source.algorithms.includes(header.alg)) throw algNotAllowed();
          return now.source.getKey(header, token);
        }
      }
      if (secretKeys === undefined) throw new errors.JWKSNoMatchingKey();
      // jose was given the union of both lists; the secret only ever gets its own algorithms.
      if (header.alg === undefined || !secretKeys.algorithms.includes(header.alg)) throw algNotAllowed();
      return secretKeys.getKey(header, token);
    };
    const fastPath = routedFastPath(set, secretKeys);
    return {
      kind: 'jwks-url',
      algorithms: [...new Set([...set.source.algorithms, ...(secretKeys?.algorithms ?? []), ...PUBLIC_KEY_ALGORITHMS])],
      getKey,
      ...(fastPath === undefined ? {} : { fastPath }),
    };
  }
}

/** jose's own error for an `alg` outside the list, so verify.ts words the refusal the same way. */
function algNotAllowed(): Error {
  return new errors.JOSEAlgNotAllowed('"alg" (Algorithm) Header Parameter value not allowed');
}

/**
 * The fast path of the source a token's kid picks, by the rule of the file's header: one fast
 * path or the other, never both, so a token is never accepted by a key jose would not be given.
 * A string kid the set lacks gets none: jose's path refetches first, and the refetched set may
 * hold that kid, when the secret must not verify the token.
 * The route is kept per header text (an issuer signs every token with the same header, as in
 * fast-path.ts), so a header is parsed here once, and the chosen fast path keeps its own verdict.
 */
function routedFastPath(set: FetchedSet, secretKeys: KeySource | undefined): FastPath | undefined {
  const setPath = set.source.fastPath;
  const secretPath = secretKeys?.fastPath;
  if (setPath === undefined && secretPath === undefined) return undefined;
  /** null: the picked source has no fast path, jose decides. */
  const routes = new Map<string, FastPath | null>();
  return (token, nowSeconds) => {
    const dot = token.indexOf('.');
    if (dot === -1) return undefined;
    const headerText = token.slice(0, dot);
    let route = routes.get(headerText);
    if (route === undefined) {
      const header = parseHeader(headerText);
      // Not remembered: an odd header costs a parse per token, as in fast-path.ts, and jose decides.
      if (header === undefined) return undefined;
      const { kid } = header;
      const picked = typeof kid !== 'string' ? secretPath : set.kids.has(kid) ? setPath : undefined;
      route = picked ?? null;
      if (routes.size >= ROUTES) {
        const oldest = routes.keys().next();
        if (!oldest.done) routes.delete(oldest.value);
      }
      routes.set(headerText, route);
    }
    return route === null ? undefined : route(token, nowSeconds);
  };
}

/** The header as jose would read it, or undefined for anything the fast paths refuse anyway. */
function parseHeader(segment: string): Record<string, unknown> | undefined {
  if (!isCanonicalBase64url(segment)) return undefined;
  const bytes = Buffer.from(segment, 'base64url');
  if (!isUtf8(bytes)) return undefined;
  try {
    const parsed: unknown = JSON.parse(bytes.toString('utf8'));
    return isJsonObject(parsed) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------
// Fetching

interface Endpoint {
  /** What fetch is given: the URL without userinfo or fragment. */
  readonly href: string;
  /** Basic credentials from the URL's userinfo, if any. */
  readonly authorization: string | undefined;
  /** The URL as it may be shown: userinfo and query replaced by [redacted]. */
  readonly shown: string;
  /** Removes every credential of the URL from a text (a library's message, say). */
  readonly scrub: (text: string) => string;
}

function parseEndpoint(raw: string): Endpoint {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    // Not the parser's message: it quotes the input, credentials and all.
    throw new Error('PGWS_JWKS_URL is not a valid URL');
  }
  const userinfo = url.username !== '' || url.password !== '';
  const shown = `${url.protocol}//${userinfo ? `${REDACTED}@` : ''}${url.host}${url.pathname}${url.search !== '' ? `?${REDACTED}` : ''}`;
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new Error(`PGWS_JWKS_URL must be an https:// or http:// URL, not ${shown}`);
  }
  const secrets = [raw, url.href, url.search, url.password, decodeUserinfo(url.password)].filter((text) => text.length > 1);
  const authorization = userinfo ? `Basic ${Buffer.from(`${decodeUserinfo(url.username)}:${decodeUserinfo(url.password)}`).toString('base64')}` : undefined;
  url.username = '';
  url.password = '';
  url.hash = '';
  secrets.push(url.href);
  // Longest first, so that a secret inside another (the query inside the URL) leaves no piece behind.
  secrets.sort((a, b) => b.length - a.length);
  const scrub = (text: string): string => secrets.reduce((scrubbed, secret) => scrubbed.split(secret).join(REDACTED), text);
  return { href: url.href, authorization, shown, scrub };
}

function decodeUserinfo(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

async function fetchSet(endpoint: Endpoint, timeoutMs: number, stopSignal: AbortSignal): Promise<FetchedSet> {
  const headers: Record<string, string> = { accept: 'application/jwk-set+json, application/json' };
  if (endpoint.authorization !== undefined) headers.authorization = endpoint.authorization;
  // The timeout covers the body too: fetch's signal aborts reading it as well.
  const signal = AbortSignal.any([stopSignal, AbortSignal.timeout(timeoutMs)]);
  const response = await fetch(endpoint.href, { headers, signal });
  if (!response.ok) {
    await response.body?.cancel().catch(() => undefined);
    throw new Error(`HTTP ${response.status}${response.statusText === '' ? '' : ` ${response.statusText}`}`);
  }
  const length = Number(response.headers.get('content-length') ?? 0);
  if (length > MAX_SET_BYTES) {
    await response.body?.cancel().catch(() => undefined);
    throw new Error(`the answer is larger than ${MAX_SET_BYTES} bytes`);
  }
  const text = await response.text();
  if (Buffer.byteLength(text) > MAX_SET_BYTES) throw new Error(`the answer is larger than ${MAX_SET_BYTES} bytes`);
  return parseSet(text);
}

async function parseSet(text: string): Promise<FetchedSet> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error('the answer is not JSON');
  }
  if (!isJsonObject(parsed) || !Array.isArray(parsed.keys)) {
    throw new Error('the answer is not a JWK Set (a JSON object with a "keys" array)');
  }
  const members: readonly unknown[] = parsed.keys;
  let source: KeySource;
  try {
    // Text that parses to an object is one loadVerificationKeys reads as JSON keys, never as an HMAC secret.
    source = await loadVerificationKeys(text, false);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`the JWK Set is not usable: ${message.startsWith(`${JSON_ERROR_PREFIX}: `) ? message.slice(JSON_ERROR_PREFIX.length + 2) : message}`);
  }
  // Guard: the checks above make anything else impossible, and anything else must not be used.
  if (source.kind !== 'jwks') throw new Error('the answer is not a JWK Set');
  const kids = new Set<string>();
  for (const member of members) {
    if (isJsonObject(member) && typeof member.kid === 'string') kids.add(member.kid);
  }
  const canonical = members.map(canonicalJson).sort().join(',');
  return { source, kids, members: members.length, canonical };
}

/** JSON with object members sorted: the same key in another member order or layout is the same text. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isJsonObject(value)) {
    const entries = Object.keys(value)
      .sort()
      .map((name) => `${JSON.stringify(name)}:${canonicalJson(value[name])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** Why a fetch failed, in a few words. The caller scrubs the URL's credentials from it. */
function describeFetchError(error: unknown, timeoutMs: number): string {
  if (!(error instanceof Error)) return String(error);
  if (error.name === 'TimeoutError') return `no answer within ${timeoutMs} ms`;
  if (error.name === 'AbortError') return 'stopped';
  // fetch says only "fetch failed"; the reason (refused, DNS, TLS) is in its cause.
  const cause: unknown = error.cause;
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    return `${error.message}: ${cause.message}${code !== undefined && !cause.message.includes(code) ? ` (${code})` : ''}`;
  }
  return error.message;
}

function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
