// The daemon as a process: exit codes, signals, and the embedded mode of `npm start`.
import { describe, expect, it } from 'vitest';
import { freePort } from '../src/embedded.js';
import { runPgws, logMsg, cleanEnv } from './harness/child.js';
import { connect } from './harness/client.js';
import { createTestDatabase } from './harness/db.js';
import { LISTEN_CHANNEL, SECRET } from './harness/pgws.js';
import { token } from './harness/tokens.js';
import postgres from 'postgres';

const baseArgs = async (dbUri: string): Promise<string[]> => [
  '--db-uri', dbUri, '--jwt-secret', SECRET, '--host', '127.0.0.1', '--port', String(await freePort()), '--retries', '1',
];

const portOf = (readyLine: string): number => (JSON.parse(readyLine) as { port: number }).port;

describe('pgws process', () => {
  it('relays end to end, and on SIGTERM closes sockets with 1001 and exits 0', async () => {
    const db = await createTestDatabase();
    const child = runPgws(await baseArgs(db.uri));
    const port = portOf(await child.waitForLine(logMsg('pgws ready')));
    const client = await connect(`ws://127.0.0.1:${port}/chat/${await token({ mode: 'rw' })}`);
    await db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${'{"channel":"chat","payload":"from psql"}'})`;
    expect(await client.next()).toBe('{"channel":"chat","payload":"from psql"}');

    const started = Date.now();
    child.proc.kill('SIGTERM');
    expect((await client.closed).code).toBe(1001);
    expect((await child.exited).code).toBe(0);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('exits 1 with one clear line when the database cannot be reached after PGWS_RETRIES attempts', async () => {
    const deadPort = await freePort();
    const child = runPgws([...(await baseArgs(`postgres://app:hunter2@127.0.0.1:${deadPort}/app`)), '--retries', '2']);
    const { code } = await child.exited;
    expect(code).toBe(1);
    const line = child.stderr.find((l) => l.startsWith('pgws: could not start'));
    expect(line).toMatch(/after 2 attempt\(s\).*ECONNREFUSED/);
    expect([...child.stdout, ...child.stderr].join('\n')).not.toContain('hunter2');
  });

  it('exits non-zero when the listener is lost and PGWS_CHECK_LISTENER_INTERVAL is not set', async () => {
    const db = await createTestDatabase();
    const child = runPgws(await baseArgs(db.uri));
    const ready = JSON.parse(await child.waitForLine(logMsg('listening'))) as { pid: number };
    await db.sql`SELECT pg_terminate_backend(${ready.pid})`;
    const { code } = await child.exited;
    expect(code).toBe(1);
    expect(child.stdout.some(logMsg('listener lost and PGWS_CHECK_LISTENER_INTERVAL is not set: exiting so a supervisor can restart pgws'))).toBe(true);
  });

  it('logs the effective config at start-up with secrets redacted', async () => {
    const db = await createTestDatabase();
    const child = runPgws(await baseArgs(db.uri));
    const starting = JSON.parse(await child.waitForLine(logMsg('starting pgws'))) as { config: Record<string, unknown> };
    await child.waitForLine(logMsg('pgws ready'));
    expect(starting.config).toMatchObject({ listenChannel: LISTEN_CHANNEL, jwtSecret: '[redacted]' });
    const all = child.stdout.join('\n');
    expect(all).not.toContain(SECRET);
    expect(all).not.toContain(new URL(db.uri).password);
    child.proc.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);
  });

  it('--embedded (npm start) runs its own PostgreSQL, serves the page and prints a working URL', async () => {
    const child = runPgws(['--embedded', '--port', String(await freePort())], cleanEnv());
    const urlLine = await child.waitForLine((l) => /http:\/\/localhost:\d+\/#token=/.test(l));
    const match = /http:\/\/localhost:(\d+)\/#token=(\S+)/.exec(urlLine);
    const [, port, jwt] = match ?? [];
    const page = await fetch(`http://127.0.0.1:${port}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');

    const client = await connect(`ws://127.0.0.1:${port}/chat/${jwt}`);
    const psqlLine = child.stderr.find((l) => l.includes('psql '));
    const uri = /psql '([^']+)'/.exec(psqlLine ?? '')?.[1] ?? '';
    const sql = postgres(uri, { max: 1 });
    await sql`SELECT pg_notify(${LISTEN_CHANNEL}, json_build_object('channel','chat','payload','hello')::text)`;
    await sql.end();
    expect(JSON.parse(await client.next())).toEqual({ channel: 'chat', payload: 'hello' });

    child.proc.kill('SIGINT');
    expect((await client.closed).code).toBe(1001);
    expect((await child.exited).code).toBe(0);
  });

  it('without a database URI and without --embedded, exits 2 saying how to give one', async () => {
    const child = runPgws(['--jwt-secret', 'x'], cleanEnv());
    expect((await child.exited).code).toBe(2);
    expect(child.stderr.join('\n')).toMatch(/PGWS_DB_URI.*required/);
  });
});
