// The public-key fast path (src/auth/public-key-fast-path.ts) may only ever accept what jose
// accepts, with the same claims. As for the HMAC fast path, jose is the oracle: generated
// tokens, good and bad, signed with the right key, the wrong one, or damaged on the way, go
// to both, and every acceptance by the fast path must be an acceptance by jose.
import { constants, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import fc from 'fast-check';
import { jwtVerify, type JWTVerifyOptions } from 'jose';
import { describe, expect, it } from 'vitest';
import { createAuthenticator } from '../src/auth/index.js';
import { loadVerificationKeys, MultipleMatchingKeys, type KeySource } from '../src/auth/keys.js';

const NOW = 1_700_000_000;
const b64 = (bytes: Uint8Array | string): string => Buffer.from(bytes).toString('base64url');

interface Pair {
  readonly privateKey: KeyObject;
  readonly publicJwk: Record<string, unknown>;
}

function pair(type: 'rsa' | 'ec' | 'ed25519', curve?: string): Pair {
  const made =
    type === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : type === 'ec'
        ? generateKeyPairSync('ec', { namedCurve: curve ?? 'P-256' })
        : generateKeyPairSync('ed25519');
  return { privateKey: made.privateKey, publicJwk: made.publicKey.export({ format: 'jwk' }) as Record<string, unknown> };
}

const RSA = pair('rsa');
const OTHER_RSA = pair('rsa');
const P256 = pair('ec', 'P-256');
const P384 = pair('ec', 'P-384');
const P521 = pair('ec', 'P-521');
const ED = pair('ed25519');

/** A JWS signature over `input` as `alg` defines it, with whatever key is given (right or wrong). */
function signature(alg: string, input: string, key: KeyObject): string {
  const data = Buffer.from(input);
  const hash = `sha${alg.slice(2) || '256'}`;
  try {
    if (alg.startsWith('RS')) return b64(sign(hash, data, key));
    if (alg.startsWith('PS')) return b64(sign(hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(alg.slice(2)) / 8 }));
    if (alg.startsWith('ES')) return b64(sign(hash, data, { key, dsaEncoding: 'ieee-p1363' }));
    if (alg === 'EdDSA' || alg === 'Ed25519') return b64(sign(null, data, key));
  } catch {
    // a key of another type: no signature it could make
  }
  return b64('not a signature');
}

function token(header: unknown, payload: Uint8Array | string, alg: string, key: KeyObject): string {
  const input = `${b64(JSON.stringify(header))}.${b64(payload)}`;
  return `${input}.${signature(alg, input, key)}`;
}

type JoseVerdict = { ok: true; payload: unknown } | { ok: false; error: string };

async function joseVerdict(keys: KeySource, text: string): Promise<JoseVerdict> {
  const options: JWTVerifyOptions = { algorithms: [...keys.algorithms], clockTolerance: 0, currentDate: new Date(NOW * 1000) };
  try {
    return { ok: true, payload: (await jwtVerify(text, keys.getKey, options)).payload };
  } catch (error) {
    if (!(error instanceof MultipleMatchingKeys)) return { ok: false, error: String(error) };
    for (const candidate of error.candidates) {
      try {
        return { ok: true, payload: (await jwtVerify(text, candidate, options)).payload };
      } catch {
        // the next candidate
      }
    }
    return { ok: false, error: String(error) };
  }
}

const timeArb = fc.oneof(fc.integer({ min: NOW - 3, max: NOW + 3 }), fc.constantFrom('soon', null, NOW + 0.5));
const payloadArb = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .record(
        {
          mode: fc.constantFrom('r', 'w', 'rw'),
          channel: fc.string({ maxLength: 6 }),
          exp: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: NOW + 1, max: NOW + 9999 }) }, { weight: 1, arbitrary: timeArb }),
          nbf: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: NOW - 9999, max: NOW }) }, { weight: 1, arbitrary: timeArb }),
          extra: fc.jsonValue({ maxDepth: 1 }),
        },
        { requiredKeys: [] },
      )
      .map((c) => JSON.stringify(c)),
  },
  { weight: 1, arbitrary: fc.constantFrom('', '[]', '{"mode":"r"', '\uFEFF{"mode":"r"}') },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 8 }).map((bytes) => Uint8Array.from([0x7b, ...bytes, 0x7d])) },
);
const damageArb = fc.oneof(
  { weight: 8, arbitrary: fc.constant((t: string) => t) },
  {
    weight: 4,
    arbitrary: fc.tuple(fc.nat(), fc.constantFrom('=', ' ', '+', '/', '.', 'A', 'B', '_', '-', '%', '')).map(
      ([at, ch]) =>
        (t: string) => {
          const i = at % (t.length + 1);
          return t.slice(0, i) + ch + t.slice(i + 1);
        },
    ),
  },
  // The signature's last character changed: unused low bits, or a real difference.
  { weight: 2, arbitrary: fc.constantFrom('A', 'B', 'C', 'D', 'E', 'F', 'Q', 'g', 'w', '_').map((ch) => (t: string) => `${t.slice(0, -1)}${ch}`) },
  { weight: 1, arbitrary: fc.constantFrom((t: string) => `${t}=`, (t: string) => `${t}.`, (t: string) => t.slice(0, -1), (t: string) => `${t}A`) },
);

const CASES: readonly [string, Pair, Record<string, unknown>, readonly string[]][] = [
  ['an RSA key (no alg: every RS and PS algorithm)', RSA, {}, ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']],
  ['an RSA key limited to PS256', RSA, { alg: 'PS256' }, ['PS256']],
  ['a P-256 key', P256, {}, ['ES256']],
  ['a P-384 key', P384, {}, ['ES384']],
  ['a P-521 key', P521, {}, ['ES512']],
  ['an Ed25519 key', ED, {}, ['EdDSA', 'Ed25519']],
];

describe('public-key fast path against jose', () => {
  it.each(CASES)("never accepts a token jose refuses, and accepts with jose's claims: %s", async (_name, keyPair, extra, algorithms) => {
    const keys = await loadVerificationKeys(JSON.stringify({ ...keyPair.publicJwk, ...extra }), false);
    const fast = keys.fastPath;
    if (!fast) throw new Error('a public key should get the fast path');
    const others = [OTHER_RSA, P256, P384, ED].filter((p) => p !== keyPair);
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...algorithms) }, { weight: 1, arbitrary: fc.constantFrom('RS256', 'ES256', 'PS512', 'EdDSA', 'HS256', 'none') }),
        fc.constantFrom(undefined, 'JWT'),
        payloadArb,
        fc.nat(5),
        fc.constantFrom(...others),
        damageArb,
        async (alg, typ, payload, keyPick, other, damage) => {
          const text = damage(token({ alg, ...(typ ? { typ } : {}) }, payload, alg, keyPick === 0 ? other.privateKey : keyPair.privateKey));
          const claims = fast(text, NOW);
          if (claims === undefined) return;
          accepted++;
          expect(await joseVerdict(keys, text)).toEqual({ ok: true, payload: claims });
        },
      ),
      { numRuns: 400, seed: 20261203 },
    );
    expect(accepted).toBeGreaterThan(40);
  });

  it.each(CASES.flatMap(([name, keyPair, extra, algorithms]) => algorithms.map((alg) => [`${alg} with ${name}`, keyPair, extra, alg] as const)))(
    'accepts the usual token: %s',
    async (_name, keyPair, extra, alg) => {
      const keys = await loadVerificationKeys(JSON.stringify({ ...keyPair.publicJwk, ...extra }), false);
      const text = token({ alg, typ: 'JWT' }, JSON.stringify({ mode: 'r', exp: NOW + 60 }), alg, keyPair.privateKey);
      expect(keys.fastPath?.(text, NOW)).toEqual({ mode: 'r', exp: NOW + 60 });
      expect(await joseVerdict(keys, text)).toMatchObject({ ok: true });
    },
  );

  it.each<[string, () => string]>([
    ['a signature by another key', () => token({ alg: 'RS256' }, '{"mode":"r"}', 'RS256', OTHER_RSA.privateKey)],
    ['an algorithm the key does not have', () => token({ alg: 'ES256' }, '{"mode":"r"}', 'ES256', P256.privateKey)],
    ['HS256 signed with the public JWK as a secret (algorithm confusion)', () => {
      const input = `${b64('{"alg":"HS256"}')}.${b64('{"mode":"rw"}')}`;
      return `${input}.${b64(new Uint8Array(32))}`;
    }],
    ['alg none', () => `${b64('{"alg":"none"}')}.${b64('{"mode":"rw"}')}.`],
    ['an expired token', () => token({ alg: 'RS256' }, `{"mode":"r","exp":${NOW}}`, 'RS256', RSA.privateKey)],
    ['a padded signature', () => `${token({ alg: 'RS256' }, '{"mode":"r"}', 'RS256', RSA.privateKey)}=`],
  ])('leaves %s to jose', async (_name, make) => {
    const keys = await loadVerificationKeys(JSON.stringify(RSA.publicJwk), false);
    const text = make();
    expect(keys.fastPath?.(text, NOW)).toBeUndefined();
    expect(await joseVerdict(keys, text)).toMatchObject({ ok: false });
  });

  it('takes nothing for a JWK whose key_ops leave out "verify", which jose refuses', async () => {
    const keys = await loadVerificationKeys(JSON.stringify({ ...RSA.publicJwk, alg: 'RS256', key_ops: [] }), false);
    const text = token({ alg: 'RS256' }, '{"mode":"r"}', 'RS256', RSA.privateKey);
    expect(keys.fastPath?.(text, NOW)).toBeUndefined();
    expect(await joseVerdict(keys, text)).toMatchObject({ ok: false });
  });

  it('lets authorize answer an RS256 token without a Promise, so uWS upgrades within its callback', async () => {
    const auth = await createAuthenticator({ jwtSecret: JSON.stringify({ ...RSA.publicJwk, alg: 'RS256' }), jwtSecretIsBase64: false });
    const good = token({ alg: 'RS256', typ: 'JWT' }, `{"mode":"rw","channel":"chat","exp":${NOW + 60}}`, 'RS256', RSA.privateKey);
    const known = auth.authorize(`/chat/${good}`, NOW);
    expect(known).not.toBeInstanceOf(Promise);
    expect(known).toMatchObject({ ok: true, grant: { channels: ['chat'], mode: 'rw' } });
    const forged = auth.authorize(`/chat/${token({ alg: 'RS256' }, '{"mode":"rw"}', 'RS256', OTHER_RSA.privateKey)}`, NOW);
    expect(forged).toBeInstanceOf(Promise);
    expect(await forged).toEqual({ ok: false, status: 401, reason: 'Invalid token signature' });
  });
});

// A JWK Set of several key types: the fast path picks by kid with the set's own rule.
describe('public-key fast path of a JWK Set', () => {
  const SECRET = 'an-oct-secret-that-is-long-enough-for-hs';
  const SET = JSON.stringify({
    keys: [
      { ...RSA.publicJwk, kid: 'r' },
      { ...P256.publicJwk, kid: 'e' },
      { ...ED.publicJwk, kid: 'd' },
      { ...OTHER_RSA.publicJwk, kid: 'r2', alg: 'RS256' },
      { kty: 'oct', kid: 'o', k: b64(SECRET) },
    ],
  });
  const PRIVATE_OF: Record<string, KeyObject> = { r: RSA.privateKey, e: P256.privateKey, d: ED.privateKey, r2: OTHER_RSA.privateKey };

  it("never accepts a token jose refuses, and accepts with jose's claims", async () => {
    const keys = await loadVerificationKeys(SET, false);
    const fast = keys.fastPath;
    if (!fast) throw new Error('a set should get the fast path');
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(
        // Mostly a member's own alg and kid (or no kid), signed by it; sometimes any mix.
        fc.constantFrom(['r', 'RS256'], ['r', 'PS384'], ['e', 'ES256'], ['d', 'EdDSA'], ['r2', 'RS256']),
        fc.oneof({ weight: 4, arbitrary: fc.constantFrom('own', 'none') }, { weight: 1, arbitrary: fc.constantFrom('r', 'e', 'd', 'r2', 'o', 'x', 7) }),
        fc.oneof({ weight: 4, arbitrary: fc.constant('own') }, { weight: 1, arbitrary: fc.constantFrom('r', 'e', 'd', 'r2') }),
        fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom('RS256', 'ES256', 'EdDSA', 'ES384', 'HS256') }),
        payloadArb,
        damageArb,
        async ([member, ownAlg], kidPick, signerPick, otherAlg, payload, damage) => {
          const alg = otherAlg ?? ownAlg;
          const kid = kidPick === 'own' ? member : kidPick === 'none' ? undefined : kidPick;
          const signer = signerPick === 'own' ? member : signerPick;
          const header = { alg, ...(kid === undefined ? {} : { kid }) };
          const text = damage(token(header, payload, alg, PRIVATE_OF[signer] ?? RSA.privateKey));
          const claims = fast(text, NOW);
          if (claims === undefined) return;
          accepted++;
          expect(await joseVerdict(keys, text)).toEqual({ ok: true, payload: claims });
        },
      ),
      { numRuns: 600, seed: 20261204 },
    );
    expect(accepted).toBeGreaterThan(40);
  });
});
