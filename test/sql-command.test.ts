// `pgws sql install | feed | unfeed` (PROTOCOL.md §10, §11) as users run it: bin/pgws.js in a
// child process. The SQL comes alone on stdout; --apply runs it against PGWS_DB_URI and says
// on stderr what it did; a database that refuses is exit 1 with one line that never shows the
// password; a bad command line is exit 2.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { beforeAll, describe, expect, it } from 'vitest';
import { feedSql, unfeedSql } from '../src/sql/feed.js';
import { installSql } from '../src/sql/journal.js';
import { cleanEnv, collectRun, runPgws, type Run } from './harness/child.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { track } from './harness/leftovers.js';

const DEFAULT_LISTEN = 'postgres-websockets-listener';

/** `pgws sql ...args` through the harness, with only `env`'s PGWS_ variables. */
async function pgwsSql(args: readonly string[], env: Record<string, string> = {}, cwd?: string): Promise<Run> {
  const child = runPgws(['sql', ...args], cleanEnv(env), cwd === undefined ? {} : { cwd });
  return collectRun(child.proc);
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgws-sql-'));
  track(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `uri` with another password (and, given, another port). */
function withPassword(uri: string, password: string, port?: number): string {
  const url = new URL(uri);
  url.password = password;
  if (port !== undefined) url.port = String(port);
  return url.toString();
}

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

describe('pgws sql install', () => {
  it('prints the journal SQL alone on stdout, for the default listen channel, touching no database', async () => {
    // An unusable PGWS_DB_URI: without --apply it is not even read.
    const result = await pgwsSql(['install'], { PGWS_DB_URI: 'not a uri' });
    expect(result).toEqual({ code: 0, stdout: installSql(DEFAULT_LISTEN), stderr: '' });
  });

  it('reads the listen channel as the server does: flag, then environment, then .env', async () => {
    const cwd = tempDir();
    writeFileSync(join(cwd, '.env'), 'PGWS_LISTEN_CHANNEL=from-dotenv\n');
    expect((await pgwsSql(['install'], {}, cwd)).stdout).toBe(installSql('from-dotenv'));
    expect((await pgwsSql(['install'], { PGWS_LISTEN_CHANNEL: 'from-env' }, cwd)).stdout).toBe(installSql('from-env'));
    expect((await pgwsSql(['install', '--listen-channel', 'from-flag'], { PGWS_LISTEN_CHANNEL: 'from-env' }, cwd)).stdout).toBe(installSql('from-flag'));
  });

  it('--apply installs the journal, says so on stderr, and is idempotent: a second run keeps the rows', async () => {
    const first = await pgwsSql(['install', '--apply'], { PGWS_DB_URI: db.uri });
    expect(first).toMatchObject({ code: 0, stdout: '' });
    expect(first.stderr).toMatch(/^pgws sql install \(postgres:\/\/\*\*\*:\*\*\*@[^)]+\): installed the journal.*'postgres-websockets-listener'\n$/);
    const [published] = await db.sql<{ id: string }[]>`SELECT pgws.send('chat', 'kept')::text AS id`;

    const second = await pgwsSql(['install', '--apply'], { PGWS_DB_URI: db.uri });
    expect(second).toMatchObject({ code: 0, stdout: '' });
    expect(second.stderr).toContain('rows kept');
    expect(second.stderr.split('\n')).toHaveLength(2);
    const rows = await db.sql`SELECT id::text AS id, channel FROM pgws.journal`;
    expect(rows).toEqual([{ id: published?.id, channel: 'chat' }]);
    const [next] = await db.sql<{ id: string }[]>`SELECT pgws.send('chat', 'after')::text AS id`;
    expect(BigInt(next?.id ?? '0')).toBeGreaterThan(BigInt(published?.id ?? '0'));
  });

  it('an unreachable database: exit 1, one line on stderr naming the host, without the password', async () => {
    const password = 'Unreachable-Secret-4711';
    const result = await pgwsSql(['install', '--apply'], { PGWS_DB_URI: withPassword(db.uri, password, 1) });
    expect(result).toMatchObject({ code: 1, stdout: '' });
    expect(result.stderr).toMatch(/^pgws sql install: not applied to postgres:\/\/\*\*\*:\*\*\*@[^ ]+:1\/\S+: .*ECONNREFUSED.*\n$/);
    expect(result.stderr).not.toContain(password);
  });

  it('a wrong password: exit 1 with the server\'s reason, and neither password shown', async () => {
    const password = 'Wrong-Secret-0815';
    const result = await pgwsSql(['install', '--apply'], { PGWS_DB_URI: withPassword(db.uri, password) });
    expect(result).toMatchObject({ code: 1, stdout: '' });
    expect(result.stderr).toMatch(/^pgws sql install: not applied to .*password authentication failed.*\(28P01\)\n$/);
    expect(result.stderr).not.toContain(password);
    const realPassword = new URL(db.uri).password;
    if (realPassword !== '') expect(result.stderr).not.toContain(realPassword);
  });

  it('--apply without a usable PGWS_DB_URI is a command-line error (exit 2), the value never shown', async () => {
    const missing = await pgwsSql(['install', '--apply']);
    expect(missing).toMatchObject({ code: 2, stdout: '' });
    expect(missing.stderr).toContain('PGWS_DB_URI (--db-uri): required with --apply');
    const wrongScheme = await pgwsSql(['install', '--apply'], { PGWS_DB_URI: 'mysql://root:Hidden-Pass-1@localhost/db' });
    expect(wrongScheme).toMatchObject({ code: 2, stdout: '' });
    expect(wrongScheme.stderr).toContain('must start with postgres://');
    expect(wrongScheme.stderr).not.toContain('Hidden-Pass-1');
  });
});

describe('pgws sql feed and unfeed', () => {
  it('print their SQL alone on stdout, the listen channel baked in', async () => {
    const feed = await pgwsSql(['feed', 'public.todos', '--channel', 'todos', '--columns', 'id,title'], { PGWS_LISTEN_CHANNEL: 'my-listener' });
    expect(feed).toEqual({
      code: 0,
      stdout: feedSql({ schema: 'public', table: 'todos', channel: 'todos', columns: ['id', 'title'], listenChannel: 'my-listener' }),
      stderr: '',
    });
    expect(feed.stdout).toContain("pg_notify(listen_channel, message)");
    expect(feed.stdout).toContain("listen_channel constant text := 'my-listener';");
    const unfeed = await pgwsSql(['unfeed', 'Public."Todo Items"']);
    expect(unfeed).toEqual({ code: 0, stdout: unfeedSql({ schema: 'public', table: 'Todo Items' }), stderr: '' });
  });

  it('the printed SQL, pasted as is into a session, feeds the table; the printed unfeed removes it', async () => {
    await db.sql`CREATE TABLE public.pasted (id int PRIMARY KEY, title text)`;
    const session = postgres(db.uri, { max: 1, onnotice: () => undefined });
    track(() => session.end({ timeout: 1 }));
    const triggers = () => db.sql`SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.pasted'::regclass AND NOT tgisinternal`;
    await session.unsafe((await pgwsSql(['feed', 'public.pasted'])).stdout);
    // Twice, as a migration run again would.
    await session.unsafe((await pgwsSql(['feed', 'public.pasted'])).stdout);
    expect(await triggers()).toEqual([{ tgname: 'pgws_feed' }]);
    await session.unsafe((await pgwsSql(['unfeed', 'public.pasted'])).stdout);
    expect(await triggers()).toEqual([]);
  });

  it('--apply on a missing table or column: exit 1, saying which, and nothing created', async () => {
    const noTable = await pgwsSql(['feed', 'public.nowhere', '--apply'], { PGWS_DB_URI: db.uri });
    expect(noTable).toMatchObject({ code: 1, stdout: '' });
    expect(noTable.stderr).toMatch(/^pgws sql feed: not applied to .*: there is no table "public"\."nowhere" \(42P01\)\n$/);

    await db.sql`CREATE TABLE public.notes (id int PRIMARY KEY, body text)`;
    const noColumn = await pgwsSql(['feed', 'public.notes', '--columns', 'id,bdy', '--apply'], { PGWS_DB_URI: db.uri });
    expect(noColumn).toMatchObject({ code: 1, stdout: '' });
    expect(noColumn.stderr).toMatch(/table "public"\."notes" has no column bdy \(42703\)\n$/);
    expect(await db.sql`SELECT proname FROM pg_proc WHERE proname LIKE 'pgws_feed_%'`).toEqual([]);
  });

  it('--apply feeds and unfeeds, saying what it did on stderr', async () => {
    const session = postgres(db.uri, { max: 1, onnotice: () => undefined });
    track(() => session.end({ timeout: 1 }));
    await session.unsafe(installSql(DEFAULT_LISTEN));
    const fed = await pgwsSql(['feed', 'public.notes', '--apply'], { PGWS_DB_URI: db.uri });
    expect(fed).toMatchObject({ code: 0, stdout: '' });
    // The journal is installed: the feed says it goes through it.
    expect(fed.stderr).toMatch(/^pgws sql feed \(.*\): fed "public"\."notes": each committed change goes to channel "public.notes" through pgws.publish/);
    const unfed = await pgwsSql(['unfeed', 'public.notes', '--apply'], { PGWS_DB_URI: db.uri });
    expect(unfed).toMatchObject({ code: 0, stdout: '' });
    expect(unfed.stderr).toMatch(/: removed the feed of "public"\."notes"\n$/);
    const again = await pgwsSql(['unfeed', 'public.notes', '--apply'], { PGWS_DB_URI: db.uri });
    expect(again).toMatchObject({ code: 0, stdout: '' });
    expect(again.stderr).toMatch(/: "public"\."notes" had no feed: nothing to remove\n$/);
  });
});

describe('pgws sql: the command line', () => {
  it.each([
    ['no command', [], /a command is needed/],
    ['an unknown command', ['instal'], /unknown command "instal" \(did you mean install\?\)/],
    ['an unknown flag', ['install', '--aply'], /unknown option --aply \(did you mean --apply\?\)/],
    ['a flag of another command', ['install', '--channel', 'x'], /unknown option --channel/],
    ['feed without its table', ['feed', '--channel', 'x'], /<schema\.table>: required/],
    ['a table without its schema', ['feed', 'todos'], /expected <schema>\.<table>/],
    ['two tables', ['unfeed', 'public.a', 'public.b'], /unexpected argument/],
    ['a flag without its value', ['feed', 'public.todos', '--columns'], /--columns: the flag needs a value/],
    ['an empty column name', ['feed', 'public.todos', '--columns', 'id,,title'], /--columns: a name is empty/],
    ['an empty channel', ['feed', 'public.todos', '--channel', ''], /--channel: must not be empty/],
  ])('%s: exit 2, nothing on stdout, the reason on stderr', async (_what, args, reason) => {
    const result = await pgwsSql(args);
    expect(result).toMatchObject({ code: 2, stdout: '' });
    expect(result.stderr).toMatch(reason);
  });

  it('--help: the commands, and each command\'s options, on stdout with exit 0', async () => {
    const overview = await pgwsSql(['--help']);
    expect(overview).toMatchObject({ code: 0, stderr: '' });
    expect(overview.stdout).toMatch(/^Usage: pgws sql <command>/);
    expect(overview.stdout).toContain('feed <schema.table>');
    const feed = await pgwsSql(['feed', '--help', '--bogus']);
    expect(feed).toMatchObject({ code: 0, stderr: '' });
    expect(feed.stdout).toMatch(/^Usage: pgws sql feed <schema\.table>/);
    for (const flag of ['--channel <name>', '--columns <a,b,c>', '--apply', '--listen-channel <name>', '--db-uri <uri>']) expect(feed.stdout).toContain(flag);
    const top = await collectRun(runPgws(['--help'], cleanEnv()).proc);
    expect(top.stdout).toMatch(/pgws sql +print \(or run, with --apply\)/);
  });
});
