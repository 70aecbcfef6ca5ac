// PGWS_JWKS_URL (src/auth/remote-keys.ts, PROTOCOL.md §8): a JWK Set served by a real local
// HTTP server, tokens signed by jose with real keys, and verdicts from the verifier pgws uses
// (createVerifier), fed the way the daemon feeds it: useKeys(current()) at start, useKeys on
// every onChange. Requests are counted on the server; log lines are captured from pino.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { loadVerificationKeys, type KeySource } from '../src/auth/keys.js';
import { startRemoteKeys, type RemoteKeysOptions } from '../src/auth/remote-keys.js';
import { createVerifier, type AuthResult, type Verifier } from '../src/auth/verify.js';
import { createLogger } from '../src/log.js';
import { track } from './harness/leftovers.js';
import { until, within } from './harness/within.js';

const SECRET = 'a-shared-hmac-secret-of-at-least-32-bytes';
const WAIT_MS = 5_000;

// ---------------------------------------------------------------------------
// The identity provider: a JWK Set at /jwks, its answer changeable, its requests counted.

interface Received {
  readonly url: string;
  readonly authorization: string | undefined;
}

interface Provider {
  readonly port: number;
  readonly url: string;
  readonly requests: Received[];
  /** What the next requests get: a set (sent as JSON) or a raw body. */
  serve(body: unknown, status?: number): void;
  /** Holds every answer until release() (to keep a fetch in flight). */
  hold(): void;
  release(): void;
  close(): Promise<void>;
}

async function provider(initial: unknown): Promise<Provider> {
  let body = toBody(initial);
  let status = 200;
  let held: Promise<void> | undefined;
  let releaseHeld = (): void => undefined;
  const requests: Received[] = [];
  const server = createServer((req, res) => {
    requests.push({ url: req.url ?? '', authorization: req.headers.authorization });
    const answer = (): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(body);
    };
    if (held) void held.then(answer);
    else answer();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      // fetch keeps connections alive; a provider that is down refuses the next one.
      server.closeAllConnections();
    });
    return closed;
  };
  track(close);
  return {
    port,
    url: `http://127.0.0.1:${port}/jwks`,
    requests,
    serve(next, nextStatus = 200) {
      body = toBody(next);
      status = nextStatus;
    },
    hold() {
      held = new Promise((resolve) => (releaseHeld = resolve));
    },
    release() {
      held = undefined;
      releaseHeld();
    },
    close,
  };
}

function toBody(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

// ---------------------------------------------------------------------------
// Keys and tokens

interface Signer {
  readonly kid: string;
  readonly jwk: JWK;
  /** A token with mode rw, this key's kid unless the header says otherwise (kid: undefined drops it). */
  sign(header?: Record<string, unknown>): Promise<string>;
}

async function signer(alg: 'RS256' | 'ES256', kid: string): Promise<Signer> {
  const { publicKey, privateKey } = await generateKeyPair(alg);
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, jwk, sign: (header = {}) => signWith(privateKey, { alg, kid, ...header }) };
}

function hmacToken(header: Record<string, unknown> = {}): Promise<string> {
  return signWith(new TextEncoder().encode(SECRET), { alg: 'HS256', ...header });
}

function signWith(key: CryptoKey | Uint8Array, header: Record<string, unknown>): Promise<string> {
  // Only own, defined members: `kid: undefined` means a header without kid.
  const defined = Object.fromEntries(Object.entries(header).filter(([, value]) => value !== undefined));
  return new SignJWT({ mode: 'rw' })
    .setProtectedHeader({ alg: String(defined.alg), ...defined })
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(key);
}

// `b64: true` without `crit` is ignored by jose, but the fast path leaves any header with a
// `b64` member to jose: the same key and claims, verified on jose's path.
const JOSE_PATH = { b64: true };

// ---------------------------------------------------------------------------
// pgws side

interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

const WARN = 40;

function capturingLogger(): { log: ReturnType<typeof createLogger>; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = createLogger('debug', { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return { log, lines };
}

interface Running {
  readonly verifier: Verifier;
  readonly changes: KeySource[];
  readonly lines: LogLine[];
  readonly current: () => KeySource;
  readonly stop: () => void;
}

async function start(url: string, options: Partial<RemoteKeysOptions> = {}, secret?: KeySource): Promise<Running> {
  const { log, lines } = capturingLogger();
  const verifier = createVerifier();
  const changes: KeySource[] = [];
  const remote = await startRemoteKeys({ url, attempts: 1, log, retryBaseMs: 5, ...options }, secret, (keys) => {
    changes.push(keys);
    verifier.useKeys(keys);
  });
  track(() => remote.stop());
  verifier.useKeys(remote.current());
  return { verifier, changes, lines, current: () => remote.current(), stop: () => remote.stop() };
}

/** The verdict, and whether it came without waiting (fast path or cache) or from jose. */
async function authorize(verifier: Verifier, token: string): Promise<{ result: AuthResult; sync: boolean }> {
  const pending = verifier.authorize(`/chat/${token}`);
  return { result: await pending, sync: !(pending instanceof Promise) };
}

const ACCEPTED = expect.objectContaining({ ok: true, grant: expect.objectContaining({ mode: 'rw', channels: ['chat'] }) });
const refused = (reason: string): AuthResult => ({ ok: false, status: 401, reason });
const NO_KEY = refused("No key matches the token's kid");
const ALG_NOT_ALLOWED = refused('Token algorithm not allowed');

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

// ---------------------------------------------------------------------------

describe('keys from PGWS_JWKS_URL', () => {
  it('verifies RS256 and ES256 tokens with the set, on the fast path and on jose\'s path', async () => {
    const rs = await signer('RS256', 'rs-1');
    const es = await signer('ES256', 'es-1');
    const idp = await provider({ keys: [rs.jwk, es.jwk] });
    const { verifier, current, lines } = await start(idp.url);

    expect(current().kind).toBe('jwks-url');
    expect(current().algorithms).toEqual(expect.arrayContaining(['RS256', 'ES256']));
    for (const key of [rs, es]) {
      expect(await authorize(verifier, await key.sign())).toEqual({ result: ACCEPTED, sync: true });
      const viaJose = await key.sign(JOSE_PATH);
      expect(await authorize(verifier, viaJose)).toEqual({ result: ACCEPTED, sync: false });
      // Verified once: the second time it comes from the cache of verified tokens.
      expect(await authorize(verifier, viaJose)).toEqual({ result: ACCEPTED, sync: true });
    }
    expect(idp.requests).toHaveLength(1);
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'JWK Set in use', keys: 2, kids: ['rs-1', 'es-1'], url: idp.url }));
  });

  it('follows a rotation to a new kid (and a new key type) without a restart: the unknown kid triggers a refetch', async () => {
    const old = await signer('RS256', 'old');
    const next = await signer('ES256', 'new');
    const idp = await provider({ keys: [old.jwk] });
    const { verifier, changes } = await start(idp.url);
    const oldToken = await old.sign();
    expect((await authorize(verifier, oldToken)).result).toEqual(ACCEPTED);

    idp.serve({ keys: [next.jwk] });
    expect((await authorize(verifier, await next.sign())).result).toEqual(ACCEPTED);
    expect(idp.requests).toHaveLength(2);
    expect(changes).toHaveLength(1);
    // The retired key is gone for good, cached verdicts included (useKeys cleared them), and
    // its kid, now unknown, does not refetch again within the cooldown.
    expect((await authorize(verifier, oldToken)).result).toEqual(NO_KEY);
    expect(idp.requests).toHaveLength(2);
  });

  it('refetches for unknown kids at most once per cooldown', async () => {
    const known = await signer('RS256', 'known');
    const strangers = await Promise.all(['x', 'y', 'z'].map((kid) => signer('RS256', kid)));
    const idp = await provider({ keys: [known.jwk] });
    const { verifier, changes } = await start(idp.url, { unknownKidCooldownMs: 60_000 });

    for (const stranger of strangers) expect((await authorize(verifier, await stranger.sign())).result).toEqual(NO_KEY);
    expect(idp.requests).toHaveLength(2);
    expect(changes).toHaveLength(0); // the same set came back
    expect((await authorize(verifier, await known.sign())).result).toEqual(ACCEPTED);
  });

  it('lets callers that meet an unknown kid together share one fetch in flight', async () => {
    const known = await signer('RS256', 'known');
    const strangers = await Promise.all(['x', 'y', 'z'].map((kid) => signer('RS256', kid)));
    const idp = await provider({ keys: [known.jwk] });
    // No cooldown: only the sharing of the fetch in flight keeps this to one request.
    const { verifier } = await start(idp.url, { unknownKidCooldownMs: 0 });
    const tokens = await Promise.all(strangers.map((stranger) => stranger.sign()));

    idp.hold();
    const verdicts = Promise.all(tokens.map((token) => authorize(verifier, token)));
    await until(() => idp.requests.length === 2, WAIT_MS, 'the refetch reaches the provider');
    idp.release();
    for (const { result } of await within(verdicts, WAIT_MS, 'the verdicts')) expect(result).toEqual(NO_KEY);
    expect(idp.requests).toHaveLength(2);

    // Nothing in flight any more: the next unknown kid fetches again (the cooldown is 0).
    expect((await authorize(verifier, await strangers[0]!.sign())).result).toEqual(NO_KEY);
    expect(idp.requests).toHaveLength(3);
  });

  it('keeps the cached keys when a refetch fails, with a warning that hides the URL\'s credentials', async () => {
    const key = await signer('RS256', 'rs-1');
    const idp = await provider({ keys: [key.jwk] });
    const url = `http://api-user:p4ss%2Fword@127.0.0.1:${idp.port}/jwks?api_key=q-s3cret`;
    const { verifier, changes, lines } = await start(url, { refreshMs: 20 });
    // The userinfo travels as Basic credentials (fetch refuses it in the URL), the query as is.
    expect(idp.requests[0]).toEqual({ url: '/jwks?api_key=q-s3cret', authorization: `Basic ${Buffer.from('api-user:p4ss/word').toString('base64')}` });

    await idp.close();
    await until(() => lines.some((line) => line.level === WARN), WAIT_MS, 'a warning about the failed refetch');
    const warning = lines.find((line) => line.level === WARN);
    expect(warning).toMatchObject({ msg: 'JWK Set refetch failed; keeping the cached keys', url: `http://[redacted]@127.0.0.1:${idp.port}/jwks?[redacted]` });
    // ECONNREFUSED, or "other side closed" for a refetch the closing cut short.
    expect(String(warning?.err)).toMatch(/^fetch failed: /);

    expect(await authorize(verifier, await key.sign())).toEqual({ result: ACCEPTED, sync: true });
    expect(await authorize(verifier, await key.sign(JOSE_PATH))).toEqual({ result: ACCEPTED, sync: false });
    expect(changes).toHaveLength(0);
    const logged = JSON.stringify(lines);
    for (const secret of ['p4ss', 'q-s3cret', 'api_key', 'api-user']) expect(logged).not.toContain(secret);
  });

  it('picks up a changed set on the periodic refetch and calls onChange once, never for the same set', async () => {
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((kid) => signer('ES256', kid)));
    const idp = await provider({ keys: [a!.jwk, b!.jwk] });
    const { verifier, changes, lines } = await start(idp.url, { refreshMs: 20 });
    const refetches = async (count: number): Promise<void> => {
      const target = idp.requests.length + count;
      await until(() => idp.requests.length >= target, WAIT_MS, `${count} more refetches`);
    };

    await refetches(3);
    // The same keys in another order and layout are the same set.
    const reordered = (jwk: JWK): JWK => Object.fromEntries(Object.entries(jwk).reverse()) as JWK;
    idp.serve(JSON.stringify({ keys: [reordered(b!.jwk), reordered(a!.jwk)] }, null, 2));
    await refetches(3);
    expect(changes).toHaveLength(0);

    idp.serve({ keys: [a!.jwk, c!.jwk] });
    await until(() => changes.length === 1, WAIT_MS, 'onChange for the new set');
    await refetches(3);
    expect(changes).toHaveLength(1);
    expect(changes[0]?.kind).toBe('jwks-url');
    // In use by the verifier already: the new kid is accepted on the fast path, the dropped one refused.
    expect(await authorize(verifier, await c!.sign())).toEqual({ result: ACCEPTED, sync: true });
    expect((await authorize(verifier, await b!.sign())).result).toEqual(NO_KEY);
    expect(lines.filter((line) => line.msg === 'JWK Set in use').map((line) => line.kids)).toEqual([
      ['a', 'b'],
      ['a', 'c'],
    ]);
  });

  it('fails to start after `attempts` tries at an unreachable URL, naming it without userinfo or query', async () => {
    const port = await closedPort();
    const { log, lines } = capturingLogger();
    const url = `http://admin:hunter22@127.0.0.1:${port}/jwks?client_secret=cs-123`;
    const failure = await startRemoteKeys({ url, attempts: 3, log, retryBaseMs: 5 }, undefined, () => undefined).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(Error);
    const message = (failure as Error).message;
    expect(message).toContain(`cannot fetch the JWK Set at http://[redacted]@127.0.0.1:${port}/jwks?[redacted] after 3 attempt(s)`);
    expect(message).toContain('ECONNREFUSED');
    const retries = lines.filter((line) => line.msg === 'JWK Set not reachable yet');
    expect(retries.map((line) => line.attempt)).toEqual([1, 2]);
    for (const secret of ['hunter22', 'cs-123', 'client_secret']) {
      expect(message).not.toContain(secret);
      expect(JSON.stringify(lines)).not.toContain(secret);
    }
  });

  it('counts every start-up attempt at a provider that answers with an error', async () => {
    const idp = await provider({ keys: [] });
    idp.serve('unavailable', 503);
    const { log } = capturingLogger();
    await expect(startRemoteKeys({ url: idp.url, attempts: 4, log, retryBaseMs: 5 }, undefined, () => undefined)).rejects.toThrow(
      `cannot fetch the JWK Set at ${idp.url} after 4 attempt(s): HTTP 503`,
    );
    expect(idp.requests).toHaveLength(4);
  });

  it('gives up on a provider that does not answer within fetchTimeoutMs', async () => {
    const key = await signer('ES256', 'es-1');
    const idp = await provider({ keys: [key.jwk] });
    idp.hold();
    const { log } = capturingLogger();
    await expect(startRemoteKeys({ url: idp.url, attempts: 2, log, retryBaseMs: 5, fetchTimeoutMs: 100 }, undefined, () => undefined)).rejects.toThrow(
      `cannot fetch the JWK Set at ${idp.url} after 2 attempt(s): no answer within 100 ms`,
    );
    expect(idp.requests).toHaveLength(2);
    idp.release();
  });

  it.each([
    ['text that is not JSON', 'not-json-but-could-be-an-hmac-secret', 'the answer is not JSON'],
    ['a JSON array', '[]', 'the answer is not a JWK Set'],
    ['a single JWK', { kty: 'oct', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQ' }, 'the answer is not a JWK Set'],
    ['an empty set', { keys: [] }, 'the JWK Set is not usable: no key in the set can verify signatures'],
    ['a set of encryption keys', { keys: [{ kty: 'oct', k: 'c2VjcmV0', use: 'enc' }] }, 'the JWK Set is not usable: no key in the set can verify signatures'],
  ])('treats %s as a failed fetch', async (_what, body, reason) => {
    const idp = await provider(body);
    const { log } = capturingLogger();
    const failure = startRemoteKeys({ url: idp.url, attempts: 1, log }, undefined, () => undefined);
    await expect(failure).rejects.toThrow(`cannot fetch the JWK Set at ${idp.url} after 1 attempt(s): ${reason}`);
    await expect(failure).rejects.not.toThrow('PGWS_JWT_SECRET');
  });

  it('refuses a URL that is not http(s) without fetching or quoting its credentials', async () => {
    const { log } = capturingLogger();
    await expect(startRemoteKeys({ url: 'ftp://me:pw-123@idp.example/jwks', attempts: 1, log }, undefined, () => undefined)).rejects.toThrow(
      'PGWS_JWKS_URL must be an https:// or http:// URL, not ftp://[redacted]@idp.example/jwks',
    );
  });

  it('refuses a token without kid when there is no secret, even if the set holds its key', async () => {
    const key = await signer('RS256', 'rs-1');
    const idp = await provider({ keys: [key.jwk] });
    const { verifier, current } = await start(idp.url);
    const token = await key.sign({ kid: undefined });
    expect(current().fastPath?.(token, Math.floor(Date.now() / 1000))).toBeUndefined();
    expect(await authorize(verifier, token)).toEqual({ result: NO_KEY, sync: false });
    expect(idp.requests).toHaveLength(1); // no kid: nothing to refetch for
  });

  describe('combined with PGWS_JWT_SECRET', () => {
    async function combined(): Promise<{ running: Running; rs: Signer; idp: Provider }> {
      const rs = await signer('RS256', 'rs-1');
      const idp = await provider({ keys: [rs.jwk] });
      const secret = await loadVerificationKeys(SECRET, false);
      const running = await start(idp.url, { unknownKidCooldownMs: 60_000 }, secret);
      return { running, rs, idp };
    }

    it('verifies an HS256 token without kid with the secret, and a kid of the set with the set', async () => {
      const { running, rs } = await combined();
      expect(running.current().algorithms).toEqual(expect.arrayContaining(['RS256', 'HS256', 'HS384', 'HS512']));
      expect(await authorize(running.verifier, await hmacToken())).toEqual({ result: ACCEPTED, sync: true });
      expect(await authorize(running.verifier, await hmacToken(JOSE_PATH))).toEqual({ result: ACCEPTED, sync: false });
      expect(await authorize(running.verifier, await rs.sign())).toEqual({ result: ACCEPTED, sync: true });
      expect(await authorize(running.verifier, await rs.sign(JOSE_PATH))).toEqual({ result: ACCEPTED, sync: false });
    });

    it('verifies an HS256 token whose kid the set lacks with the secret, after one refetch on jose\'s path', async () => {
      const { running, idp } = await combined();
      const token = await hmacToken({ kid: 'not-in-the-set' });
      // Not on the fast path: the refetch might bring that kid, and then the set must decide.
      expect(running.current().fastPath?.(token, Math.floor(Date.now() / 1000))).toBeUndefined();
      expect(await authorize(running.verifier, token)).toEqual({ result: ACCEPTED, sync: false });
      expect(idp.requests).toHaveLength(2);
    });

    it("refuses an HS256 token whose header claims the set's RS256 kid, on both paths", async () => {
      const { running, rs } = await combined();
      const token = await hmacToken({ kid: rs.kid });
      expect(running.current().fastPath?.(token, Math.floor(Date.now() / 1000))).toBeUndefined();
      expect(await authorize(running.verifier, token)).toEqual({ result: ALG_NOT_ALLOWED, sync: false });
      expect((await authorize(running.verifier, await hmacToken({ kid: rs.kid, ...JOSE_PATH }))).result).toEqual(ALG_NOT_ALLOWED);
    });

    it('refuses an RS256 token without kid: it goes to the secret, which allows HS* only', async () => {
      const { running, rs, idp } = await combined();
      const token = await rs.sign({ kid: undefined });
      expect(running.current().fastPath?.(token, Math.floor(Date.now() / 1000))).toBeUndefined();
      expect(await authorize(running.verifier, token)).toEqual({ result: ALG_NOT_ALLOWED, sync: false });
      expect(idp.requests).toHaveLength(1);
    });
  });
});
