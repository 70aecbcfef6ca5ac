// The HMAC fast path (src/auth/hmac-fast-path.ts) may only ever accept what jose accepts,
// with the same claims. jose is the oracle here: generated tokens, good and bad, go to
// both, and every acceptance by the fast path must be an acceptance by jose.

import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { jwtVerify } from 'jose';
import type { JWTVerifyOptions } from 'jose';
import { describe, expect, it } from 'vitest';
import { createAuthenticator } from '../src/auth/index.js';
import { loadVerificationKeys, MultipleMatchingKeys } from '../src/auth/keys.js';
import type { KeySource } from '../src/auth/keys.js';

const SECRET = 'reallyreallyreallyreallyverysafe';
const NOW = 1_700_000_000;
const HASH: Record<string, string> = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };

const b64 = (bytes: Uint8Array | string): string => Buffer.from(bytes).toString('base64url');

/** header.payload.signature with an HMAC over whatever header bytes were given. */
function hmacToken(headerJson: string, payload: Uint8Array | string, alg = 'HS256', secret = SECRET): string {
  const input = `${b64(headerJson)}.${b64(payload)}`;
  const sig = createHmac(HASH[alg] ?? 'sha256', secret).update(input).digest();
  return `${input}.${b64(sig)}`;
}

type JoseVerdict = { ok: true; payload: unknown } | { ok: false; error: string };

/**
 * jose's verdict, with a JWK Set's several matching keys each tried in turn as verify.ts
 * does (jose leaves that case to the caller).
 */
async function joseVerdict(keys: KeySource, token: string): Promise<JoseVerdict> {
  const options: JWTVerifyOptions = { algorithms: [...keys.algorithms], clockTolerance: 0, currentDate: new Date(NOW * 1000) };
  try {
    const { payload } = await jwtVerify(token, keys.getKey, options);
    return { ok: true, payload };
  } catch (error) {
    if (!(error instanceof MultipleMatchingKeys)) return { ok: false, error: String(error) };
    for (const candidate of error.candidates) {
      try {
        const { payload } = await jwtVerify(token, candidate, options);
        return { ok: true, payload };
      } catch {
        // the next candidate
      }
    }
    return { ok: false, error: String(error) };
  }
}

async function fastPathOf(secret: string): Promise<{ keys: KeySource; fast: NonNullable<KeySource['fastPath']> }> {
  const keys = await loadVerificationKeys(secret, false);
  if (!keys.fastPath) throw new Error('an HMAC secret should get the fast path');
  return { keys, fast: keys.fastPath };
}

/** `arb`'s value one time in five, else undefined. */
const rarely = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
  fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });

// Claims around the edges jose checks: times either side of NOW, wrong types, odd values.
const timeArb = fc.oneof(
  fc.integer({ min: NOW - 3, max: NOW + 3 }),
  fc.constantFrom(NOW + 0.5, NOW - 0.5, 0, -1, 1e300),
  fc.constantFrom('soon', null, true, [NOW], { t: NOW }),
);
const claimsArb = fc.record(
  {
    mode: fc.constantFrom('r', 'w', 'rw', 'x', 1),
    channel: fc.string({ maxLength: 6 }),
    exp: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: NOW + 1, max: NOW + 9999 }) }, { weight: 2, arbitrary: timeArb }),
    nbf: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: NOW - 9999, max: NOW }) }, { weight: 2, arbitrary: timeArb }),
    iat: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: NOW - 9999, max: NOW + 9999 }) }, { weight: 2, arbitrary: timeArb }),
    extra: fc.jsonValue({ maxDepth: 2 }),
  },
  { requiredKeys: [] },
);
const headerArb = fc
  .tuple(
    fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom('HS256', 'HS384', 'HS512') },
      { weight: 1, arbitrary: fc.constantFrom('RS256', 'none', 'hs256', '', 7, null) },
    ),
    fc.record({ typ: fc.constantFrom('JWT', 'jwt', 'at+jwt'), kid: fc.string({ maxLength: 4 }) }, { requiredKeys: [] }),
    // Rarely: the RFC 7797 members the fast path leaves to jose.
    rarely(fc.record({ crit: fc.constantFrom(['b64'], [], ['exp'], 'b64'), b64: fc.boolean() }, { requiredKeys: [] })),
  )
  .map(([alg, common, rare]) => ({ alg, ...common, ...(rare ?? {}) }));
// The payload: usually the claims object, sometimes something that is not an object or not UTF-8.
const payloadArb = fc.oneof(
  { weight: 6, arbitrary: claimsArb.map((c) => JSON.stringify(c)) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }).map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: fc.constantFrom('', 'nope', '{"mode":"r"', '\uFEFF{"mode":"r"}') },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 12 }).map((bytes) => Uint8Array.from([0x7b, ...bytes, 0x7d])) },
);
// What can happen to a token on its way: nothing, or damage of the kinds jose and Node decode differently.
const damageArb = fc.oneof(
  { weight: 10, arbitrary: fc.constant((t: string) => t) },
  {
    weight: 4,
    arbitrary: fc.tuple(fc.nat(), fc.constantFrom('=', ' ', '+', '/', '.', 'A', '_', '%', '\n', '')).map(
      ([at, ch]) =>
        (t: string) => {
          const i = at % (t.length + 1);
          return t.slice(0, i) + ch + t.slice(i + 1);
        },
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom((t: string) => `${t}=`, (t: string) => `${t}.`, (t: string) => t.slice(0, -1), (t: string) => `${t}A`) },
);

describe('HMAC fast path against jose', () => {
  it('never accepts a token jose refuses, and accepts with jose\'s claims', async () => {
    const { keys, fast } = await fastPathOf(SECRET);
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(headerArb, payloadArb, rarely(fc.constantFrom('HS256', 'HS384', 'HS512')), fc.nat(4), damageArb, async (header, payload, otherAlg, keyPick, damage) => {
        // Mostly signed as the header says with the right key; sometimes not.
        const signAlg = otherAlg ?? (typeof header.alg === 'string' ? header.alg : 'HS256');
        const token = damage(hmacToken(JSON.stringify(header), payload, signAlg, keyPick === 0 ? 'not-the-secret' : SECRET));
        const claims = fast(token, NOW);
        if (claims === undefined) return;
        accepted++;
        const verdict = await joseVerdict(keys, token);
        expect(verdict).toEqual({ ok: true, payload: claims });
      }),
      { numRuns: 3000, seed: 20261123 },
    );
    // The property above would pass vacuously if the fast path never accepted anything.
    expect(accepted).toBeGreaterThan(100);
  });

  it('accepts the usual tokens of every HS algorithm, so handshakes take the fast path', async () => {
    const { keys, fast } = await fastPathOf(SECRET);
    for (const alg of ['HS256', 'HS384', 'HS512']) {
      const token = hmacToken(JSON.stringify({ alg, typ: 'JWT' }), JSON.stringify({ mode: 'rw', channels: ['a'], exp: NOW + 60, nbf: NOW, iat: NOW }), alg);
      expect(fast(token, NOW)).toEqual({ mode: 'rw', channels: ['a'], exp: NOW + 60, nbf: NOW, iat: NOW });
      expect(await joseVerdict(keys, token)).toMatchObject({ ok: true });
    }
  });

  it.each<[string, string]>([
    ['a wrong signature', hmacToken('{"alg":"HS256"}', '{"mode":"r"}', 'HS256', 'other')],
    ['exp equal to now', hmacToken('{"alg":"HS256"}', `{"mode":"r","exp":${NOW}}`)],
    ['nbf after now', hmacToken('{"alg":"HS256"}', `{"mode":"r","nbf":${NOW + 1}}`)],
    ['iat that is not a number', hmacToken('{"alg":"HS256"}', '{"mode":"r","iat":"now"}')],
    ['alg none', `${b64('{"alg":"none"}')}.${b64('{"mode":"rw"}')}.`],
    ['a crit header (left to jose)', hmacToken('{"alg":"HS256","crit":["b64"],"b64":true}', '{"mode":"r"}')],
    ['a padded signature (left to jose)', `${hmacToken('{"alg":"HS256"}', '{"mode":"r"}')}=`],
    ['a payload that is an array', hmacToken('{"alg":"HS256"}', '[{"mode":"r"}]')],
    ['a payload that is not UTF-8', hmacToken('{"alg":"HS256"}', Uint8Array.from([0x7b, 0xff, 0x7d]))],
  ])('leaves %s to jose', async (_name, token) => {
    const { fast } = await fastPathOf(SECRET);
    expect(fast(token, NOW)).toBeUndefined();
  });

  // The HMAC is computed from one-shot digests (RFC 2104 by hand): it must equal createHmac's
  // for keys shorter than, equal to and longer than the hash's block (64 or 128 bytes), and
  // for signing inputs longer than the buffer it starts with.
  it.each(['HS256', 'HS384', 'HS512'])('computes the same HMAC as createHmac for %s, any key length', async (alg) => {
    for (const length of [1, 31, 32, 63, 64, 65, 127, 128, 129, 300]) {
      const secret = 'k'.repeat(length - 1) + String(length % 10);
      const { fast } = await fastPathOf(secret);
      for (const payload of ['{"mode":"r"}', JSON.stringify({ mode: 'r', pad: 'x'.repeat(3000) })]) {
        const token = hmacToken(JSON.stringify({ alg }), payload, alg, secret);
        expect(fast(token, NOW)).toEqual(JSON.parse(payload));
        // One byte of the key different: refused.
        expect(fast(hmacToken(JSON.stringify({ alg }), payload, alg, `${secret.slice(0, -1)}#`), NOW)).toBeUndefined();
      }
    }
  });

  it('is there for an oct JWK, and never takes an HMAC token for an asymmetric key', async () => {
    const oct = await loadVerificationKeys(JSON.stringify({ kty: 'oct', k: b64(SECRET), alg: 'HS384' }), false);
    const token384 = hmacToken('{"alg":"HS384"}', '{"mode":"r"}', 'HS384');
    expect(oct.fastPath?.(token384, NOW)).toEqual({ mode: 'r' });
    // The JWK names HS384 only: an HS256 token is jose's to refuse.
    expect(oct.fastPath?.(hmacToken('{"alg":"HS256"}', '{"mode":"r"}'), NOW)).toBeUndefined();
    const ec = await loadVerificationKeys(
      JSON.stringify({ kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0' }),
      false,
    );
    // Its fast path is the public-key one (test/public-key-fast-path.unit.test.ts): no HS token there.
    for (const alg of ['HS256', 'HS384', 'HS512']) {
      expect(ec.fastPath?.(hmacToken(JSON.stringify({ alg }), '{"mode":"r"}', alg), NOW)).toBeUndefined();
    }
  });

  it('lets authorize answer fast-path tokens without a Promise, so uWS upgrades within its callback', async () => {
    const auth = await createAuthenticator({ jwtSecret: SECRET, jwtSecretIsBase64: false });
    const good = hmacToken('{"alg":"HS256","typ":"JWT"}', `{"mode":"r","exp":${NOW + 60}}`);
    const known = auth.authorize(`/chat/${good}`, NOW);
    expect(known).not.toBeInstanceOf(Promise);
    expect(known).toMatchObject({ ok: true, grant: { channels: ['chat'], mode: 'r' } });
    // A malformed path is decided at once too; a bad signature waits for jose's verdict.
    expect(auth.authorize('/a/b/c', NOW)).toMatchObject({ ok: false, status: 400 });
    const forged = auth.authorize(`/chat/${hmacToken('{"alg":"HS256"}', '{"mode":"rw"}', 'HS256', 'other')}`, NOW);
    expect(forged).toBeInstanceOf(Promise);
    expect(await forged).toEqual({ ok: false, status: 401, reason: 'Invalid token signature' });
  });
});

// A JWK Set with oct keys: the fast path picks the key by the token's kid, by the same rule
// as the set's resolver, and must still accept only what jose accepts.
describe('HMAC fast path of a JWK Set with oct keys', () => {
  const SECOND = 'the-second-oct-secret-of-the-set';
  const THIRD = 'a-third-oct-secret-without-a-kid';
  const EC_PUBLIC = { kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0' };
  const SET = JSON.stringify({
    keys: [
      { kty: 'oct', kid: 'a', k: b64(SECRET) },
      { kty: 'oct', kid: 'b', alg: 'HS384', k: b64(SECOND) },
      { kty: 'oct', k: b64(THIRD) },
      // An EC key that shares a kid with an oct key: still never an HMAC key.
      { ...EC_PUBLIC, kid: 'a' },
    ],
  });
  const SECRET_OF_KID: Record<string, string> = { a: SECRET, b: SECOND };
  const setHeaderArb = fc
    .tuple(
      fc.oneof({ weight: 6, arbitrary: fc.constantFrom('HS256', 'HS384', 'HS512') }, { weight: 1, arbitrary: fc.constantFrom('ES256', 'none') }),
      fc.constantFrom(undefined, 'a', 'b', 'c', '', 7, null, ['a']),
      fc.constantFrom(undefined, 'JWT'),
    )
    .map(([alg, kid, typ]) => ({ alg, ...(kid === undefined ? {} : { kid }), ...(typ === undefined ? {} : { typ }) }));

  it("never accepts a token jose refuses, and accepts with jose's claims", async () => {
    const keys = await loadVerificationKeys(SET, false);
    const fast = keys.fastPath;
    if (!fast) throw new Error('a set with oct keys should get the fast path');
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(setHeaderArb, payloadArb, fc.nat(5), fc.constantFrom(SECRET, SECOND, THIRD, 'not-in-the-set'), rarely(fc.constantFrom('HS256', 'HS384', 'HS512')), damageArb, async (header, payload, keyPick, anySecret, otherAlg, damage) => {
        // Mostly the secret the kid names (any member's without a kid); sometimes any secret.
        const named = 'kid' in header ? SECRET_OF_KID[String(header.kid)] : undefined;
        const secret = keyPick === 0 ? anySecret : (named ?? anySecret);
        const signAlg = otherAlg ?? (header.alg.startsWith('HS') ? header.alg : 'HS256');
        const token = damage(hmacToken(JSON.stringify(header), payload, signAlg, secret));
        const claims = fast(token, NOW);
        if (claims === undefined) return;
        accepted++;
        expect(await joseVerdict(keys, token)).toEqual({ ok: true, payload: claims });
      }),
      { numRuns: 3000, seed: 20261124 },
    );
    expect(accepted).toBeGreaterThan(100);
  });

  it.each<[string, string, string, string | undefined]>([
    ['the kid of its key', '{"alg":"HS256","kid":"a"}', 'HS256', SECRET],
    ['the kid of a key limited to its alg', '{"alg":"HS384","kid":"b"}', 'HS384', SECOND],
    ['no kid, the first key', '{"alg":"HS512"}', 'HS512', SECRET],
    ['no kid, the key without a kid', '{"alg":"HS256"}', 'HS256', THIRD],
    ['no kid, the key limited to HS384', '{"alg":"HS384"}', 'HS384', SECOND],
  ])('accepts a token with %s', async (_name, header, alg, secret) => {
    const keys = await loadVerificationKeys(SET, false);
    const token = hmacToken(header, '{"mode":"r"}', alg, secret);
    expect(keys.fastPath?.(token, NOW)).toEqual({ mode: 'r' });
    expect(await joseVerdict(keys, token)).toMatchObject({ ok: true });
  });

  it.each<[string, string, string, string]>([
    ["another key's kid", '{"alg":"HS256","kid":"b"}', 'HS256', SECOND],
    ['an unknown kid', '{"alg":"HS256","kid":"c"}', 'HS256', SECRET],
    ["an alg the kid's key does not allow", '{"alg":"HS256","kid":"b"}', 'HS256', SECOND],
    ['a kid that is not a string', '{"alg":"HS256","kid":7}', 'HS256', SECRET],
    ['the key without a kid named by a kid', '{"alg":"HS256","kid":""}', 'HS256', THIRD],
    ['a secret of no member', '{"alg":"HS256"}', 'HS256', 'not-in-the-set'],
  ])('leaves a token with %s to jose', async (_name, header, alg, secret) => {
    const keys = await loadVerificationKeys(SET, false);
    const token = hmacToken(header, '{"mode":"r"}', alg, secret);
    expect(keys.fastPath?.(token, NOW)).toBeUndefined();
    expect(await joseVerdict(keys, token)).toMatchObject({ ok: false });
  });

  it('takes no HMAC token for a set without oct keys', async () => {
    const keys = await loadVerificationKeys(JSON.stringify({ keys: [EC_PUBLIC] }), false);
    expect(keys.fastPath?.(hmacToken('{"alg":"HS256"}', '{"mode":"r"}'), NOW)).toBeUndefined();
    expect(keys.fastPath?.(hmacToken('{"alg":"HS256","kid":"a"}', '{"mode":"r"}', 'HS256', JSON.stringify(EC_PUBLIC)), NOW)).toBeUndefined();
  });

  it('lets authorize answer a set oct token without a Promise', async () => {
    const auth = await createAuthenticator({ jwtSecret: SET, jwtSecretIsBase64: false });
    const known = auth.authorize(`/chat/${hmacToken('{"alg":"HS256","kid":"a"}', `{"mode":"rw","exp":${NOW + 60}}`)}`, NOW);
    expect(known).not.toBeInstanceOf(Promise);
    expect(known).toMatchObject({ ok: true, grant: { channels: ['chat'], mode: 'rw' } });
  });
});
