// Unit tests for the handshake check (PROTOCOL.md §1). No network, no database:
// tokens are minted here with jose.

import { beforeAll, describe, expect, it } from 'vitest';
import { CompactSign, FlattenedSign, SignJWT, exportJWK, exportSPKI, generateKeyPair, importJWK } from 'jose';
import type { CryptoKey, JWK, JWTPayload } from 'jose';
import { createAuthenticator, loadVerificationKeys, loggableChannel, parseSocketPath } from '../src/auth/index.js';
import { readSocketRequest } from '../src/auth/token-source.js';
import type { AuthResult, Authenticator } from '../src/auth/index.js';

const SECRET = 'reallyreallyreallyreallyverysafe';
const SECRET_BYTES = new TextEncoder().encode(SECRET);
const NOW = 1_700_000_000;

interface SignOptions {
  alg?: string;
  key?: CryptoKey | Uint8Array;
  kid?: string;
}

/** A compact JWT over `claims`; HS256 with SECRET unless told otherwise. */
async function sign(claims: JWTPayload, options: SignOptions = {}): Promise<string> {
  const alg = options.alg ?? 'HS256';
  const header = options.kid === undefined ? { alg } : { alg, kid: options.kid };
  return new SignJWT(claims).setProtectedHeader(header).sign(options.key ?? SECRET_BYTES);
}

function base64url(text: string): string {
  return Buffer.from(text).toString('base64url');
}

/** A correctly signed (HS256, SECRET) compact JWS over an arbitrary payload. */
function signRaw(payload: string, extraHeader: object = {}): Promise<string> {
  return new CompactSign(new TextEncoder().encode(payload))
    .setProtectedHeader({ alg: 'HS256', ...extraHeader })
    .sign(SECRET_BYTES);
}

/** A validly signed JWS with an unencoded payload (RFC 7797), which a JWT must not use. */
async function signUnencoded(payload: string): Promise<string> {
  const jws = await new FlattenedSign(new TextEncoder().encode(payload))
    .setProtectedHeader({ alg: 'HS256', b64: false, crit: ['b64'] })
    .sign(SECRET_BYTES);
  return `${jws.protected ?? ''}.${payload}.${jws.signature}`;
}

/** An unsigned token, as an attacker would write it by hand. */
function unsignedToken(header: object, claims: object): string {
  return `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}.`;
}

function hmacAuthenticator(secret = SECRET, isBase64 = false): Promise<Authenticator> {
  return createAuthenticator({ jwtSecret: secret, jwtSecretIsBase64: isBase64 });
}

function expectGranted(result: AuthResult, channels: readonly string[], mode?: string): void {
  expect(result).toMatchObject({ ok: true });
  if (!result.ok) return;
  expect(result.grant.channels).toEqual(channels);
  if (mode !== undefined) expect(result.grant.mode).toBe(mode);
}

/** Rejected with this status and reason, and the reason does not leak the token. */
function expectRejected(result: AuthResult, status: number, reason: string | RegExp, token: string): void {
  expect(result.ok).toBe(false);
  if (result.ok) return;
  expect(result.status).toBe(status);
  if (typeof reason === 'string') expect(result.reason).toBe(reason);
  else expect(result.reason).toMatch(reason);
  if (token.length > 0) expect(result.reason).not.toContain(token);
}

// ---------------------------------------------------------------------------

describe('parseSocketPath', () => {
  it.each([
    ['/tok', undefined, 'tok'],
    ['/chat/tok', 'chat', 'tok'],
    ['/another%20test/tok', 'another test', 'tok'],
    ['/caf%C3%A9/tok', 'café', 'tok'],
    ['/a%2Fb/tok', 'a/b', 'tok'],
    ['/chat/tok/', 'chat', 'tok'],
    ['/tok/', undefined, 'tok'],
    ['/chat/tok?x=1', 'chat', 'tok'],
    ['/tok?x=1', undefined, 'tok'],
    ['/', undefined, ''],
    ['', undefined, ''],
    ['/chat//', 'chat', ''],
  ])('%s -> channel %s, token %s', (rawPath, channel, token) => {
    expect(parseSocketPath(rawPath)).toEqual({ ok: true, channel, token });
  });

  it.each([
    ['/a/b/c', 'Bad request: expected /<channel>/<jwt> or /<jwt>'],
    ['/a/b/c/', 'Bad request: expected /<channel>/<jwt> or /<jwt>'],
    ['//tok', 'Bad request: empty channel'],
    ['/%E0%A4%A/tok', 'Malformed path'],
    ['/chat/%ZZ', 'Malformed path'],
  ])('%s -> %s', (rawPath, reason) => {
    expect(parseSocketPath(rawPath)).toEqual({ ok: false, reason });
  });
});

describe('the channel a rejected v1 path logs (loggableChannel of what readSocketRequest read, as server.ts does)', () => {
  it.each([
    ['/chat/secret.token.here', 'chat'],
    ['/another%20test/secret.token.here', 'another test'],
    ['/secret.token.here', undefined],
    ['/a/secret.token.here/c', undefined],
    ['/%ZZ/secret.token.here', undefined],
    // A client that swapped the segments must not get its token logged as a channel.
    ['/eyJhbGciOiJIUzI1NiJ9.eyJtb2RlIjoicncifQ.c2ln/chat', '[redacted: looks like a token]'],
    [`/${'c'.repeat(150)}/tok`, `${'c'.repeat(100)}...`],
  ])('%s -> %s', (rawPath, channel) => {
    const asked = readSocketRequest({ path: rawPath, query: '', authorization: '', cookie: '', protocols: '' }, undefined);
    expect(loggableChannel(asked.ok ? asked.channel : undefined)).toBe(channel);
  });
});

// ---------------------------------------------------------------------------

describe('authorize: channel table (PROTOCOL.md §1)', () => {
  let auth: Authenticator;
  beforeAll(async () => {
    auth = await hmacAuthenticator();
  });

  it.each<[string, string | undefined, JWTPayload, string[]]>([
    ['/<channel>/<jwt>, no channel claims', 'chat', { mode: 'r' }, ['chat']],
    ['/<channel>/<jwt>, channel claim matches', 'chat', { mode: 'r', channel: 'chat' }, ['chat']],
    ['/<channel>/<jwt>, channels claim contains it', 'chat', { mode: 'r', channels: ['a', 'chat'] }, ['chat']],
    ['/<channel>/<jwt>, empty channels claim', 'chat', { mode: 'r', channels: [] }, ['chat']],
    ['/<channel>/<jwt>, percent-encoded', 'another%20test', { mode: 'r', channel: 'another test' }, ['another test']],
    ['/<jwt>, channel claim', undefined, { mode: 'r', channel: 'a' }, ['a']],
    ['/<jwt>, channels claim', undefined, { mode: 'r', channels: ['a', 'b'] }, ['a', 'b']],
    ['/<jwt>, channel then channels', undefined, { mode: 'r', channel: 'c', channels: ['a', 'b'] }, ['c', 'a', 'b']],
    ['/<jwt>, duplicates removed', undefined, { mode: 'r', channel: 'a', channels: ['b', 'a', 'b'] }, ['a', 'b']],
  ])('%s', async (_name, channel, claims, expected) => {
    const token = await sign(claims);
    const path = channel === undefined ? `/${token}` : `/${channel}/${token}`;
    expectGranted(await auth.authorize(path, NOW), expected);
  });

  it('accepts a trailing slash', async () => {
    const token = await sign({ mode: 'r', channel: 'chat' });
    expectGranted(await auth.authorize(`/chat/${token}/`, NOW), ['chat']);
    expectGranted(await auth.authorize(`/${token}/`, NOW), ['chat']);
  });

  it.each<[string, string | undefined, JWTPayload]>([
    ['/<channel>/<jwt>, channel not in claims', 'chat', { mode: 'r', channel: 'other' }],
    ['/<channel>/<jwt>, channel not in channels', 'chat', { mode: 'r', channels: ['a', 'b'] }],
    ['/<jwt>, no channel claims', undefined, { mode: 'r' }],
    ['/<jwt>, empty channels claim', undefined, { mode: 'r', channels: [] }],
  ])('%s -> 403 No allowed channels', async (_name, channel, claims) => {
    const token = await sign(claims);
    const path = channel === undefined ? `/${token}` : `/${channel}/${token}`;
    expectRejected(await auth.authorize(path, NOW), 403, 'No allowed channels', token);
  });

  it('rejects three segments with 400 before looking at the token', async () => {
    const token = await sign({ mode: 'r' });
    expectRejected(await auth.authorize(`/a/b/${token}`, NOW), 400, /^Bad request/, token);
  });

  it('rejects a malformed percent escape with 400', async () => {
    const token = await sign({ mode: 'r' });
    expectRejected(await auth.authorize(`/%ZZ/${token}`, NOW), 400, 'Malformed path', token);
  });
});

describe('authorize: claims', () => {
  let auth: Authenticator;
  beforeAll(async () => {
    auth = await hmacAuthenticator();
  });

  it.each(['r', 'w', 'rw'])('accepts mode %s', async (mode) => {
    const token = await sign({ mode });
    expectGranted(await auth.authorize(`/chat/${token}`, NOW), ['chat'], mode);
  });

  it.each<[string, JWTPayload, string]>([
    ['mode "x"', { mode: 'x' }, 'Invalid mode: expected "r", "w" or "rw"'],
    ['mode "R"', { mode: 'R' }, 'Invalid mode: expected "r", "w" or "rw"'],
    ['mode "wr"', { mode: 'wr' }, 'Invalid mode: expected "r", "w" or "rw"'],
    ['mode 1', { mode: 1 }, 'Invalid mode: expected "r", "w" or "rw"'],
    ['mode null', { mode: null }, 'Invalid mode: expected "r", "w" or "rw"'],
    ['mode ["r"]', { mode: ['r'] }, 'Invalid mode: expected "r", "w" or "rw"'],
    ['no mode', { channel: 'chat' }, 'Missing mode'],
    ['channel is a number', { mode: 'r', channel: 1 }, 'Invalid "channel" claim: expected a string'],
    ['channel is an array', { mode: 'r', channel: ['chat'] }, 'Invalid "channel" claim: expected a string'],
    ['channels is a string', { mode: 'r', channels: 'chat' }, 'Invalid "channels" claim: expected an array of strings'],
    ['channels holds a number', { mode: 'r', channels: ['chat', 1] }, 'Invalid "channels" claim: expected an array of strings'],
  ])('rejects %s with 401', async (_name, claims, reason) => {
    const token = await sign(claims);
    expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, reason, token);
  });

  it.each(['/', '/chat//'])('an empty token (%s) fails as Missing mode', async (path) => {
    expectRejected(await auth.authorize(path, NOW), 401, 'Missing mode', '');
  });

  it('passes every claim through into grant.claims and sets grant.exp', async () => {
    const claims = {
      mode: 'rw',
      channel: 'chat',
      role: 'admin',
      nested: { list: [1, 'two', null, true] },
      exp: NOW + 60,
      iat: NOW - 1,
    };
    const token = await sign(claims);
    const result = await auth.authorize(`/${token}`, NOW);
    expectGranted(result, ['chat'], 'rw');
    if (!result.ok) return;
    expect(result.grant.claims).toEqual(claims);
    expect(result.grant.exp).toBe(NOW + 60);
  });

  it('leaves grant.exp undefined without an exp claim', async () => {
    const result = await auth.authorize(`/chat/${await sign({ mode: 'r' })}`, NOW);
    expect(result.ok && result.grant.exp).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------

describe('authorize: token verification', () => {
  let auth: Authenticator;
  let rsaPrivate: CryptoKey;
  beforeAll(async () => {
    auth = await hmacAuthenticator();
    rsaPrivate = (await generateKeyPair('RS256')).privateKey;
  });

  const tamper = (token: string): string => {
    const [header, , signature] = token.split('.');
    return `${header}.${base64url(JSON.stringify({ mode: 'rw', channel: 'admin' }))}.${signature}`;
  };

  it.each<[string, () => Promise<string>, string]>([
    ['expired (exp in the past)', () => sign({ mode: 'r', exp: NOW - 1 }), 'Token expired'],
    ['expired (exp is now)', () => sign({ mode: 'r', exp: NOW }), 'Token expired'],
    ['not yet valid (nbf in the future)', () => sign({ mode: 'r', nbf: NOW + 1 }), 'Token not yet valid'],
    ['exp not a number', () => signRaw('{"mode":"r","exp":"tomorrow"}'), 'Invalid "exp" claim'],
    ['wrong secret', () => sign({ mode: 'r' }, { key: new TextEncoder().encode('another-secret') }), 'Invalid token signature'],
    ['tampered payload', async () => tamper(await sign({ mode: 'r' })), 'Invalid token signature'],
    ['alg none', async () => unsignedToken({ alg: 'none', typ: 'JWT' }, { mode: 'rw' }), 'Token algorithm not allowed'],
    ['alg None', async () => unsignedToken({ alg: 'None', typ: 'JWT' }, { mode: 'rw' }), 'Token algorithm not allowed'],
    ['RS256 against an HMAC secret', () => sign({ mode: 'r' }, { alg: 'RS256', key: rsaPrivate }), 'Token algorithm not allowed'],
    ['not a JWT ("abc")', async () => 'abc', 'Malformed token'],
    ['garbage parts ("a.b.c")', async () => 'a.b.c', 'Malformed token'],
    ['signed payload that is not JSON', () => signRaw('nope'), 'Malformed token'],
    ['signed payload that is a JSON array', () => signRaw('[{"mode":"rw"}]'), 'Malformed token'],
    ['unencoded payload (b64: false)', () => signUnencoded('{"mode":"rw"}'), 'Malformed token'],
  ])('rejects %s with 401', async (_name, makeToken, reason) => {
    const token = await makeToken();
    expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, reason, token);
  });

  it.each<[string, JWTPayload]>([
    ['exp in the future', { mode: 'r', exp: NOW + 1 }],
    ['nbf now', { mode: 'r', nbf: NOW }],
    ['nbf in the past', { mode: 'r', nbf: NOW - 100 }],
  ])('accepts %s', async (_name, claims) => {
    expectGranted(await auth.authorize(`/chat/${await sign(claims)}`, NOW), ['chat']);
  });

  it.each(['HS256', 'HS384', 'HS512'])('accepts %s with the plain secret', async (alg) => {
    const token = await sign({ mode: 'r' }, { alg });
    expectGranted(await auth.authorize(`/chat/${token}`, NOW), ['chat']);
  });

  it('uses the real clock when no time is given', async () => {
    const now = Math.floor(Date.now() / 1000);
    expectGranted(await auth.authorize(`/chat/${await sign({ mode: 'r', exp: now + 600 })}`), ['chat']);
    const expired = await sign({ mode: 'r', exp: now - 600 });
    expectRejected(await auth.authorize(`/chat/${expired}`), 401, 'Token expired', expired);
  });
});

// ---------------------------------------------------------------------------

describe('keys: HMAC and base64 secrets', () => {
  // Bytes chosen so the encodings use `+` and `/` (url alphabet: `-` and `_`) and need padding.
  const keyBytes = Uint8Array.from([0xfb, 0xef, 0xff, 0xfe, 0x3f, 0xbf, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c]);
  const standard = Buffer.from(keyBytes).toString('base64');
  const url = Buffer.from(keyBytes).toString('base64url');

  it('uses encodings that exercise both alphabets and padding', () => {
    expect(standard).toMatch(/[+/]/);
    expect(standard).toMatch(/=$/);
    expect(url).toMatch(/[-_]/);
  });

  it.each([
    ['standard, padded', standard],
    ['standard, unpadded', standard.replace(/=+$/, '')],
    ['url alphabet, unpadded', url],
    ['url alphabet, padded', url.padEnd(Math.ceil(url.length / 4) * 4, '=')],
    ['wrapped over lines', `${standard.slice(0, 20)}\n${standard.slice(20)}\n`],
  ])('decodes a base64 secret (%s)', async (_name, secret) => {
    const auth = await hmacAuthenticator(secret, true);
    const token = await sign({ mode: 'r' }, { key: keyBytes });
    expectGranted(await auth.authorize(`/chat/${token}`, NOW), ['chat']);
  });

  it('does not accept the base64 text itself as the key', async () => {
    const auth = await hmacAuthenticator(standard, true);
    const token = await sign({ mode: 'r' }, { key: new TextEncoder().encode(standard) });
    expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, 'Invalid token signature', token);
  });

  it.each([
    ['a character outside both alphabets', 'c2VjcmV0*c2VjcmV0'],
    ['an impossible length', 'abcde'],
    ['misplaced padding', 'ab=c'],
    ['wrong padding length', 'abc=='],
  ])('rejects base64 with %s, without echoing it', async (_name, secret) => {
    const failure = loadVerificationKeys(secret, true);
    await expect(failure).rejects.toThrow(/not valid base64/);
    await expect(failure).rejects.not.toThrow(secret);
  });

  it('treats any non-JSON text as an HMAC secret, as postgres-websockets does', async () => {
    for (const secret of ['{not closed', 'ends with }', SECRET]) {
      const keys = await loadVerificationKeys(secret, false);
      expect(keys.kind).toBe('hmac');
      expect(keys.algorithms).toEqual(['HS256', 'HS384', 'HS512']);
    }
  });

  it('rejects an empty secret', async () => {
    await expect(loadVerificationKeys('', false)).rejects.toThrow(/empty/);
  });
});

describe('keys: JWK and JWK Set', () => {
  let rsa: { privateKey: CryptoKey; publicJwk: JWK; privateJwk: JWK; pem: string };
  let rsa2: { privateKey: CryptoKey; publicJwk: JWK; privateJwk: JWK };
  let ec: { privateKey: CryptoKey; publicJwk: JWK };
  let ed: { privateKey: CryptoKey; publicJwk: JWK };
  let stranger: CryptoKey;

  beforeAll(async () => {
    const rsaPair = await generateKeyPair('RS256', { extractable: true });
    rsa = {
      privateKey: rsaPair.privateKey,
      publicJwk: await exportJWK(rsaPair.publicKey),
      privateJwk: await exportJWK(rsaPair.privateKey),
      pem: await exportSPKI(rsaPair.publicKey),
    };
    const rsaPair2 = await generateKeyPair('RS256', { extractable: true });
    rsa2 = {
      privateKey: rsaPair2.privateKey,
      publicJwk: await exportJWK(rsaPair2.publicKey),
      privateJwk: await exportJWK(rsaPair2.privateKey),
    };
    const ecPair = await generateKeyPair('ES256', { extractable: true });
    ec = { privateKey: ecPair.privateKey, publicJwk: await exportJWK(ecPair.publicKey) };
    const edPair = await generateKeyPair('Ed25519', { extractable: true });
    ed = { privateKey: edPair.privateKey, publicJwk: await exportJWK(edPair.publicKey) };
    stranger = (await generateKeyPair('RS256')).privateKey;
  });

  // WebCrypto binds a private key to one algorithm: re-import it for each RSA alg.
  const rsaSigningKey = async (privateJwk: JWK, alg: string): Promise<CryptoKey> => {
    const key = await importJWK({ ...privateJwk, alg }, alg);
    if (key instanceof Uint8Array) throw new Error('expected an RSA key');
    return key;
  };

  const jwkAuthenticator = (jwk: object): Promise<Authenticator> =>
    createAuthenticator({ jwtSecret: JSON.stringify(jwk), jwtSecretIsBase64: false });

  it.each(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'])('single RSA JWK verifies %s', async (alg) => {
    const auth = await jwkAuthenticator(rsa.publicJwk);
    const token = await sign({ mode: 'r' }, { alg, key: await rsaSigningKey(rsa.privateJwk, alg) });
    expectGranted(await auth.authorize(`/chat/${token}`, NOW), ['chat']);
  });

  it('single EC P-256 JWK verifies ES256', async () => {
    const keys = await loadVerificationKeys(JSON.stringify(ec.publicJwk), false);
    expect(keys).toMatchObject({ kind: 'jwk', algorithms: ['ES256'] });
    const auth = await jwkAuthenticator(ec.publicJwk);
    const token = await sign({ mode: 'w' }, { alg: 'ES256', key: ec.privateKey });
    expectGranted(await auth.authorize(`/chat/${token}`, NOW), ['chat'], 'w');
  });

  it('single Ed25519 JWK verifies EdDSA', async () => {
    const auth = await jwkAuthenticator(ed.publicJwk);
    const token = await sign({ mode: 'r' }, { alg: 'EdDSA', key: ed.privateKey });
    expectGranted(await auth.authorize(`/chat/${token}`, NOW), ['chat']);
  });

  it('a private JWK verifies with its public half', async () => {
    const auth = await jwkAuthenticator(rsa.privateJwk);
    const token = await sign({ mode: 'r' }, { alg: 'RS256', key: rsa.privateKey });
    expectGranted(await auth.authorize(`/chat/${token}`, NOW), ['chat']);
  });

  it("a JWK's alg restricts the token's alg", async () => {
    const auth = await jwkAuthenticator({ ...rsa.publicJwk, alg: 'RS256' });
    const token = await sign({ mode: 'r' }, { alg: 'PS256', key: await rsaSigningKey(rsa.privateJwk, 'PS256') });
    expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, 'Token algorithm not allowed', token);
  });

  it('rejects a token signed by another RSA key', async () => {
    const auth = await jwkAuthenticator(rsa.publicJwk);
    const token = await sign({ mode: 'r' }, { alg: 'RS256', key: stranger });
    expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, 'Invalid token signature', token);
  });

  it('an oct JWK is an HMAC key', async () => {
    const jwk = { kty: 'oct', k: Buffer.from(SECRET_BYTES).toString('base64url') };
    const keys = await loadVerificationKeys(JSON.stringify(jwk), false);
    expect(keys).toMatchObject({ kind: 'jwk', algorithms: ['HS256', 'HS384', 'HS512'] });
    const auth = await jwkAuthenticator(jwk);
    expectGranted(await auth.authorize(`/chat/${await sign({ mode: 'r' }, { alg: 'HS384' })}`, NOW), ['chat']);
  });

  describe('algorithm confusion: HS256 signed with the public key as HMAC secret', () => {
    const forgeries: [string, () => Uint8Array][] = [
      ['JWK JSON bytes', () => new TextEncoder().encode(JSON.stringify(rsa.publicJwk))],
      ['SPKI PEM bytes', () => new TextEncoder().encode(rsa.pem)],
    ];
    it.each(forgeries)('is rejected by a single-JWK server (%s)', async (_name, forgedKey) => {
      const auth = await jwkAuthenticator(rsa.publicJwk);
      const token = await sign({ mode: 'rw' }, { alg: 'HS256', key: forgedKey() });
      expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, 'Token algorithm not allowed', token);
    });
    it.each(forgeries)('is rejected by a JWK Set server (%s)', async (_name, forgedKey) => {
      const auth = await jwkAuthenticator({ keys: [{ ...rsa.publicJwk, kid: 'one' }] });
      const token = await sign({ mode: 'rw' }, { alg: 'HS256', key: forgedKey(), kid: 'one' });
      expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, 'Token algorithm not allowed', token);
    });
  });

  describe('JWK Set', () => {
    let auth: Authenticator;
    beforeAll(async () => {
      auth = await jwkAuthenticator({
        keys: [
          { ...rsa.publicJwk, kid: 'one' },
          { ...ec.publicJwk, kid: 'two' },
          { ...rsa2.publicJwk, kid: 'three' },
        ],
      });
    });

    it('reports its kind and the union of its algorithms', async () => {
      const keys = await loadVerificationKeys(JSON.stringify({ keys: [rsa.publicJwk, ec.publicJwk] }), false);
      expect(keys.kind).toBe('jwks');
      expect([...keys.algorithms].sort()).toEqual(['ES256', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512']);
    });

    it.each<[string, string, () => CryptoKey]>([
      ['one', 'RS256', () => rsa.privateKey],
      ['two', 'ES256', () => ec.privateKey],
      ['three', 'PS512', () => rsa2.privateKey],
    ])('picks key %s by kid', async (kid, alg, key) => {
      const signingKey = alg === 'PS512' ? await rsaSigningKey(rsa2.privateJwk, alg) : key();
      const token = await sign({ mode: 'r' }, { alg, key: signingKey, kid });
      expectGranted(await auth.authorize(`/chat/${token}`, NOW), ['chat']);
    });

    it.each<[string, string, () => CryptoKey, string]>([
      ['unknown kid', 'zzz', () => rsa.privateKey, "No key matches the token's kid"],
      ['kid of another key', 'three', () => rsa.privateKey, 'Invalid token signature'],
      ['kid of a key of another type', 'two', () => rsa.privateKey, "No key matches the token's kid"],
    ])('rejects %s', async (_name, kid, key, reason) => {
      const token = await sign({ mode: 'r' }, { alg: 'RS256', key: key(), kid });
      expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, reason, token);
    });

    it.each<[string, () => CryptoKey]>([
      ['first', () => rsa.privateKey],
      ['second', () => rsa2.privateKey],
    ])('without a kid, tries every matching key (%s RSA key)', async (_name, key) => {
      const token = await sign({ mode: 'r' }, { alg: 'RS256', key: key() });
      expectGranted(await auth.authorize(`/chat/${token}`, NOW), ['chat']);
    });

    it('without a kid, rejects a token no matching key signed', async () => {
      const token = await sign({ mode: 'r' }, { alg: 'RS256', key: stranger });
      expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, 'Invalid token signature', token);
    });

    it('rejects alg none', async () => {
      const token = unsignedToken({ alg: 'none', typ: 'JWT', kid: 'one' }, { mode: 'rw' });
      expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, 'Token algorithm not allowed', token);
    });
  });

  // postgres-websockets takes a JWK Set holding symmetric keys and picks the key by kid.
  describe('JWK Set with symmetric (oct) keys', () => {
    const OCT_A = new TextEncoder().encode('first-oct-secret-that-is-long-enough');
    const OCT_B = new TextEncoder().encode('second-oct-secret-that-is-long-enough');
    const OTHER = new TextEncoder().encode('a-secret-that-is-in-no-set-at-all');
    const octJwk = (bytes: Uint8Array, extra: object = {}): object => ({ kty: 'oct', k: Buffer.from(bytes).toString('base64url'), ...extra });

    describe('one oct key', () => {
      let auth: Authenticator;
      beforeAll(async () => {
        auth = await jwkAuthenticator({ keys: [octJwk(OCT_A, { kid: 'a' })] });
      });

      it('loads as a JWK Set of HS algorithms', async () => {
        const keys = await loadVerificationKeys(JSON.stringify({ keys: [octJwk(OCT_A, { kid: 'a' })] }), false);
        expect(keys).toMatchObject({ kind: 'jwks', algorithms: ['HS256', 'HS384', 'HS512'] });
      });

      it('accepts a token with its kid', async () => {
        const token = await sign({ mode: 'rw' }, { key: OCT_A, kid: 'a' });
        expectGranted(await auth.authorize(`/chat/${token}`, NOW), ['chat'], 'rw');
      });

      it('accepts a token without a kid', async () => {
        const token = await sign({ mode: 'r' }, { alg: 'HS512', key: OCT_A });
        expectGranted(await auth.authorize(`/chat/${token}`, NOW), ['chat'], 'r');
      });

      it('refuses a token with another kid', async () => {
        const token = await sign({ mode: 'r' }, { key: OCT_A, kid: 'zzz' });
        expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, "No key matches the token's kid", token);
      });

      it('refuses a token signed with another secret, with or without its kid', async () => {
        for (const kid of ['a', undefined]) {
          const token = await sign({ mode: 'r' }, { key: OTHER, ...(kid === undefined ? {} : { kid }) });
          expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, 'Invalid token signature', token);
        }
      });
    });

    describe('two oct keys', () => {
      let auth: Authenticator;
      beforeAll(async () => {
        auth = await jwkAuthenticator({ keys: [octJwk(OCT_A, { kid: 'a' }), octJwk(OCT_B, { kid: 'b', alg: 'HS512' })] });
      });

      it.each<[string, string, () => Uint8Array]>([
        ['a', 'HS256', () => OCT_A],
        ['b', 'HS512', () => OCT_B],
      ])('picks key %s by kid (%s)', async (kid, alg, key) => {
        const token = await sign({ mode: 'r' }, { alg, key: key(), kid });
        expectGranted(await auth.authorize(`/chat/${token}`, NOW), ['chat']);
      });

      it.each<[string, string, () => Uint8Array]>([
        ['the first key', 'HS256', () => OCT_A],
        ['the second key', 'HS512', () => OCT_B],
      ])('without a kid, tries every key that allows the alg (%s)', async (_name, alg, key) => {
        const token = await sign({ mode: 'r' }, { alg, key: key() });
        expectGranted(await auth.authorize(`/chat/${token}`, NOW), ['chat']);
      });

      it.each<[string, string, string | undefined, () => Uint8Array, string]>([
        ["the other key's kid", 'HS256', 'a', () => OCT_B, 'Invalid token signature'],
        ['no kid and no key of the set', 'HS256', undefined, () => OTHER, 'Invalid token signature'],
        ["an alg the kid's key does not allow", 'HS256', 'b', () => OCT_B, "No key matches the token's kid"],
      ])('refuses %s', async (_name, alg, kid, key, reason) => {
        const token = await sign({ mode: 'r' }, { alg, key: key(), ...(kid === undefined ? {} : { kid }) });
        expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, reason, token);
      });
    });

    describe('oct keys beside RSA, EC and OKP keys', () => {
      let auth: Authenticator;
      beforeAll(async () => {
        auth = await jwkAuthenticator({
          keys: [
            { ...rsa.publicJwk, kid: 'rsa' },
            octJwk(OCT_A, { kid: 'hmac' }),
            { ...ec.publicJwk, kid: 'ec' },
            { ...ed.publicJwk, kid: 'ed' },
          ],
        });
      });

      it('reports the union of every member\'s algorithms', async () => {
        const keys = await loadVerificationKeys(JSON.stringify({ keys: [rsa.publicJwk, octJwk(OCT_A)] }), false);
        expect([...keys.algorithms].sort()).toEqual(['HS256', 'HS384', 'HS512', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512']);
        expect(keys.fastPath).toBeDefined();
      });

      it.each<[string, string, string | undefined, () => CryptoKey | Uint8Array]>([
        ['HS256 with the oct kid', 'HS256', 'hmac', () => OCT_A],
        ['HS256 without a kid', 'HS256', undefined, () => OCT_A],
        ['RS256 with the RSA kid', 'RS256', 'rsa', () => rsa.privateKey],
        ['RS256 without a kid', 'RS256', undefined, () => rsa.privateKey],
        ['ES256 with the EC kid', 'ES256', 'ec', () => ec.privateKey],
        ['EdDSA with the OKP kid', 'EdDSA', 'ed', () => ed.privateKey],
      ])('accepts %s', async (_name, alg, kid, key) => {
        const token = await sign({ mode: 'r' }, { alg, key: key(), ...(kid === undefined ? {} : { kid }) });
        expectGranted(await auth.authorize(`/chat/${token}`, NOW), ['chat']);
      });

      it.each<[string, string, string, () => CryptoKey | Uint8Array]>([
        ['an RS256 token naming the oct key', 'RS256', 'hmac', () => rsa.privateKey],
        ['an HS256 token naming the RSA key, signed with the oct secret', 'HS256', 'rsa', () => OCT_A],
        ['an HS256 token naming the EC key', 'HS256', 'ec', () => OCT_A],
      ])('refuses %s: a kid never lends its key to an alg of another key type', async (_name, alg, kid, key) => {
        const token = await sign({ mode: 'r' }, { alg, key: key(), kid });
        expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, "No key matches the token's kid", token);
      });

      // The attack the per-key algorithm lists stop: the RSA public key is public, so HS256
      // "signed" with its bytes must not verify against that RSA member.
      describe('algorithm confusion: HS256 signed with the RSA public key as HMAC secret', () => {
        const forgeries: [string, () => Uint8Array][] = [
          ['JWK JSON bytes', () => new TextEncoder().encode(JSON.stringify(rsa.publicJwk))],
          ['JWK JSON bytes with its kid', () => new TextEncoder().encode(JSON.stringify({ ...rsa.publicJwk, kid: 'rsa' }))],
          ['SPKI PEM bytes', () => new TextEncoder().encode(rsa.pem)],
        ];
        it.each(forgeries)("is refused naming the RSA key's kid (%s)", async (_name, forgedKey) => {
          const token = await sign({ mode: 'rw' }, { alg: 'HS256', key: forgedKey(), kid: 'rsa' });
          expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, "No key matches the token's kid", token);
        });
        it.each(forgeries)('is refused without a kid (%s)', async (_name, forgedKey) => {
          const token = await sign({ mode: 'rw' }, { alg: 'HS256', key: forgedKey() });
          expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, 'Invalid token signature', token);
        });
        it.each(forgeries)("is refused naming the oct key's kid (%s)", async (_name, forgedKey) => {
          const token = await sign({ mode: 'rw' }, { alg: 'HS256', key: forgedKey(), kid: 'hmac' });
          expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, 'Invalid token signature', token);
        });
      });
    });

    it('never picks an oct member whose key_ops exclude verify, as jose does for a set', async () => {
      const auth = await jwkAuthenticator({ keys: [octJwk(OCT_A, { kid: 'a', key_ops: ['sign'] }), octJwk(OCT_B, { kid: 'b' })] });
      const refused = await sign({ mode: 'r' }, { key: OCT_A, kid: 'a' });
      expectRejected(await auth.authorize(`/chat/${refused}`, NOW), 401, "No key matches the token's kid", refused);
      expectGranted(await auth.authorize(`/chat/${await sign({ mode: 'r' }, { key: OCT_B, kid: 'b' })}`, NOW), ['chat']);
    });

    it('compares kids exactly: a number in the token never matches the string kid', async () => {
      const auth = await jwkAuthenticator({ keys: [octJwk(OCT_A, { kid: '7' })] });
      const token = await new SignJWT({ mode: 'r' }).setProtectedHeader({ alg: 'HS256', kid: 7 } as unknown as { alg: string }).sign(OCT_A);
      expectRejected(await auth.authorize(`/chat/${token}`, NOW), 401, "No key matches the token's kid", token);
    });
  });

  it.each<[string, string, RegExp]>([
    ['broken JSON', '{"kty": "RSA", }', /not valid JSON/],
    ['a JSON object that is no key', '{"secret": "abc"}', /neither a "kty" nor a "keys"/],
    ['an RSA JWK without its modulus', '{"kty": "RSA", "e": "AQAB", "hidden": "s3cr3t-value"}', /JWK/],
    ['a short RSA key', '{"kty": "RSA", "n": "s3cr3t-value", "e": "AQAB"}', /RSA key is \d+ bits/],
    ['a JWK Set with a short RSA key', '{"keys": [{"kty": "RSA", "n": "s3cr3t-value", "e": "AQAB"}]}', /member 0: RSA key is \d+ bits/],
    ['an unsupported kty', '{"kty": "XYZ", "hidden": "s3cr3t-value"}', /not supported/],
    ['an encryption-only JWK', '{"kty": "RSA", "use": "enc", "n": "s3cr3t-value", "e": "AQAB"}', /"use"/],
    ['a JWK Set with a non-object member', '{"keys": ["s3cr3t-value"]}', /member 0/],
    ['a JWK Set with an oct key without "k"', '{"keys": [{"kty": "oct", "hidden": "s3cr3t-value"}]}', /member 0: .*"k"/],
    ['a JWK Set with an empty oct key', '{"keys": [{"kty": "oct", "k": "", "hidden": "s3cr3t-value"}]}', /member 0: its "k" is empty/],
    ['an empty oct JWK', '{"kty": "oct", "k": "", "hidden": "s3cr3t-value"}', /"k" is empty/],
    ['an empty JWK Set', '{"keys": []}', /no key/],
  ])('rejects %s at start-up without echoing the secret', async (_name, secret, detail) => {
    const failure = loadVerificationKeys(secret, false);
    await expect(failure).rejects.toThrow(/^PGWS_JWT_SECRET looks like JSON but is not a valid JWK or JWK Set: /);
    await expect(failure).rejects.toThrow(detail);
    const message = await failure.then(
      () => '',
      (error: unknown) => (error instanceof Error ? error.message : String(error)),
    );
    expect(message).not.toContain('s3cr3t-value');
    expect(message).not.toContain(secret);
  });
});
