// A synchronous accept-only check for HMAC-signed tokens (HS256/384/512), in front of jose.
//
// Why: jose 6 verifies through WebCrypto, which imports the key and runs the HMAC as an
// asynchronous job on the libuv thread pool for every token. That costs ~140 µs per
// handshake here, against ~8 µs for node:crypto's createHmac on a key imported once
// (bench: connections scenario). Handshake storms after a restart are exactly when it shows.
//
// How it stays exactly as strict as jose: this function only ever *accepts*. It returns
// the claims when the token is in the plain shape nearly every issuer produces and every
// rule jwtVerify applies is met (see the list below); in any other case it returns
// undefined and the caller asks jose, which gives the verdict and the error it always
// gave. So it can make a good token faster, never let a bad one through, and never change
// a refusal's wording. test/auth.test.ts compares it with jose on generated tokens.
//
// Accepted only when, as in jose's jwtVerify with { algorithms, clockTolerance: 0 }:
//  - three segments, each unpadded base64url (no '=', no whitespace; length % 4 !== 1);
//  - the header is strict UTF-8 JSON, a plain object, with a string `alg` that is one of
//    the allowed algorithms, and no `crit` or `b64` member (those go to jose);
//  - the signature is the HMAC of `header.payload` under the secret (constant-time compare);
//    for a JWK Set, under one of the oct keys its resolver picks for the header's `alg` and
//    `kid` (without a kid, every oct key allowing that alg, each of which verify.ts tries);
//  - the payload is strict UTF-8 JSON, a plain object;
//  - `iat`, `nbf` and `exp`, when present, are numbers; nbf <= now < exp.

import { createHmac, createSecretKey, timingSafeEqual } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { Json } from '../types.js';

type JsonObject = { [claim: string]: Json };

/** The claims of a token jose would accept, or undefined to let jose decide. */
export type HmacFastPath = (token: string, nowSeconds: number) => JsonObject | undefined;

const HASH_BY_ALGORITHM: Readonly<Record<string, string>> = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };
const BASE64URL_SEGMENT = /^[A-Za-z0-9_-]*$/;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** A fast path for one HMAC secret (a plain secret or a single oct JWK): the token's kid is not read. */
export function createHmacFastPath(secret: Uint8Array, algorithms: readonly string[]): HmacFastPath {
  const keys = [createSecretKey(secret)];
  const allowed = new Set(algorithms.filter(isHmacAlgorithm));
  return createFastPath((alg) => (allowed.has(alg) ? keys : NO_KEYS));
}

/**
 * The secrets a token's header points at: its `alg` (always an HS algorithm here) and its
 * `kid` as sent (any JSON value, or undefined). Each may have signed the token.
 */
export type HmacKeysFor = (alg: string, kid: unknown) => readonly Uint8Array[];

/**
 * A fast path for the oct keys of a JWK Set. `keysFor` is the set's own key-matching rule,
 * the one its jose resolver uses, so the two cannot disagree about which key a kid picks.
 * The token is accepted when any key returned signed it, as verify.ts accepts it when any
 * of several matching keys verifies. Returned secrets must be the same Uint8Array objects
 * from call to call: each is imported into a KeyObject once.
 */
export function createKeyedHmacFastPath(keysFor: HmacKeysFor): HmacFastPath {
  const imported = new WeakMap<Uint8Array, KeyObject>();
  const keyObject = (secret: Uint8Array): KeyObject => {
    let key = imported.get(secret);
    if (key === undefined) {
      key = createSecretKey(secret);
      imported.set(secret, key);
    }
    return key;
  };
  return createFastPath((alg, kid) => keysFor(alg, kid).map(keyObject));
}

const NO_KEYS: readonly KeyObject[] = [];

function isHmacAlgorithm(alg: string): boolean {
  return Object.hasOwn(HASH_BY_ALGORITHM, alg);
}

function createFastPath(keysFor: (alg: string, kid: unknown) => readonly KeyObject[]): HmacFastPath {
  return (token, nowSeconds) => {
    const segments = token.split('.');
    if (segments.length !== 3) return undefined;
    const [headerText, payloadText, signatureText] = segments as [string, string, string];
    if (!isCanonicalBase64url(headerText) || !isCanonicalBase64url(payloadText) || !isCanonicalBase64url(signatureText)) {
      return undefined;
    }

    const header = parseJsonObject(headerText);
    if (header === undefined || Object.hasOwn(header, 'crit') || Object.hasOwn(header, 'b64')) return undefined;
    const alg = header.alg;
    if (typeof alg !== 'string' || !isHmacAlgorithm(alg)) return undefined;
    const keys = keysFor(alg, header.kid);
    if (keys.length === 0) return undefined;

    const hash = HASH_BY_ALGORITHM[alg] as string;
    const signingInput = `${headerText}.${payloadText}`;
    const signature = Buffer.from(signatureText, 'base64url');
    const signedByOneOfThem = keys.some((key) => {
      const expected = createHmac(hash, key).update(signingInput).digest();
      return signature.length === expected.length && timingSafeEqual(signature, expected);
    });
    if (!signedByOneOfThem) return undefined;

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
function isCanonicalBase64url(segment: string): boolean {
  return segment.length % 4 !== 1 && BASE64URL_SEGMENT.test(segment);
}

function parseJsonObject(segment: string): JsonObject | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(strictUtf8.decode(Buffer.from(segment, 'base64url')));
  } catch {
    return undefined;
  }
  return isPlainObject(parsed) ? parsed : undefined;
}

// JSON.parse only makes plain objects, arrays and primitives; this is jose's isObject.
function isPlainObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
