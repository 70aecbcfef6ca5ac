// Turns PGWS_JWT_SECRET into what token verification needs (PROTOCOL.md §1, Keys):
// a key resolver plus the explicit list of algorithms that key may verify.
//
// The algorithm list is what stops algorithm confusion: an HMAC secret only ever
// allows HS*, an asymmetric key only ever allows algorithms of its own type, and
// `none` is never in any list. jose enforces key types as well; the list makes the
// policy visible and rejects a wrong `alg` before any key is touched. In a JWK Set each
// member keeps its own list, so a set that mixes oct and asymmetric keys still never lets
// an HS token reach an asymmetric key, nor an RS/ES/EdDSA token reach an oct key.
//
// Error messages never contain the secret: they name what is wrong, not the value.

import { errors, importJWK } from 'jose';
import type { CryptoKey, JWK, JWSHeaderParameters, JWTVerifyGetKey } from 'jose';
import { createFastPath, type FastPath } from './fast-path.js';
import { createHmacFastPath, hmacChecks } from './hmac-fast-path.js';
import { createPublicKeyFastPath, publicKeyChecks } from './public-key-fast-path.js';

// 'jwks-url': a JWK Set fetched from PGWS_JWKS_URL, combined with PGWS_JWT_SECRET's keys when
// both are set (remote-keys.ts).
export type KeyKind = 'hmac' | 'jwk' | 'jwks' | 'jwks-url';

export interface KeySource {
  /** What PGWS_JWT_SECRET turned out to be; safe to log. */
  readonly kind: KeyKind;
  /** The only `alg` header values a token may carry. Never contains `none`. */
  readonly algorithms: readonly string[];
  /** Resolves the verification key for a token whose `alg` is already known to be allowed. */
  readonly getKey: JWTVerifyGetKey;
  /** A synchronous check that may accept a token before jose is asked (fast-path.ts). */
  readonly fastPath?: FastPath;
}

const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const;
const RSA_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'] as const;
const EC_ALGORITHMS_BY_CURVE: Readonly<Record<string, string>> = {
  'P-256': 'ES256',
  'P-384': 'ES384',
  'P-521': 'ES512',
};
const ED25519_ALGORITHMS = ['EdDSA', 'Ed25519'] as const;
const ML_DSA_ALGORITHMS = ['ML-DSA-44', 'ML-DSA-65', 'ML-DSA-87'] as const;

/**
 * Every asymmetric signature algorithm a JWK may verify here. remote-keys.ts lets jose take
 * them all before its resolver runs: a provider that rotates to a key of another type is only
 * refetched once a token with that `alg` reaches the resolver (which still checks the `alg`
 * against each member's own list).
 */
export const PUBLIC_KEY_ALGORITHMS: readonly string[] = [...RSA_ALGORITHMS, ...Object.values(EC_ALGORITHMS_BY_CURVE), ...ED25519_ALGORITHMS, ...ML_DSA_ALGORITHMS];

// Members that make a JWK private. A private key cannot verify in WebCrypto, so a
// JWK pasted with its private half is reduced to the public half it implies.
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'priv'] as const;

/**
 * How loadVerificationKeys' messages about JSON keys begin (followed by ': ' and the reason).
 * Exported so that remote-keys.ts, which loads a fetched set through the same function, can
 * name the URL instead of PGWS_JWT_SECRET.
 */
export const JSON_ERROR_PREFIX = 'PGWS_JWT_SECRET looks like JSON but is not a valid JWK or JWK Set';

type JsonObject = Record<string, unknown>;

/** Builds the key source for PGWS_JWT_SECRET. Throws an Error (without the secret) when unusable. */
export async function loadVerificationKeys(secret: string, isBase64: boolean): Promise<KeySource> {
  if (isBase64) return hmacKeySource(decodeBase64Secret(secret));
  if (looksLikeJson(secret)) return jsonKeySource(secret);
  return hmacKeySource(new TextEncoder().encode(secret));
}

// ---------------------------------------------------------------------------
// HMAC

function hmacKeySource(keyBytes: Uint8Array): KeySource {
  if (keyBytes.length === 0) throw new Error('PGWS_JWT_SECRET is empty: an HMAC secret needs at least one byte');
  return { kind: 'hmac', algorithms: HMAC_ALGORITHMS, getKey: () => keyBytes, fastPath: createHmacFastPath(keyBytes, HMAC_ALGORITHMS) };
}

/**
 * Decodes a base64 secret. Accepts the standard and the URL-safe alphabet (even mixed),
 * with or without padding, and ignores whitespace (secrets read from files are often wrapped).
 * Node's own decoder silently skips bad characters, so the text is validated first.
 */
export function decodeBase64Secret(secret: string): Uint8Array {
  const compact = secret.replace(/\s+/g, '');
  const unpadded = compact.replace(/={1,2}$/, '');
  const paddingLength = compact.length - unpadded.length;
  const valid =
    /^[A-Za-z0-9+/_-]*$/.test(unpadded) &&
    unpadded.length % 4 !== 1 &&
    (paddingLength === 0 || compact.length % 4 === 0);
  if (!valid) {
    throw new Error('PGWS_JWT_SECRET is not valid base64 (PGWS_JWT_SECRET_BASE64 is true)');
  }
  const standard = unpadded.replace(/-/g, '+').replace(/_/g, '/');
  return new Uint8Array(Buffer.from(standard, 'base64'));
}

// ---------------------------------------------------------------------------
// Signing (`pgws token`)

export interface HmacSigningKey {
  readonly secret: Uint8Array;
  /** The HS algorithms pgws accepts from this key: the JWK's `alg` when it names one, else all three. */
  readonly algorithms: readonly string[];
  /** The JWK's kid, for the token's header, so that a JWK Set's resolver picks this key. */
  readonly kid?: string;
}

const HMAC_ONLY =
  'pgws token signs with an HMAC secret only (a plain or base64 secret, an oct JWK, or a JWK Set holding an oct key). ' +
  'pgws only ever verifies with a public key (a private JWK is reduced to its public half), and a public key cannot sign: ' +
  'make tokens for this key where its private key is kept, such as your identity provider';

/**
 * The HMAC key that `pgws token` signs with: the secret itself, a single oct JWK, or the first
 * oct key of a JWK Set that pgws verifies with. Throws an Error, never containing the secret,
 * for a secret the daemon refuses and for asymmetric keys.
 */
export async function loadSigningKey(secret: string, isBase64: boolean): Promise<HmacSigningKey> {
  // The daemon's checks first: a secret it refuses at start-up must not sign anything.
  await loadVerificationKeys(secret, isBase64);
  if (isBase64) return { secret: decodeBase64Secret(secret), algorithms: HMAC_ALGORITHMS };
  if (!looksLikeJson(secret)) return { secret: new TextEncoder().encode(secret), algorithms: HMAC_ALGORITHMS };
  const parsed = parseJsonObject(secret);
  const isSet = Array.isArray(parsed.keys);
  const members = Array.isArray(parsed.keys) ? parsed.keys.filter(isJsonObject) : [parsed];
  for (const jwk of members) {
    if (jwk.kty !== 'oct') continue;
    // The same algorithm lists as verification, so pgws accepts whatever is signed here.
    const [firstAlgorithm, ...more] = isSet ? setMemberAlgorithms(jwk) : algorithmsForJwk(jwk);
    if (firstAlgorithm === undefined) continue;
    const key = await importJWK(asJwk(jwk), firstAlgorithm);
    if (!isSecretBytes(key)) continue; // unreachable: jose imports an oct JWK as its bytes
    return { secret: key, algorithms: [firstAlgorithm, ...more], ...(typeof jwk.kid === 'string' ? { kid: jwk.kid } : {}) };
  }
  const what = isSet ? 'a JWK Set without a symmetric (oct) key that verifies signatures' : `an asymmetric (${String(parsed.kty)}) JWK`;
  throw new Error(`PGWS_JWT_SECRET is ${what}. ${HMAC_ONLY}`);
}

// ---------------------------------------------------------------------------
// JSON: a single JWK or a JWK Set

// A secret shaped like a JSON object is treated as a key and must be a valid one. Falling
// back to HMAC would be dangerous: a mistyped *public* JWK would become an HMAC secret that
// anyone holding the public key could sign with. Any other text stays an HMAC secret,
// as in postgres-websockets.
function looksLikeJson(secret: string): boolean {
  const trimmed = secret.trim();
  return trimmed.startsWith('{') && trimmed.endsWith('}');
}

async function jsonKeySource(secret: string): Promise<KeySource> {
  const parsed = parseJsonObject(secret);
  try {
    if (Array.isArray(parsed.keys)) return await jwkSetKeySource(parsed.keys);
    if (typeof parsed.kty === 'string') return await singleJwkKeySource(parsed);
  } catch (error) {
    throw new Error(`${JSON_ERROR_PREFIX}: ${describeError(error)}`);
  }
  throw new Error(`${JSON_ERROR_PREFIX}: it has neither a "kty" nor a "keys" member`);
}

function parseJsonObject(secret: string): JsonObject {
  let parsed: unknown;
  try {
    parsed = JSON.parse(secret);
  } catch {
    // Not the parser's message: V8 quotes part of the input, which is the secret.
    throw new Error(`${JSON_ERROR_PREFIX}: it is not valid JSON`);
  }
  if (!isJsonObject(parsed)) throw new Error(`${JSON_ERROR_PREFIX}: it is not a JSON object`);
  return parsed;
}

async function singleJwkKeySource(jwk: JsonObject): Promise<KeySource> {
  const algorithms = algorithmsForJwk(jwk);
  if (algorithms.length === 0) throw new Error(unusableJwkReason(jwk));
  const verificationJwk = publicPart(jwk);
  assertRsaModulusLongEnough(verificationJwk);
  const keysByAlgorithm = await importForEachAlgorithm(verificationJwk, algorithms);
  const getKey = (header: JWSHeaderParameters): CryptoKey | Uint8Array => {
    const key = header.alg === undefined ? undefined : keysByAlgorithm.get(header.alg);
    // Unreachable while `algorithms` is passed to jwtVerify; a guard, not a code path.
    if (key === undefined) throw new Error('Token algorithm not allowed');
    return key;
  };
  // jose imports an `oct` JWK as its raw bytes (the same HMAC fast path as a plain secret),
  // every other key as a CryptoKey per algorithm.
  const [firstKey] = keysByAlgorithm.values();
  const fastPath = firstKey instanceof Uint8Array ? createHmacFastPath(firstKey, algorithms) : createPublicKeyFastPath(publicKeysOf(keysByAlgorithm));
  return { kind: 'jwk', algorithms, getKey, fastPath };
}

/**
 * Thrown by a JWK Set's resolver when several keys of the set fit a token (it has no `kid`,
 * or members share its kid): verify.ts tries each. jose's own JWKSMultipleMatchingKeys
 * yields CryptoKeys only, and an oct key is raw bytes, so the candidates travel as a list.
 */
export class MultipleMatchingKeys extends errors.JWKSMultipleMatchingKeys {
  constructor(readonly candidates: readonly VerificationKey[]) {
    super();
  }
}

type VerificationKey = CryptoKey | Uint8Array;

interface SetMember {
  /** The member's `kid` as written (a token's kid must be a string equal to it). */
  readonly kid: unknown;
  /** The member imported once per algorithm it may verify (WebCrypto binds a key to one). */
  readonly keysByAlgorithm: ReadonlyMap<string, VerificationKey>;
}

// A set is resolved here, not by jose's createLocalJWKSet, for every member type alike:
// createLocalJWKSet resolves public keys only (postgres-websockets also takes oct members),
// and one resolver over all members means one matching rule for a mixed set. The rule is
// jose's: a member is a candidate when the token's `alg` is one of the member's algorithms
// and the token has no `kid` or a string `kid` equal to the member's. The per-member
// algorithm lists are what keep an HS token away from an RSA/EC/OKP member and an RS/ES
// token away from an oct member (no algorithm confusion). Every key is imported at
// start-up, so a broken member is a start-up error, never a 401 for every client.
async function jwkSetKeySource(members: readonly unknown[]): Promise<KeySource> {
  const usable: SetMember[] = [];
  for (const [index, member] of members.entries()) {
    if (!isJsonObject(member)) throw new Error(`"keys" member ${index} is not an object`);
    const jwk = publicPart(member);
    const algorithms = setMemberAlgorithms(jwk);
    if (algorithms.length === 0) continue; // e.g. an encryption key: never picked for a signature
    try {
      assertRsaModulusLongEnough(jwk);
      usable.push({ kid: jwk.kid, keysByAlgorithm: await importForEachAlgorithm(jwk, algorithms) });
    } catch (error) {
      throw new Error(`"keys" member ${index}: ${describeError(error)}`);
    }
  }
  if (usable.length === 0) throw new Error('no key in the set can verify signatures');

  const candidates = (alg: unknown, kid: unknown): VerificationKey[] => {
    if (typeof alg !== 'string') return [];
    if (kid !== undefined && typeof kid !== 'string') return [];
    return usable.flatMap((member) => {
      const key = member.keysByAlgorithm.get(alg);
      return key !== undefined && (kid === undefined || kid === member.kid) ? [key] : [];
    });
  };
  const getKey = (header: JWSHeaderParameters): VerificationKey => {
    const found = candidates(header.alg, header.kid);
    const [only] = found;
    if (only === undefined) throw new errors.JWKSNoMatchingKey();
    if (found.length > 1) throw new MultipleMatchingKeys(found);
    return only;
  };
  const algorithms = unique(usable.flatMap((member) => [...member.keysByAlgorithm.keys()]));
  // Every member gets the fast path's check of its type, picked by the same rule as getKey.
  const hmacCheck = hmacChecks();
  const publicKeyCheck = publicKeyChecks();
  const fastPath = createFastPath((alg, kid) =>
    candidates(alg, kid).flatMap((key) => (isSecretBytes(key) ? hmacCheck(alg, key) : publicKeyCheck(alg, key)) ?? []),
  );
  return { kind: 'jwks', algorithms, getKey, fastPath };
}

// Imported once per algorithm up front: a broken key fails at start-up, not on the first
// client, and WebCrypto binds each imported key to one algorithm (RS256 != PS256).
async function importForEachAlgorithm(jwk: JsonObject, algorithms: readonly string[]): Promise<Map<string, VerificationKey>> {
  const keysByAlgorithm = new Map<string, VerificationKey>();
  for (const alg of algorithms) {
    const key = await importJWK(asJwk(jwk), alg);
    // jose takes an empty "k"; an empty HMAC key is refused as an empty plain secret is.
    if (isSecretBytes(key) && key.length === 0) throw new Error('its "k" is empty: an HMAC key needs at least one byte');
    keysByAlgorithm.set(alg, key);
  }
  return keysByAlgorithm;
}

// jose imports an oct JWK as its raw bytes, every other key type as a CryptoKey.
function isSecretBytes(key: VerificationKey): key is Uint8Array {
  return key instanceof Uint8Array;
}

/** The CryptoKeys of a map that holds no raw secret (a public JWK's). */
function publicKeysOf(keysByAlgorithm: ReadonlyMap<string, VerificationKey>): Map<string, CryptoKey> {
  const keys = new Map<string, CryptoKey>();
  for (const [alg, key] of keysByAlgorithm) if (!isSecretBytes(key)) keys.set(alg, key);
  return keys;
}

/**
 * algorithmsForJwk, plus jose's JWK Set rule on `key_ops`: a member whose `key_ops` lacks
 * "verify" is never picked (a single JWK is what the operator chose, so it is not filtered).
 */
function setMemberAlgorithms(jwk: JsonObject): string[] {
  const keyOps = jwk.key_ops;
  if (keyOps !== undefined && !(Array.isArray(keyOps) && keyOps.includes('verify'))) return [];
  return algorithmsForJwk(jwk);
}

/**
 * The signature algorithms a JWK may verify: its own `alg` when set (if that is a signature
 * algorithm of its key type), else every algorithm its `kty`/`crv` supports.
 * Empty for keys meant for encryption or of an unsupported type.
 */
function algorithmsForJwk(jwk: JsonObject): string[] {
  if (jwk.use !== undefined && jwk.use !== 'sig') return [];
  const supported = algorithmsForKeyType(jwk.kty, jwk.crv);
  if (jwk.alg === undefined) return jwk.kty === 'AKP' ? [] : supported;
  return typeof jwk.alg === 'string' && supported.includes(jwk.alg) ? [jwk.alg] : [];
}

function algorithmsForKeyType(kty: unknown, crv: unknown): string[] {
  switch (kty) {
    case 'oct':
      return [...HMAC_ALGORITHMS];
    case 'RSA':
      return [...RSA_ALGORITHMS];
    case 'EC': {
      const alg = typeof crv === 'string' ? EC_ALGORITHMS_BY_CURVE[crv] : undefined;
      return alg === undefined ? [] : [alg];
    }
    case 'OKP':
      return crv === 'Ed25519' ? [...ED25519_ALGORITHMS] : [];
    case 'AKP':
      // ML-DSA keys carry their parameter set in `alg`, which is therefore required.
      return [...ML_DSA_ALGORITHMS];
    default:
      return [];
  }
}

function unusableJwkReason(jwk: JsonObject): string {
  if (jwk.use !== undefined && jwk.use !== 'sig') return 'its "use" is not "sig"';
  if (jwk.alg !== undefined) return 'its "alg" is not a signature algorithm for its key type';
  return 'its "kty"/"crv" is not supported for signatures';
}

const MIN_RSA_MODULUS_BITS = 2048;

// jose refuses RSA keys under 2048 bits only when a token arrives; checking here makes
// a short key a start-up error instead of a 401 for every client.
function assertRsaModulusLongEnough(jwk: JsonObject): void {
  if (jwk.kty !== 'RSA' || typeof jwk.n !== 'string') return;
  const bits = bitLength(Buffer.from(jwk.n, 'base64url'));
  if (bits < MIN_RSA_MODULUS_BITS) {
    throw new Error(`RSA key is ${bits} bits; at least ${MIN_RSA_MODULUS_BITS} are required`);
  }
}

function bitLength(bigEndian: Uint8Array): number {
  const firstNonZero = bigEndian.findIndex((byte) => byte !== 0);
  if (firstNonZero === -1) return 0;
  const leadingByte = bigEndian[firstNonZero] ?? 0;
  return (bigEndian.length - firstNonZero - 1) * 8 + (32 - Math.clz32(leadingByte));
}

/** The public half of an asymmetric JWK; a symmetric (oct) JWK is returned unchanged. */
function publicPart(jwk: JsonObject): JsonObject {
  if (jwk.kty === 'oct') return jwk;
  const isPrivate = PRIVATE_JWK_MEMBERS.some((member) => member in jwk);
  if (!isPrivate) return jwk;
  const copy: JsonObject = { ...jwk };
  for (const member of PRIVATE_JWK_MEMBERS) delete copy[member];
  // A private key's key_ops say "sign"; the public half is only ever used to verify.
  delete copy.key_ops;
  return copy;
}

// jose validates every member itself (and reports what is wrong), so the parsed object is
// handed over as a JWK without re-checking each field here.
function asJwk(jwk: JsonObject): JWK {
  return jwk as JWK;
}

function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function unique<T>(values: readonly T[]): T[] {
  return [...new Set(values)];
}

// jose's and WebCrypto's messages describe the key's structure, never its values.
function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
