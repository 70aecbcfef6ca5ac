// The socket handshake check (PROTOCOL.md §1): path -> token -> claims -> channels.
// Runs before the upgrade is accepted; a failure carries the HTTP status and a short
// plain-text reason. Reasons are fixed texts (plus a claim name at most): they never
// contain the token, so they are safe to send back and to log.

import { errors, jwtVerify } from 'jose';
import type { JWTPayload, JWTVerifyOptions } from 'jose';
import type { Claims, Grant, Json, Mode } from '../types.js';
import { loadVerificationKeys, MultipleMatchingKeys } from './keys.js';
import type { KeyKind, KeySource } from './keys.js';
import { parseSocketPath } from './path.js';

export type AuthResult = { ok: true; grant: Grant } | { ok: false; status: 400 | 401 | 403; reason: string };

export interface Authenticator {
  /** What PGWS_JWT_SECRET turned out to be (HMAC secret, JWK or JWK Set); safe to log. */
  readonly keyKind: KeyKind;
  /**
   * Checks a raw request path. Never throws or rejects. `nowSeconds` overrides the clock (tests).
   * A verdict known without I/O (a bad path, an HMAC token on the fast path) comes back as
   * a plain value, so the transport can answer within the upgrade callback; one that needs
   * jose comes back as a Promise.
   */
  authorize(rawPath: string, nowSeconds?: number): AuthResult | Promise<AuthResult>;
}

export interface AuthenticatorOptions {
  readonly jwtSecret: string;
  readonly jwtSecretIsBase64: boolean;
}

type Rejection = Extract<AuthResult, { ok: false }>;
type Verified<T> = { ok: true; value: T } | Rejection;
type JsonObject = { [claim: string]: Json };

const MODES: readonly Mode[] = ['r', 'w', 'rw'];

/** Loads the keys once (throws on an unusable secret) and returns the per-socket check. */
export async function createAuthenticator(opts: AuthenticatorOptions): Promise<Authenticator> {
  const keys = await loadVerificationKeys(opts.jwtSecret, opts.jwtSecretIsBase64);
  return {
    keyKind: keys.kind,
    authorize: (rawPath, nowSeconds) => authorize(keys, rawPath, nowSeconds),
  };
}

function authorize(keys: KeySource, rawPath: string, nowSeconds?: number): AuthResult | Promise<AuthResult> {
  const path = parseSocketPath(rawPath);
  if (!path.ok) return reject(400, path.reason);
  const { channel, token } = path;

  const known = verifyTokenAtOnce(keys, token, nowSeconds);
  if (known !== undefined) return grantFor(channel, known);
  return verifyTokenWithJose(keys, token, nowSeconds).then((payload) => grantFor(channel, payload));
}

/** The claims checks and the channel table, once the token's verdict is in. */
function grantFor(requestedChannel: string | undefined, payload: Verified<JsonObject>): AuthResult {
  if (!payload.ok) return payload;

  const claims = checkClaims(payload.value);
  if (!claims.ok) return claims;

  const channels = grantedChannels(requestedChannel, allowedChannels(claims.value));
  if (channels.length === 0) return reject(403, 'No allowed channels');

  const exp = claims.value.exp;
  return { ok: true, grant: { mode: claims.value.mode, channels, claims: claims.value, exp } };
}

// ---------------------------------------------------------------------------
// Token

/**
 * The verdicts that need no I/O: an empty token has no claims at all, and HMAC tokens in
 * the usual shape are accepted by the synchronous fast path. Undefined: ask jose.
 */
function verifyTokenAtOnce(keys: KeySource, token: string, nowSeconds?: number): Verified<JsonObject> | undefined {
  // postgres-websockets verifies an empty token to an empty claim set, which then
  // lacks `mode`; jose would call it malformed, so it never gets there.
  if (token === '') return { ok: true, value: {} };
  const accepted = keys.fastPath?.(token, nowSeconds ?? Math.floor(Date.now() / 1000));
  return accepted === undefined ? undefined : { ok: true, value: accepted };
}

/**
 * Verifies signature, algorithm, exp and nbf with jose: every token the fast path did not
 * accept, including every bad one, so refusals always carry jose's verdict.
 */
async function verifyTokenWithJose(keys: KeySource, token: string, nowSeconds?: number): Promise<Verified<JsonObject>> {
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

/** Checks `mode`, `channel` and `channels`; every other claim passes through untouched. */
function checkClaims(payload: JsonObject): Verified<Claims> {
  const { mode, channel, channels } = payload;
  if (mode === undefined) return reject(401, 'Missing mode');
  if (!isMode(mode)) return reject(401, 'Invalid mode: expected "r", "w" or "rw"');
  if (channel !== undefined && typeof channel !== 'string') {
    return reject(401, 'Invalid "channel" claim: expected a string');
  }
  if (channels !== undefined && !isStringArray(channels)) {
    return reject(401, 'Invalid "channels" claim: expected an array of strings');
  }
  // exp/nbf, when present, were checked to be numbers by jose before we got here.
  return { ok: true, value: { ...payload, mode } as Claims };
}

function isMode(value: Json): value is Mode {
  return typeof value === 'string' && (MODES as readonly string[]).includes(value);
}

function isStringArray(value: Json): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

/** `channel` followed by `channels`, duplicates removed, first occurrence kept. */
function allowedChannels(claims: Claims): string[] {
  const listed = [...(claims.channel === undefined ? [] : [claims.channel]), ...(claims.channels ?? [])];
  return [...new Set(listed)];
}

/** The channel table of PROTOCOL.md §1. Empty means "No allowed channels". */
function grantedChannels(requested: string | undefined, allowed: readonly string[]): string[] {
  if (requested === undefined) return [...allowed];
  // A token without channel claims may open any channel (as in postgres-websockets).
  if (allowed.length === 0) return [requested];
  return allowed.includes(requested) ? [requested] : [];
}

function reject(status: Rejection['status'], reason: string): Rejection {
  return { ok: false, status, reason };
}
