// `pgws token` (PROTOCOL.md §13) as users run it: bin/pgws.js in a child process, with no
// database and no PGWS_DB_URI. The printed token must verify with the configured key, carry
// the asked-for claims, come alone on stdout, and open a socket on a real server.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify, type JWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { createAuthenticator } from '../src/auth/index.js';
import { BIN, cleanEnv, collectRun, runPgws, type Run } from './harness/child.js';
import { connect } from './harness/client.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { track } from './harness/leftovers.js';
import { LISTEN_CHANNEL, SECRET, startPgws } from './harness/pgws.js';

const SECRET_BYTES = new TextEncoder().encode(SECRET);

/** `pgws token ...args` through the harness, with only `env`'s PGWS_ variables. */
async function pgwsToken(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  const child = runPgws(['token', ...args], cleanEnv(env));
  return collectRun(child.proc);
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgws-token-'));
  track(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The one token a successful run printed: stdout is exactly `<token>\n`, stderr empty. */
function printedToken(run: Run): string {
  expect(run).toMatchObject({ code: 0, stderr: '' });
  expect(run.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
  return run.stdout.slice(0, -1);
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

describe('pgws token: the token', () => {
  it('verifies with the secret and carries mode, channel, iat and exp = now + 1h by default', async () => {
    const before = nowSeconds();
    const token = printedToken(await pgwsToken(['--mode', 'rw', '--channel', 'chat'], { PGWS_JWT_SECRET: SECRET }));
    const { payload, protectedHeader } = await jwtVerify(token, SECRET_BYTES, { algorithms: ['HS256'] });
    expect(protectedHeader).toEqual({ alg: 'HS256', typ: 'JWT' });
    expect(Object.keys(payload).sort()).toEqual(['channel', 'exp', 'iat', 'mode']);
    expect(payload).toMatchObject({ mode: 'rw', channel: 'chat' });
    expect(payload.iat).toBeGreaterThanOrEqual(before);
    expect(payload.iat).toBeLessThanOrEqual(nowSeconds());
    expect(payload.exp).toBe((payload.iat ?? 0) + 3600);
  });

  it('lists several channels as "channels", and reads --claim values as JSON when they are', async () => {
    const args = ['--mode', 'r', '--channel', 'a', '--channel', 'b', '--channel', 'a'];
    const claims = ['role=web_user', 'n=5', 'flag=true', 'text="5"', 'tenant={"id":7}', 'eq=a=b', 'list=["x"]'];
    const token = printedToken(await pgwsToken([...args, ...claims.flatMap((claim) => ['--claim', claim])], { PGWS_JWT_SECRET: SECRET }));
    const { payload } = await jwtVerify(token, SECRET_BYTES);
    expect(payload).toMatchObject({
      mode: 'r',
      channels: ['a', 'b'],
      role: 'web_user',
      n: 5,
      flag: true,
      text: '5',
      tenant: { id: 7 },
      eq: 'a=b',
      list: ['x'],
    });
    expect(payload).not.toHaveProperty('channel');
  });

  it('has no channel claim without --channel', async () => {
    const { payload } = await jwtVerify(printedToken(await pgwsToken(['--mode', 'w'], { PGWS_JWT_SECRET: SECRET })), SECRET_BYTES);
    expect(payload).not.toHaveProperty('channel');
    expect(payload).not.toHaveProperty('channels');
  });

  it.each<[string, number | undefined]>([
    ['30s', 30],
    ['15m', 900],
    ['7d', 604_800],
    ['never', undefined],
    ['0', undefined],
  ])('--exp %s', async (exp, lifetime) => {
    const token = printedToken(await pgwsToken(['--mode', 'r', '--exp', exp], { PGWS_JWT_SECRET: SECRET }));
    const { payload } = await jwtVerify(token, SECRET_BYTES);
    if (lifetime === undefined) expect(payload).not.toHaveProperty('exp');
    else expect(payload.exp).toBe((payload.iat ?? 0) + lifetime);
  });

  it('signs with --alg', async () => {
    const token = printedToken(await pgwsToken(['--mode', 'r', '--alg', 'HS512'], { PGWS_JWT_SECRET: SECRET }));
    expect(decodeProtectedHeader(token).alg).toBe('HS512');
    await jwtVerify(token, SECRET_BYTES, { algorithms: ['HS512'] });
  });
});

describe('pgws token: where the secret comes from', () => {
  it('reads --jwt-secret', async () => {
    await jwtVerify(printedToken(await pgwsToken(['--mode', 'r', '--jwt-secret', SECRET])), SECRET_BYTES);
  });

  it('reads @/path from the flag and from the environment, one trailing newline stripped', async () => {
    const file = join(tempDir(), 'secret');
    writeFileSync(file, `${SECRET}\n`);
    await jwtVerify(printedToken(await pgwsToken(['--mode', 'r', '--jwt-secret', `@${file}`])), SECRET_BYTES);
    await jwtVerify(printedToken(await pgwsToken(['--mode', 'r'], { PGWS_JWT_SECRET: `@${file}` })), SECRET_BYTES);
  });

  it('takes flag over environment over .env, as the daemon does', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, '.env'), 'PGWS_JWT_SECRET=the-secret-of-the-dotenv-file\n');
    const run = async (args: string[], env: Record<string, string>): Promise<Run> =>
      collectRun(spawn(process.execPath, [BIN, 'token', '--mode', 'r', ...args], { cwd: dir, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] }));
    const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
    await jwtVerify(printedToken(await run([], {})), bytes('the-secret-of-the-dotenv-file'));
    await jwtVerify(printedToken(await run([], { PGWS_JWT_SECRET: 'the-secret-of-the-environment' })), bytes('the-secret-of-the-environment'));
    await jwtVerify(
      printedToken(await run(['--jwt-secret', 'the-secret-of-the-flag'], { PGWS_JWT_SECRET: 'the-secret-of-the-environment' })),
      bytes('the-secret-of-the-flag'),
    );
    // --env-file names another file.
    const other = join(dir, 'other.env');
    writeFileSync(other, 'PGWS_JWT_SECRET=the-secret-of-another-file\n');
    await jwtVerify(printedToken(await run(['--env-file', other], {})), bytes('the-secret-of-another-file'));
  });

  it('decodes a base64 secret (PGWS_JWT_SECRET_BASE64 or --jwt-secret-base64)', async () => {
    const keyBytes = Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 251) % 256);
    const encoded = Buffer.from(keyBytes).toString('base64');
    const fromEnv = await pgwsToken(['--mode', 'r'], { PGWS_JWT_SECRET: encoded, PGWS_JWT_SECRET_BASE64: 'true' });
    await jwtVerify(printedToken(fromEnv), keyBytes);
    const fromFlag = await pgwsToken(['--mode', 'r', '--jwt-secret-base64'], { PGWS_JWT_SECRET: encoded });
    await jwtVerify(printedToken(fromFlag), keyBytes);
  });

  it("signs with an oct JWK, using its alg and kid", async () => {
    const jwk = { kty: 'oct', kid: 'dev', alg: 'HS384', k: Buffer.from(SECRET_BYTES).toString('base64url') };
    const token = printedToken(await pgwsToken(['--mode', 'r'], { PGWS_JWT_SECRET: JSON.stringify(jwk) }));
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'HS384', typ: 'JWT', kid: 'dev' });
    await jwtVerify(token, SECRET_BYTES, { algorithms: ['HS384'] });
    // The JWK allows HS384 only: another --alg would make a token pgws refuses.
    const refused = await pgwsToken(['--mode', 'r', '--alg', 'HS256'], { PGWS_JWT_SECRET: JSON.stringify(jwk) });
    expect(refused).toMatchObject({ code: 2, stdout: '' });
    expect(refused.stderr).toContain('allows only HS384');
  });
});

describe('pgws token: refusals (exit 2, nothing on stdout, no secret on stderr)', () => {
  let rsaPublic: JWK;
  let rsaPrivate: JWK;
  beforeAll(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true });
    rsaPublic = await exportJWK(pair.publicKey);
    rsaPrivate = await exportJWK(pair.privateKey);
  });

  it.each<[string, () => object]>([
    ['a public RSA JWK', () => rsaPublic],
    ['a private RSA JWK', () => rsaPrivate],
    ['a JWK Set of RSA keys only', () => ({ keys: [{ ...rsaPublic, kid: 'one' }] })],
  ])('refuses %s: a public key cannot sign', async (_name, key) => {
    const run = await pgwsToken(['--mode', 'r'], { PGWS_JWT_SECRET: JSON.stringify(key()) });
    expect(run).toMatchObject({ code: 2, stdout: '' });
    expect(run.stderr).toMatch(/asymmetric|without a symmetric \(oct\) key/);
    expect(run.stderr).toContain('a public key cannot sign');
    expect(run.stderr).not.toContain(rsaPublic.n);
    expect(run.stderr).not.toContain(rsaPrivate.d);
  });

  it('refuses a missing --mode', async () => {
    const run = await pgwsToken(['--channel', 'chat'], { PGWS_JWT_SECRET: SECRET });
    expect(run).toMatchObject({ code: 2, stdout: '' });
    expect(run.stderr).toContain('--mode: required');
  });

  it('refuses a missing secret, without asking for PGWS_DB_URI', async () => {
    const run = await pgwsToken(['--mode', 'r']);
    expect(run).toMatchObject({ code: 2, stdout: '' });
    expect(run.stderr).toContain('PGWS_JWT_SECRET (--jwt-secret): required');
    expect(run.stderr).not.toContain('PGWS_DB_URI');
  });

  it('lists every problem at once and never repeats the secret', async () => {
    const run = await pgwsToken(
      ['--mode', 'x', '--exp', '5y', '--claim', 'exp=1', '--claim', 'novalue', '--alg', 'RS256', '--channel', '', '--nope', '--jwt-secret', SECRET],
    );
    expect(run).toMatchObject({ code: 2, stdout: '' });
    for (const problem of ['--mode: must be', '--exp: must be', '--claim: "exp" is set with --exp', '--alg: must be', '--channel: must not be empty', 'unknown option --nope']) {
      expect(run.stderr).toContain(problem);
    }
    expect(run.stderr).not.toContain(SECRET);
  });

  it('refuses a secret the daemon refuses, with the daemon\'s reason', async () => {
    const run = await pgwsToken(['--mode', 'r'], { PGWS_JWT_SECRET: '{"kty": "oct", "hidden": "s3cr3t-value"}' });
    expect(run).toMatchObject({ code: 2, stdout: '' });
    expect(run.stderr).toContain('PGWS_JWT_SECRET looks like JSON but is not a valid JWK or JWK Set');
    expect(run.stderr).not.toContain('s3cr3t-value');
  });
});

describe('pgws token: help', () => {
  it('documents the command with pgws token --help, exit 0', async () => {
    const run = await pgwsToken(['--help']);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    for (const text of ['--mode', '--channel', '--exp', '--claim', '--alg', '--jwt-secret', 'PGWS_JWT_SECRET', 'Exit codes']) {
      expect(run.stdout).toContain(text);
    }
  });

  it('is named in pgws --help', async () => {
    const run = await collectRun(runPgws(['--help'], cleanEnv()).proc);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^ {2}pgws token {2}\S/m);
  });
});

describe('pgws token: tokens open sockets on a real server', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });

  async function expectSocketOpens(serverSecret: string, env: Record<string, string>): Promise<void> {
    const srv = await startPgws(db.uri, { jwtSecret: serverSecret });
    const token = printedToken(await pgwsToken(['--mode', 'rw', '--channel', 'chat'], env));
    const client = await connect(`${srv.url}/chat/${token}`);
    const message = JSON.stringify({ channel: 'chat', payload: 'minted by pgws token' });
    await db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${message})`;
    expect(await client.next()).toBe(message);
    await client.close();
    await srv.stop();
  }

  it('with a plain secret', async () => {
    await expectSocketOpens(SECRET, { PGWS_JWT_SECRET: SECRET });
  });

  it("with a JWK Set that holds an RSA key and an oct key: the oct key's kid picks it", async () => {
    const { publicKey } = await generateKeyPair('RS256');
    const set = JSON.stringify({
      keys: [
        { ...(await exportJWK(publicKey)), kid: 'rsa' },
        { kty: 'oct', kid: 'hmac', k: Buffer.from(SECRET_BYTES).toString('base64url') },
      ],
    });
    // The daemon's own check agrees before the socket does.
    const minted = printedToken(await pgwsToken(['--mode', 'r', '--channel', 'chat'], { PGWS_JWT_SECRET: set }));
    expect(decodeProtectedHeader(minted).kid).toBe('hmac');
    const auth = await createAuthenticator({ jwtSecret: set, jwtSecretIsBase64: false });
    expect(await auth.authorize(`/chat/${minted}`)).toMatchObject({ ok: true });
    await expectSocketOpens(set, { PGWS_JWT_SECRET: set });
  });
});
