// The socket handshake check (PROTOCOL.md §1): path -> token -> claims -> channels.
// Runs before the upgrade is accepted; a failure carries the HTTP status and a short
// plain-text reason. Reasons are fixed texts (plus a claim name at most): they never
// contain the token, so they are safe to send back and to log.

import { errors, jwtVerify } from 'jose';
import type { JWTPayload, JWTVerifyOptions } from 'jose';
import type { Claims, Grant, Json, Mode } from '../types.js';
import { loadVerificationKeys, MultipleMatchingKeys } from './keys.js';
import type { KeyKind, KeySource } from './keys.js';
import { createLogger, type Logger } from '../log.js';
import { parseSocketPath } from './path.js';
import { startRemoteKeys } from './remote-keys.js';
import { createTokenCache } from './token-cache.js';

export type AuthResult = { ok: true; grant: Grant } | { ok: false; status: 400 | 401 | 403; reason: string };

/**
 * Asks for a pgws.v2 grant: never refused for its channels, which are checked at each
 * subscribe and publish instead (PROTOCOL.md §9). A symbol, since any string is a channel.
 */
export const EACH_REQUEST: unique symbol = Symbol('channels checked at each pgws.v2 request');

/** A channel (v1 `/<channel>/...`), every channel the token lists (v1 `/<jwt>`), or EACH_REQUEST (v2). */
export type ChannelRequest = string | undefined | typeof EACH_REQUEST;

export interface Authenticator extends TokenCheck {
  /** What the keys turned out to be (HMAC secret, JWK, JWK Set, or a set from PGWS_JWKS_URL); safe to log. */
  readonly keyKind: KeyKind;
  /** Stops refetching keys from PGWS_JWKS_URL (nothing to stop otherwise). */
  stop(): void;
}

/** The per-socket check, for a token wherever it came from, or for a v1 path holding it. */
export interface TokenCheck {
  /**
   * Checks a token and the channel asked for (undefined: every channel the token lists;
   * EACH_REQUEST: a v2 socket, whose grant lists the token's channels and is never refused for them).
   * Never throws or rejects. `nowSeconds` overrides the clock (tests). A verdict known
   * without I/O (a token accepted by the fast path or found in the cache of verified
   * tokens) comes back as a plain value, so the transport can answer within the upgrade
   * callback; one that needs jose comes back as a Promise.
   */
  authorizeToken(channel: ChannelRequest, token: string, nowSeconds?: number): AuthResult | Promise<AuthResult>;
  /** The same for a raw v1 path, `/<channel>/<jwt>` or `/<jwt>` (a bad path is a 400). */
  authorize(rawPath: string, nowSeconds?: number): AuthResult | Promise<AuthResult>;
}

/** How claims become a grant (PROTOCOL.md §8, Claims from identity providers; audience, issuer). */
export interface ClaimRules {
  /** Dotted path of the mode claim (PGWS_MODE_CLAIM); default `mode`. */
  readonly modeClaim?: string;
  /** Dotted path of the allowed-channels array (PGWS_CHANNELS_CLAIM); default `channels`. */
  readonly channelsClaim?: string;
  /** Mode of tokens without the mode claim (PGWS_DEFAULT_MODE); undefined refuses them. */
  readonly defaultMode?: Mode | undefined;
  /** `aud` must contain one of these (PGWS_JWT_AUDIENCE); undefined: not checked. */
  readonly audience?: readonly string[] | undefined;
  /** `iss` must equal one of these (PGWS_JWT_ISSUER); undefined: not checked. */
  readonly issuer?: readonly string[] | undefined;
}

export interface AuthenticatorOptions extends ClaimRules {
  /** PGWS_JWT_SECRET; at least one of it and `jwksUrl` is given. */
  readonly jwtSecret: string | undefined;
  readonly jwtSecretIsBase64: boolean;
  /** PGWS_JWKS_URL, fetched before the authenticator is returned. */
  readonly jwksUrl?: string | undefined;
  /** Start-up attempts for the JWK Set URL (PGWS_RETRIES). */
  readonly retries?: number;
  /** Where the JWK Set's fetches and refetch failures are logged. */
  readonly log?: Logger;
}

type Rejection = Extract<AuthResult, { ok: false }>;
type Verified<T> = { ok: true; value: T } | Rejection;
type JsonObject = { [claim: string]: Json };

const MODES: readonly Mode[] = ['r', 'w', 'rw'];

/**
 * Loads the keys (throws on an unusable secret, or a JWK Set URL still unreachable after
 * the retries) and returns the per-socket check.
 */
export async function createAuthenticator(opts: AuthenticatorOptions): Promise<Authenticator> {
  const verifier = createVerifier(opts);
  const secretKeys = opts.jwtSecret === undefined ? undefined : await loadVerificationKeys(opts.jwtSecret, opts.jwtSecretIsBase64);
  let stop = (): void => undefined;
  let keys: KeySource;
  if (opts.jwksUrl !== undefined) {
    // Every later change of the set goes through useKeys, which forgets tokens verified before.
    const remote = await startRemoteKeys(
      { url: opts.jwksUrl, attempts: opts.retries ?? 1, log: opts.log ?? createLogger('silent') },
      secretKeys,
      (next) => verifier.useKeys(next),
    );
    keys = remote.current();
    stop = () => remote.stop();
  } else if (secretKeys !== undefined) {
    keys = secretKeys;
  } else {
    throw new Error('no keys: give PGWS_JWT_SECRET, PGWS_JWKS_URL or both');
  }
  verifier.useKeys(keys);
  return {
    keyKind: keys.kind,
    stop,
    authorizeToken: (channel, token, nowSeconds) => verifier.authorizeToken(channel, token, nowSeconds),
    authorize: (rawPath, nowSeconds) => verifier.authorize(rawPath, nowSeconds),
  };
}

export interface Verifier extends TokenCheck {
  /** Puts keys in use (at start, and whenever they are reloaded): forgets every token verified before. */
  useKeys(keys: KeySource): void;
}

/**
 * The keys in use and the cache of tokens verified with them, kept together: useKeys() is
 * the one way to (re)load keys, and it clears the cache, so no token is ever accepted on
 * the word of keys that are gone. (Keys are loaded once today; keys fetched from a URL will
 * call useKeys on every refetch that changes them.) Exported for that and for tests.
 */
export function createVerifier(rules: ClaimRules = {}): Verifier {
  const grantFor = createGrantRule(rules);
  let keys: KeySource | undefined;
  const cache = createTokenCache<JsonObject>();
  /** Bumped by useKeys: a verification that began under older keys is not cached. */
  let generation = 0;
  /**
   * jose verifications in flight, by token text: the same token arriving again meanwhile (a
   * reconnect storm where many clients share one token) waits for the same verdict instead of
   * starting another. Only while in flight; a failure is never kept afterwards.
   */
  const inFlight = new Map<string, Promise<Verified<JsonObject>>>();

  function verifyWithJose(current: KeySource, token: string, nowSeconds: number | undefined): Promise<Verified<JsonObject>> {
    // A test's own clock gets its own verification, never another request's verdict.
    if (nowSeconds !== undefined) return verifyTokenWithJose(current, token, nowSeconds);
    const pending = inFlight.get(token);
    if (pending !== undefined) return pending;
    const startedUnder = generation;
    const verdict = verifyTokenWithJose(current, token, undefined).then((result) => {
      inFlight.delete(token);
      if (result.ok && startedUnder === generation) cache.set(token, result.value, currentSecond());
      return result;
    });
    inFlight.set(token, verdict);
    return verdict;
  }

  return {
    useKeys(next) {
      keys = next;
      generation += 1;
      cache.clear();
      inFlight.clear();
    },

    authorize(rawPath, nowSeconds) {
      const path = parseSocketPath(rawPath);
      if (!path.ok) return reject(400, path.reason);
      return this.authorizeToken(path.channel, path.token, nowSeconds);
    },

    authorizeToken(channel, token, nowSeconds) {
      const current = keys;
      // Unreachable: createAuthenticator loads keys before it hands authorize out.
      if (current === undefined) return reject(401, 'Invalid token');
      // postgres-websockets verifies an empty token to an empty claim set, which then
      // lacks `mode`; jose would call it malformed, so it never gets there.
      if (token === '') return grantFor(channel, {});

      const now = nowSeconds ?? currentSecond();
      const cached = cache.get(token, now);
      if (cached !== undefined) return grantFor(channel, cached);
      // Tokens in the usual shape, signed by a key we hold: accepted by the synchronous fast path.
      const accepted = current.fastPath?.(token, now);
      if (accepted !== undefined) {
        if (nowSeconds === undefined) cache.set(token, accepted, now);
        return grantFor(channel, accepted);
      }
      return verifyWithJose(current, token, nowSeconds).then((verdict) => (verdict.ok ? grantFor(channel, verdict.value) : verdict));
    },
  };
}

/** The clock jose reads: whole Unix seconds. */
function currentSecond(): number {
  return Math.floor(Date.now() / 1000);
}

type GrantRule = (requestedChannel: ChannelRequest, payload: JsonObject) => AuthResult;

/**
 * The claims checks and the channel table, run once the token's signature and times are
 * known good, whichever path verified it (fast path, cache, jose): so audience and issuer
 * are checked here rather than by jose, and every path applies the same rules.
 */
function createGrantRule(rules: ClaimRules): GrantRule {
  const modePath = splitClaimPath(rules.modeClaim ?? 'mode');
  const channelsPath = splitClaimPath(rules.channelsClaim ?? 'channels');
  const { audience, issuer, defaultMode } = rules;
  const badChannels = `Invalid "${rules.channelsClaim ?? 'channels'}" claim: expected an array of strings`;
  return (requestedChannel, payload) => {
    if (audience !== undefined && !hasAudience(payload.aud, audience)) return reject(401, 'Token audience not allowed');
    if (issuer !== undefined && !(typeof payload.iss === 'string' && issuer.includes(payload.iss))) {
      return reject(401, 'Token issuer not allowed');
    }
    const claims = checkClaims(payload, readClaim(payload, modePath), readClaim(payload, channelsPath), defaultMode, badChannels);
    if (!claims.ok) return claims;

    if (requestedChannel === EACH_REQUEST) {
      const channels = listedChannels(claims.value);
      const grant: Grant = { mode: claims.value.mode, channels, anyChannel: channels.length === 0, claims: payload as Claims, exp: claims.value.exp };
      return { ok: true, grant };
    }
    const channels = grantedChannels(requestedChannel, claims.value);
    if (channels.length === 0) return reject(403, 'No allowed channels');

    return { ok: true, grant: { mode: claims.value.mode, channels, claims: payload as Claims, exp: claims.value.exp } };
  };
}

function hasAudience(aud: Json | undefined, allowed: readonly string[]): boolean {
  if (typeof aud === 'string') return allowed.includes(aud);
  return Array.isArray(aud) && aud.some((entry) => typeof entry === 'string' && allowed.includes(entry));
}

interface ClaimPath {
  /** The path as configured: also tried as one top-level claim name (Auth0's `https://example.com/mode`). */
  readonly whole: string;
  readonly names: readonly string[];
}

/** `app_metadata.pgws.mode` -> its names; a claim name without dots is one name. */
function splitClaimPath(path: string): ClaimPath {
  return { whole: path, names: path.split('.') };
}

/**
 * The value at a dotted path; undefined when missing or when the path runs through a
 * non-object. A top-level claim named by the whole path wins: identity providers namespace
 * custom claims with URLs (`https://pgws.example.com/mode`), whose dots are no path.
 */
function readClaim(payload: JsonObject, path: ClaimPath): Json | undefined {
  const named = payload[path.whole];
  if (named !== undefined || path.names.length === 1) return named;
  let value: Json | undefined = payload;
  for (const name of path.names) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
    value = (value as JsonObject)[name];
  }
  return value;
}

// ---------------------------------------------------------------------------
// Token

/**
 * Verifies signature, algorithm, exp and nbf with jose: every token the fast path did not
 * accept, including every bad one, so refusals always carry jose's verdict.
 */
async function verifyTokenWithJose(keys: KeySource, token: string, nowSeconds: number | undefined): Promise<Verified<JsonObject>> {
  const options: JWTVerifyOptions = {
    algorithms: [...keys.algorithms],
    clockTolerance: 0,
    ...(nowSeconds === undefined ? {} : { currentDate: new Date(nowSeconds * 1000) }),
  };
  try {
    return { ok: true, value: asJsonObject(await verifyWithAnyMatchingKey(keys, token, options)) };
  } catch (error) {
    return reject(401, describeVerificationError(error));
  }
}

/**
 * jwtVerify, plus the case jose leaves to the caller: a token without a `kid` that
 * several keys of a JWK Set could have signed. Each candidate is tried in turn. The set's
 * resolver (keys.ts) lists its candidates, oct keys included; jose's own JWK Set
 * resolvers yield theirs.
 */
async function verifyWithAnyMatchingKey(keys: KeySource, token: string, options: JWTVerifyOptions): Promise<JWTPayload> {
  try {
    return (await jwtVerify(token, keys.getKey, options)).payload;
  } catch (error) {
    if (!(error instanceof errors.JWKSMultipleMatchingKeys)) throw error;
    const candidates = error instanceof MultipleMatchingKeys ? error.candidates : error;
    for await (const candidate of candidates) {
      try {
        return (await jwtVerify(token, candidate, options)).payload;
      } catch (candidateError) {
        if (!(candidateError instanceof errors.JWSSignatureVerificationFailed)) throw candidateError;
      }
    }
    throw new errors.JWSSignatureVerificationFailed();
  }
}

// Only the error's class decides the reason: jose's own messages stay out of replies.
function describeVerificationError(error: unknown): string {
  if (error instanceof errors.JWTExpired) return 'Token expired';
  if (error instanceof errors.JWTClaimValidationFailed) {
    return error.claim === 'nbf' && error.reason === 'check_failed' ? 'Token not yet valid' : `Invalid "${error.claim}" claim`;
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'Invalid token signature';
  if (error instanceof errors.JOSEAlgNotAllowed || error instanceof errors.JOSENotSupported) {
    return 'Token algorithm not allowed';
  }
  if (error instanceof errors.JWKSNoMatchingKey) return "No key matches the token's kid";
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) return 'Malformed token';
  return 'Invalid token';
}

// jose has parsed the payload from JSON and checked it is an object, so every value is
// Json already; the cast only restates that for the type checker.
function asJsonObject(payload: JWTPayload): JsonObject {
  return payload as JsonObject;
}

// ---------------------------------------------------------------------------
// Claims

/** What the grant is built from: the mode and channel claims, read where the rules say. */
interface GrantClaims {
  readonly mode: Mode;
  readonly channel: string | undefined;
  readonly channels: readonly string[] | undefined;
  readonly exp: number | undefined;
}

/**
 * Checks the mode, `channel` and the channels claim; every other claim passes through
 * untouched. The payload itself becomes the grant's claims (no copy): a cached one is
 * shared by every socket of that token, which is safe because nothing writes a grant's
 * claims (they are readonly). A present but invalid mode is refused even with a default.
 */
function checkClaims(
  payload: JsonObject,
  mode: Json | undefined,
  channels: Json | undefined,
  defaultMode: Mode | undefined,
  badChannels: string,
): Verified<GrantClaims> {
  const { channel, exp } = payload;
  const effectiveMode = mode === undefined ? defaultMode : mode;
  if (effectiveMode === undefined) return reject(401, 'Missing mode');
  if (!isMode(effectiveMode)) return reject(401, 'Invalid mode: expected "r", "w" or "rw"');
  if (channel !== undefined && typeof channel !== 'string') {
    return reject(401, 'Invalid "channel" claim: expected a string');
  }
  if (channels !== undefined && !isStringArray(channels)) {
    return reject(401, badChannels);
  }
  // exp/nbf, when present, were checked to be numbers by the verification before we got here.
  return { ok: true, value: { mode: effectiveMode, channel, channels, exp: typeof exp === 'number' ? exp : undefined } };
}

function isMode(value: Json): value is Mode {
  return typeof value === 'string' && (MODES as readonly string[]).includes(value);
}

function isStringArray(value: Json): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

/**
 * The channel table of PROTOCOL.md §1. Empty means "No allowed channels". The allowed list
 * is `channel` followed by `channels`, duplicates removed, first occurrence kept; a request
 * for one channel only asks whether it is in that list, so no list is built for it.
 */
function grantedChannels(requested: string | undefined, claims: GrantClaims): string[] {
  const { channel, channels } = claims;
  if (requested !== undefined) {
    // A token without channel claims may open any channel (as in postgres-websockets).
    const listsNone = channel === undefined && (channels === undefined || channels.length === 0);
    return listsNone || channel === requested || channels?.includes(requested) === true ? [requested] : [];
  }
  return listedChannels(claims);
}

/** `channel` followed by `channels`, duplicates removed, first occurrence kept. */
function listedChannels({ channel, channels }: GrantClaims): string[] {
  return [...new Set([...(channel === undefined ? [] : [channel]), ...(channels ?? [])])];
}

function reject(status: Rejection['status'], reason: string): Rejection {
  return { ok: false, status, reason };
}
