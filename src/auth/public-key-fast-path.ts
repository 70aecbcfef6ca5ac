// The signature check of the fast path (fast-path.ts) for tokens signed with a public-key
// algorithm, as identity providers sign them: RS256/384/512, PS256/384/512, ES256/384/512,
// EdDSA (Ed25519). node:crypto's synchronous verify, on the key jose imported.
//
// Why synchronously: jose verifies through WebCrypto, an asynchronous job on the libuv
// thread pool behind promises. Measured here per token, with 50 in flight: RS256 87 µs of
// CPU through jose (33 µs of it on the main thread) against 33-43 µs synchronously; ES256
// 147 µs (40-60 on the main thread) against 113-127 µs. Inside the server, between the
// kernel's work on each connection, jose's share grew far more (connections scenario, per
// CPU-second: RS256 3.2k handshakes through jose, 5.4k with this; ES256 2.4k, 3.7k). The
// price is the verify itself on the event loop: ~40 µs for RS256, ~120 µs for ES256
// (OpenSSL 3's P-256 here), per new token; the token cache spares it for a token seen before.
// On a machine with idle cores, jose would keep more of an ES256 check off the event loop
// (40-60 µs of its 147 there), at more total CPU.
//
// Like the HMAC check, it only ever accepts: a signature that does not verify, or anything
// unusual about it, sends the token to jose, whose verdict stands.

import { constants, KeyObject, verify } from 'node:crypto';
import type { CryptoKey } from 'jose';
import { createSingleKeyFastPath, isCanonicalBase64url, memoizeChecks, type FastPath, type SignatureCheck } from './fast-path.js';

interface VerifySpec {
  /** The digest, or null for Ed25519, which hashes itself. */
  readonly hash: string | null;
  readonly padding?: number;
  readonly saltLength?: number;
  readonly dsaEncoding?: 'ieee-p1363';
}

// As jose (and RFC 7518) define them: PSS with a salt as long as the digest, ECDSA signatures
// as the raw r||s pair.
const SPEC_BY_ALGORITHM: Readonly<Record<string, VerifySpec>> = {
  RS256: { hash: 'sha256', padding: constants.RSA_PKCS1_PADDING },
  RS384: { hash: 'sha384', padding: constants.RSA_PKCS1_PADDING },
  RS512: { hash: 'sha512', padding: constants.RSA_PKCS1_PADDING },
  PS256: { hash: 'sha256', padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
  PS384: { hash: 'sha384', padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 },
  PS512: { hash: 'sha512', padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 64 },
  ES256: { hash: 'sha256', dsaEncoding: 'ieee-p1363' },
  ES384: { hash: 'sha384', dsaEncoding: 'ieee-p1363' },
  ES512: { hash: 'sha512', dsaEncoding: 'ieee-p1363' },
  EdDSA: { hash: null },
  Ed25519: { hash: null },
};

/** A fast path for one public JWK, imported by jose once per algorithm it may verify. */
export function createPublicKeyFastPath(keysByAlgorithm: ReadonlyMap<string, CryptoKey>): FastPath {
  return createSingleKeyFastPath(keysByAlgorithm, publicKeyCheck);
}

/** publicKeyCheck per (key, alg), made once: for JWK Sets. */
export function publicKeyChecks(): (alg: string, key: CryptoKey) => SignatureCheck | undefined {
  return memoizeChecks(publicKeyCheck);
}

/**
 * The check of `alg` under a public key jose imported for that algorithm; undefined for an
 * algorithm this does not know (ML-DSA: jose alone) or a key node:crypto cannot use.
 */
export function publicKeyCheck(alg: string, key: CryptoKey): SignatureCheck | undefined {
  const spec = Object.hasOwn(SPEC_BY_ALGORITHM, alg) ? SPEC_BY_ALGORITHM[alg] : undefined;
  if (spec === undefined) return undefined;
  // jose refuses a key whose usages (from a JWK's key_ops) lack "verify"; KeyObject has none.
  if (!key.usages.includes('verify')) return undefined;
  let keyObject: KeyObject;
  try {
    keyObject = KeyObject.from(key);
  } catch {
    return undefined;
  }
  if (keyObject.type !== 'public') return undefined;
  const { hash, ...options } = spec;
  const verifyKey = { key: keyObject, ...options };
  return (signingInput, signature) => {
    if (!isCanonicalBase64url(signature)) return false;
    const bytes = Buffer.from(signature, 'base64url');
    // Unused low bits in the last character would decode to the same bytes: only the one
    // canonical text is taken, as for the other segments.
    if (bytes.toString('base64url') !== signature) return false;
    try {
      return verify(hash, Buffer.from(signingInput, 'latin1'), verifyKey, bytes);
    } catch {
      return false;
    }
  };
}
