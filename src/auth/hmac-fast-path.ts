// The signature check of the fast path (fast-path.ts) for HMAC-signed tokens (HS256/384/512):
// a plain secret, an oct JWK, or the oct keys of a JWK Set.
//
// The HMAC is computed from two one-shot digests into buffers kept per key, instead of an
// Hmac object per token (createHmac imports the key, allocates a native context and wraps it
// in a JavaScript object each time); the signature is compared as text, without decoding it.

import * as nodeCrypto from 'node:crypto';
import { createHmac, createSecretKey } from 'node:crypto';
import { createSingleKeyFastPath, memoizeChecks, type FastPath, type SignatureCheck } from './fast-path.js';

/** The claims of a token jose would accept, or undefined to let jose decide. */
export type HmacFastPath = FastPath;

interface HashSpec {
  readonly name: string;
  /** Block size of the hash, which RFC 2104 pads the key to. */
  readonly blockBytes: number;
  readonly digestBytes: number;
}

const HASH_BY_ALGORITHM: Readonly<Record<string, HashSpec>> = {
  HS256: { name: 'sha256', blockBytes: 64, digestBytes: 32 },
  HS384: { name: 'sha384', blockBytes: 128, digestBytes: 48 },
  HS512: { name: 'sha512', blockBytes: 128, digestBytes: 64 },
};

/** A fast path for one HMAC secret (a plain secret or a single oct JWK): the token's kid is not read. */
export function createHmacFastPath(secret: Uint8Array, algorithms: readonly string[]): HmacFastPath {
  return createSingleKeyFastPath(algorithms.map((alg) => [alg, secret] as const), hmacCheck);
}

/** hmacCheck per (secret, alg), made once: for sets, whose resolver hands out the same secrets. */
export function hmacChecks(): (alg: string, secret: Uint8Array) => SignatureCheck | undefined {
  return memoizeChecks(hmacCheck);
}

/** The check of an HS algorithm under one secret; undefined for any other algorithm. */
export function hmacCheck(alg: string, secret: Uint8Array): SignatureCheck | undefined {
  const spec = Object.hasOwn(HASH_BY_ALGORITHM, alg) ? HASH_BY_ALGORITHM[alg] : undefined;
  if (spec === undefined) return undefined;
  const sign = createSigner(spec, secret);
  // The computed signature is canonical base64url: equal text means the token's signature
  // is canonical too and decodes to the same bytes.
  return (signingInput, signature) => sameText(sign(signingInput), signature);
}

/** base64url(HMAC(secret, input)) for an input of base64url characters (ASCII) only. */
type Signer = (asciiInput: string) => string;

// crypto.hash (one-shot digests) is in Node >= 20.12; older Node 20 releases keep createHmac.
const digestOnce: typeof nodeCrypto.hash | undefined = typeof nodeCrypto.hash === 'function' ? nodeCrypto.hash : undefined;

/**
 * HMAC as RFC 2104 defines it, H((K ^ opad) || H((K ^ ipad) || text)), over two one-shot
 * digests into buffers kept for the key: no Hmac object, native context or key import per
 * token, which is what createHmac costs. test/hmac-fast-path.unit.test.ts checks it
 * against createHmac for every HS algorithm, key lengths around the block size included.
 */
function createSigner(spec: HashSpec, secret: Uint8Array): Signer {
  const hash = digestOnce;
  if (hash === undefined) {
    const key = createSecretKey(secret);
    return (input) => createHmac(spec.name, key).update(input).digest('base64url');
  }
  // A key longer than the block is replaced by its digest; a shorter one is padded with zeros.
  const key = secret.length > spec.blockBytes ? hash(spec.name, secret, 'buffer') : secret;
  const innerPad = Buffer.alloc(spec.blockBytes);
  const outer = Buffer.alloc(spec.blockBytes + spec.digestBytes);
  for (let i = 0; i < spec.blockBytes; i++) {
    const byte = key[i] ?? 0;
    innerPad[i] = byte ^ 0x36;
    outer[i] = byte ^ 0x5c;
  }
  let inner = Buffer.alloc(spec.blockBytes + 1024);
  innerPad.copy(inner);
  return (input) => {
    const length = spec.blockBytes + input.length;
    if (length > inner.length) {
      inner = Buffer.alloc(length * 2);
      innerPad.copy(inner);
    }
    inner.write(input, spec.blockBytes, 'latin1');
    // 'binary' (latin1) carries the inner digest's bytes as a string, one char per byte.
    outer.write(hash(spec.name, inner.subarray(0, length), 'binary'), spec.blockBytes, 'binary');
    return hash(spec.name, outer, 'base64url');
  };
}

/** Compares two texts in time that depends on their length only, never on where they differ. */
function sameText(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return difference === 0;
}
