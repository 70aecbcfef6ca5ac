// A synchronous accept-only check of a token, in front of jose: the shape, the header, the
// payload and the times, around a signature check given by the key type (HMAC in
// hmac-fast-path.ts, RSA / EC / Ed25519 in public-key-fast-path.ts).
//
// Why: jose 6 verifies through WebCrypto, an asynchronous job on the libuv thread pool for
// every token, behind promises. For an HMAC that costs ~140 µs per handshake here, against a
// few µs done synchronously; for RS256 jose spends about twice the CPU of a synchronous
// node:crypto verify (bench: connections scenario). Handshake storms after a restart are
// exactly when it shows.
//
// How it stays exactly as strict as jose: this function only ever *accepts*. It returns the
// claims when the token is in the plain shape nearly every issuer produces and every rule
// jwtVerify applies is met (see the list below); in any other case it returns undefined and
// the caller asks jose, which gives the verdict and the error it always gave. So it can make
// a good token faster, never let a bad one through, and never change a refusal's wording.
// test/hmac-fast-path.unit.test.ts and test/public-key-fast-path.unit.test.ts compare it with
// jose on generated tokens.
//
// Accepted only when, as in jose's jwtVerify with { algorithms, clockTolerance: 0 }:
//  - three segments, each unpadded base64url (no '=', no whitespace; length % 4 !== 1);
//  - the header is strict UTF-8 JSON, a plain object, with a string `alg` for which the key
//    source gives a check (only algorithms it allows), and no `crit` or `b64` member (those
//    go to jose);
//  - the signature passes one of the checks the key source gives for the header's `alg` and
//    `kid` (a JWK Set's resolver may give several: any one that verifies, as verify.ts tries
//    each);
//  - the payload is strict UTF-8 JSON, a plain object;
//  - `iat`, `nbf` and `exp`, when present, are numbers; nbf <= now < exp.
//
// What a handshake costs here (the connections bench, one token per client): every step
// below runs once per socket between kernel work that evicts the CPU's caches, so fewer steps
// and fewer native objects count more than any one step's speed. Hence a verdict per distinct
// header text: an issuer signs every token with the same header, so it is decoded and checked
// once, not per token.

import { isUtf8 } from 'node:buffer';
import type { Json } from '../types.js';

export type JsonObject = { [claim: string]: Json };

/** The claims of a token jose would accept, or undefined to let jose decide. */
export type FastPath = (token: string, nowSeconds: number) => JsonObject | undefined;

/**
 * Whether `signature`, the token's third segment as sent, is a valid signature of
 * `signingInput` (`header.payload`, base64url text, so ASCII) under one key. Never throws.
 */
export type SignatureCheck = (signingInput: string, signature: string) => boolean;

/** The checks for a token's header: its `alg` (any string) and its `kid` as sent (any JSON value, or undefined). */
export type ChecksFor = (alg: string, kid: unknown) => readonly SignatureCheck[];

export const NO_CHECKS: readonly SignatureCheck[] = [];

/**
 * Distinct header texts remembered. An issuer uses one header per key (two or three during
 * a key rotation); only headers that name a usable key are kept, and the oldest is dropped
 * first, so a client sending odd headers costs a parse per token, as it would without this.
 */
const HEADER_VERDICTS = 16;
const BASE64URL_SEGMENT = /^[A-Za-z0-9_-]*$/;

export function createFastPath(checksFor: ChecksFor): FastPath {
  const verdicts = new Map<string, readonly SignatureCheck[]>();

  const headerVerdict = (headerText: string): readonly SignatureCheck[] | undefined => {
    const known = verdicts.get(headerText);
    if (known !== undefined) return known;
    if (!isCanonicalBase64url(headerText)) return undefined;
    const header = parseJsonObject(headerText);
    if (header === undefined || Object.hasOwn(header, 'crit') || Object.hasOwn(header, 'b64')) return undefined;
    const alg = header.alg;
    if (typeof alg !== 'string') return undefined;
    const checks = checksFor(alg, header.kid);
    if (checks.length === 0) return undefined;
    if (verdicts.size >= HEADER_VERDICTS) {
      const oldest = verdicts.keys().next();
      if (!oldest.done) verdicts.delete(oldest.value);
    }
    verdicts.set(headerText, checks);
    return checks;
  };

  return (token, nowSeconds) => {
    const firstDot = token.indexOf('.');
    const secondDot = token.indexOf('.', firstDot + 1);
    if (firstDot === -1 || secondDot === -1 || token.indexOf('.', secondDot + 1) !== -1) return undefined;
    const checks = headerVerdict(token.slice(0, firstDot));
    if (checks === undefined) return undefined;

    const payloadText = token.slice(firstDot + 1, secondDot);
    if (!isCanonicalBase64url(payloadText)) return undefined;
    // Both parts are base64url text (the header was checked when its verdict was made), so
    // the signing input is ASCII, as the checks expect.
    const signingInput = token.slice(0, secondDot);
    const signature = token.slice(secondDot + 1);
    if (!checks.some((check) => check(signingInput, signature))) return undefined;

    const claims = parseJsonObject(payloadText);
    if (claims === undefined) return undefined;
    const { iat, nbf, exp } = claims;
    if (iat !== undefined && typeof iat !== 'number') return undefined;
    if (nbf !== undefined && (typeof nbf !== 'number' || nbf > nowSeconds)) return undefined;
    if (exp !== undefined && (typeof exp !== 'number' || exp <= nowSeconds)) return undefined;
    return claims;
  };
}

// Node's base64url decoder skips characters it does not know and tolerates a dangling
// sixth bit group; jose's does not. Only text both read the same way is taken.
export function isCanonicalBase64url(segment: string): boolean {
  return segment.length % 4 !== 1 && BASE64URL_SEGMENT.test(segment);
}

function parseJsonObject(segment: string): JsonObject | undefined {
  const bytes = Buffer.from(segment, 'base64url');
  // isUtf8 is the strict check a `fatal` TextDecoder makes, without a decoder call per token.
  // Unlike TextDecoder, toString keeps a leading byte order mark, which JSON.parse refuses:
  // such a token goes to jose, which drops the mark.
  if (!isUtf8(bytes)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  return isPlainObject(parsed) ? parsed : undefined;
}

// JSON.parse only makes plain objects, arrays and primitives; this is jose's isObject.
function isPlainObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A fast path for one key that verifies each of several algorithms (a plain secret, a single
 * JWK): `check` makes the signature check of an algorithm under that key, or undefined.
 */
export function createSingleKeyFastPath<K>(keyByAlgorithm: Iterable<readonly [string, K]>, check: (alg: string, key: K) => SignatureCheck | undefined): FastPath {
  const checks = new Map<string, readonly SignatureCheck[]>();
  for (const [alg, key] of keyByAlgorithm) {
    const made = check(alg, key);
    if (made) checks.set(alg, [made]);
  }
  return createFastPath((alg) => checks.get(alg) ?? NO_CHECKS);
}

/**
 * `check`, made on first use per (key, alg) and kept while the key is: for JWK Sets, whose
 * resolver hands out the same key objects every time.
 */
export function memoizeChecks<K extends object>(check: (alg: string, key: K) => SignatureCheck | undefined): (alg: string, key: K) => SignatureCheck | undefined {
  const made = new WeakMap<K, Map<string, SignatureCheck | undefined>>();
  return (alg, key) => {
    let byAlg = made.get(key);
    if (byAlg === undefined) {
      byAlg = new Map();
      made.set(key, byAlg);
    }
    if (!byAlg.has(alg)) byAlg.set(alg, check(alg, key));
    return byAlg.get(alg);
  };
}
