// The cache of verified tokens (src/auth/token-cache.ts) and its use in verify.ts: a hit
// skips the signature and nothing else; what is stored is only ever a verified token.
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { createVerifier, loadVerificationKeys, type AuthResult, type KeySource, type Verifier } from '../src/auth/index.js';
import { createTokenCache } from '../src/auth/token-cache.js';

const NOW = 1_700_000_000;
type Claims = { mode: string; exp?: number; nbf?: number };

describe('token cache', () => {
  it('gives back what was stored for the exact text, and nothing for a text one character off', () => {
    const cache = createTokenCache<Claims>();
    const claims = { mode: 'r' };
    cache.set('aaa.bbb.ccc', claims, NOW);
    expect(cache.get('aaa.bbb.ccc', NOW)).toBe(claims);
    expect(cache.get('aaa.bbb.ccd', NOW)).toBeUndefined();
    expect(cache.get('aaa.bbb.cc', NOW)).toBeUndefined();
  });

  it('serves an entry until its exp, never at or after it, and drops it then', () => {
    const cache = createTokenCache<Claims>();
    cache.set('t', { mode: 'r', exp: NOW + 10 }, NOW);
    expect(cache.get('t', NOW + 9)).toEqual({ mode: 'r', exp: NOW + 10 });
    expect(cache.get('t', NOW + 10)).toBeUndefined();
    expect(cache.size).toBe(0);
    // Gone for good: an earlier clock does not bring it back.
    expect(cache.get('t', NOW)).toBeUndefined();
  });

  it('does not store a token that is already expired', () => {
    const cache = createTokenCache<Claims>();
    cache.set('t', { mode: 'r', exp: NOW }, NOW);
    expect(cache.size).toBe(0);
  });

  it('misses, without forgetting, when the clock is before the nbf it was verified with', () => {
    const cache = createTokenCache<Claims>();
    cache.set('t', { mode: 'r', nbf: NOW }, NOW);
    expect(cache.get('t', NOW - 1)).toBeUndefined();
    expect(cache.get('t', NOW)).toEqual({ mode: 'r', nbf: NOW });
  });

  it('keeps at most maxEntries, dropping the least recently used', () => {
    const cache = createTokenCache<Claims>({ maxEntries: 3 });
    for (const token of ['a', 'b', 'c']) cache.set(token, { mode: 'r' }, NOW);
    expect(cache.get('a', NOW)).toBeDefined(); // a is now the most recently used
    cache.set('d', { mode: 'r' }, NOW);
    expect(cache.size).toBe(3);
    expect(cache.get('b', NOW)).toBeUndefined();
    for (const token of ['a', 'c', 'd']) expect(cache.get(token, NOW)).toBeDefined();
    // Storing a token again replaces it and counts once.
    cache.set('d', { mode: 'w' }, NOW);
    expect(cache.size).toBe(3);
    expect(cache.get('d', NOW)).toEqual({ mode: 'w' });
  });

  it('stays within its bound under churn (each eviction is O(1))', () => {
    const cache = createTokenCache<Claims>({ maxEntries: 1000 });
    const started = performance.now();
    for (let i = 0; i < 100_000; i++) cache.set(`token-${i}`, { mode: 'r' }, NOW);
    expect(cache.size).toBe(1000);
    expect(cache.get('token-99999', NOW)).toBeDefined();
    expect(cache.get('token-98999', NOW)).toBeUndefined();
    // A linear scan per eviction took seconds here; the list takes milliseconds.
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('does not store tokens longer than maxTokenLength', () => {
    const cache = createTokenCache<Claims>({ maxTokenLength: 8 });
    cache.set('123456789', { mode: 'r' }, NOW);
    cache.set('12345678', { mode: 'r' }, NOW);
    expect(cache.size).toBe(1);
  });

  it('sweeps expired entries out on a later insert', () => {
    const cache = createTokenCache<Claims>({ sweepEverySeconds: 60 });
    cache.set('soon', { mode: 'r', exp: NOW + 5 }, NOW);
    cache.set('later', { mode: 'r', exp: NOW + 500 }, NOW);
    cache.set('never', { mode: 'r' }, NOW);
    cache.set('other', { mode: 'r' }, NOW + 61);
    expect(cache.size).toBe(3);
    expect(cache.get('later', NOW + 61)).toBeDefined();
  });

  it('forgets everything on clear()', () => {
    const cache = createTokenCache<Claims>();
    cache.set('a', { mode: 'r' }, NOW);
    cache.set('b', { mode: 'r' }, NOW);
    cache.clear();
    expect(cache.size).toBe(0);
    expect(cache.get('a', NOW)).toBeUndefined();
    cache.set('c', { mode: 'r' }, NOW);
    expect(cache.get('c', NOW)).toBeDefined();
  });
});

// Through verify.ts, with RS256 tokens and keys whose fast path is taken away: every
// verification then goes to jose, which is asynchronous, so a hit is visible as an answer
// that is not a Promise (decided without verifying the signature).
describe('verified tokens in the handshake check', () => {
  let privateKey: CryptoKey;
  let otherPrivateKey: CryptoKey;
  let publicJwk: string;
  let otherPublicJwk: string;

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256');
    const other = await generateKeyPair('RS256');
    privateKey = pair.privateKey;
    otherPrivateKey = other.privateKey;
    publicJwk = JSON.stringify(await exportJWK(pair.publicKey));
    otherPublicJwk = JSON.stringify(await exportJWK(other.publicKey));
  });

  const now = (): number => Math.floor(Date.now() / 1000);
  const sign = (claims: Record<string, unknown>, key: CryptoKey = privateKey): Promise<string> =>
    new SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: 'JWT' }).sign(key);

  /** Keys that only jose verifies with (no synchronous fast path). */
  async function joseOnly(jwk: string): Promise<KeySource> {
    const { fastPath: _unused, ...keys } = await loadVerificationKeys(jwk, false);
    return keys;
  }

  async function verifierFor(jwk: string): Promise<Verifier> {
    const verifier = createVerifier();
    verifier.useKeys(await joseOnly(jwk));
    return verifier;
  }

  /** Resolves an answer, and says whether it came at once (a cache hit) or from jose. */
  async function answer(result: AuthResult | Promise<AuthResult>): Promise<{ atOnce: boolean; result: AuthResult }> {
    return { atOnce: !(result instanceof Promise), result: await result };
  }

  it('verifies a token once: the same token again is answered without jose', async () => {
    const verifier = await verifierFor(publicJwk);
    const token = await sign({ mode: 'r', channel: 'chat', exp: now() + 300 });
    expect(await answer(verifier.authorize(`/chat/${token}`))).toMatchObject({ atOnce: false, result: { ok: true } });
    expect(await answer(verifier.authorize(`/chat/${token}`))).toMatchObject({ atOnce: true, result: { ok: true, grant: { channels: ['chat'] } } });
  });

  it('still runs the channel rules and claims checks on a hit', async () => {
    const verifier = await verifierFor(publicJwk);
    const token = await sign({ mode: 'rw', channels: ['a', 'b'], exp: now() + 300 });
    await verifier.authorize(`/a/${token}`);
    expect(await answer(verifier.authorize(`/b/${token}`))).toMatchObject({ atOnce: true, result: { ok: true, grant: { channels: ['b'] } } });
    expect(await answer(verifier.authorize(`/c/${token}`))).toEqual({ atOnce: true, result: { ok: false, status: 403, reason: 'No allowed channels' } });
    expect(await answer(verifier.authorize(`/${token}`))).toMatchObject({ atOnce: true, result: { ok: true, grant: { channels: ['a', 'b'] } } });
    // A verified token whose claims fail is refused every time, from the cache too.
    const noMode = await sign({ channel: 'a', exp: now() + 300 });
    expect(await verifier.authorize(`/a/${noMode}`)).toEqual({ ok: false, status: 401, reason: 'Missing mode' });
    expect(await verifier.authorize(`/a/${noMode}`)).toEqual({ ok: false, status: 401, reason: 'Missing mode' });
  });

  it('never stores a failure: a forged or tampered token is verified, and refused, every time', async () => {
    const verifier = await verifierFor(publicJwk);
    const good = await sign({ mode: 'r', channel: 'chat', exp: now() + 300 });
    await verifier.authorize(`/chat/${good}`);
    const forged = await sign({ mode: 'rw', channel: 'chat', exp: now() + 300 }, otherPrivateKey);
    // Same header and payload as the cached token, another signature.
    const tampered = `${good.slice(0, good.lastIndexOf('.'))}.${forged.slice(forged.lastIndexOf('.') + 1)}`;
    // The cached token with one character of its payload changed: its signature no longer fits.
    const [header, payload, signature] = good.split('.') as [string, string, string];
    const edited = `${header}.${payload.slice(0, -2)}${payload.at(-2) === 'A' ? 'B' : 'A'}${payload.at(-1)}.${signature}`;
    for (const bad of [forged, tampered, edited]) {
      for (let attempt = 0; attempt < 2; attempt++) {
        const { atOnce, result } = await answer(verifier.authorize(`/chat/${bad}`));
        expect(atOnce).toBe(false);
        expect(result).toMatchObject({ ok: false, status: 401 });
      }
    }
  });

  it('does not store an expired token, and refuses a cached one once its exp has passed', async () => {
    const verifier = await verifierFor(publicJwk);
    const expired = await sign({ mode: 'r', channel: 'chat', exp: now() - 1 });
    for (let attempt = 0; attempt < 2; attempt++) {
      expect(await answer(verifier.authorize(`/chat/${expired}`))).toEqual({ atOnce: false, result: { ok: false, status: 401, reason: 'Token expired' } });
    }
    const exp = now() + 60;
    const token = await sign({ mode: 'r', channel: 'chat', exp });
    expect(await verifier.authorize(`/chat/${token}`)).toMatchObject({ ok: true });
    expect(await answer(verifier.authorize(`/chat/${token}`, exp - 1))).toMatchObject({ atOnce: true, result: { ok: true } });
    expect(await verifier.authorize(`/chat/${token}`, exp)).toEqual({ ok: false, status: 401, reason: 'Token expired' });
    expect(await verifier.authorize(`/chat/${token}`, exp + 3600)).toEqual({ ok: false, status: 401, reason: 'Token expired' });
  });

  it('forgets every token when the keys change', async () => {
    const verifier = await verifierFor(publicJwk);
    const token = await sign({ mode: 'r', channel: 'chat', exp: now() + 300 });
    await verifier.authorize(`/chat/${token}`);
    verifier.useKeys(await joseOnly(otherPublicJwk));
    expect(await answer(verifier.authorize(`/chat/${token}`))).toEqual({ atOnce: false, result: { ok: false, status: 401, reason: 'Invalid token signature' } });
  });

  it('does not store a verdict reached under keys that were replaced meanwhile', async () => {
    const verifier = await verifierFor(publicJwk);
    const token = await sign({ mode: 'r', channel: 'chat', exp: now() + 300 });
    const pending = verifier.authorize(`/chat/${token}`);
    verifier.useKeys(await joseOnly(otherPublicJwk));
    expect(await pending).toMatchObject({ ok: true });
    expect(await verifier.authorize(`/chat/${token}`)).toMatchObject({ ok: false, status: 401 });
  });

  it('answers a hit before the fast path: a cached token is not checked again', async () => {
    const keys = await loadVerificationKeys(publicJwk, false);
    let checked = 0;
    const fastPath = keys.fastPath;
    if (!fastPath) throw new Error('an RSA key should get the fast path');
    const verifier = createVerifier();
    verifier.useKeys({ ...keys, fastPath: (token, nowSeconds) => (checked++, fastPath(token, nowSeconds)) });
    const token = await sign({ mode: 'r', channel: 'chat', exp: now() + 300 });
    for (let attempt = 0; attempt < 3; attempt++) expect(verifier.authorize(`/chat/${token}`)).toMatchObject({ ok: true });
    expect(checked).toBe(1);
  });

  it('lets concurrent handshakes with one token share one verification', async () => {
    const verifier = await verifierFor(publicJwk);
    const token = await sign({ mode: 'r', channel: 'chat', exp: now() + 300 });
    const answers = await Promise.all(Array.from({ length: 5 }, () => verifier.authorize(`/chat/${token}`)));
    for (const result of answers) expect(result).toMatchObject({ ok: true, grant: { channels: ['chat'] } });
    expect(verifier.authorize(`/chat/${token}`)).not.toBeInstanceOf(Promise);
  });
});
