// Table feeds (PROTOCOL.md §11, src/sql/feed.ts) against a real PostgreSQL: `pgws sql feed
// --apply` (run in-process, as cli.ts runs it) installs a trigger, and each committed INSERT,
// UPDATE and DELETE arrives on the listen channel as
//   {"channel":NAME,"payload":{"op":...,"schema":...,"table":...,"new":...,"old":...}}
// through pg_notify without the journal and through pgws.publish (with an offset) once the
// journal is installed, even when the feed was made before it. What a raw LISTEN sees is checked
// text for text; "nothing arrives" is checked with a marker NOTIFY sent after, never a sleep.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { run } from '../src/commands/sql.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { watchChannel, type DbWatch } from './harness/db-watch.js';
import { track } from './harness/leftovers.js';

const LISTEN = 'postgres-websockets-listener';

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** `pgws sql ...args` in-process, with only `env` as the environment and a cwd without .env. */
async function pgwsSql(args: readonly string[], env: Record<string, string>): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const cwd = mkdtempSync(join(tmpdir(), 'pgws-feed-'));
  const code = await run(args, { env, cwd, writeOut: (text) => (stdout += text), writeErr: (text) => (stderr += text) });
  return { code, stdout, stderr };
}

/** `pgws sql feed|unfeed ... --apply` against `db`, which must succeed. */
async function applied(db: TestDatabase, args: readonly string[]): Promise<Run> {
  const result = await pgwsSql([...args, '--apply'], { PGWS_DB_URI: db.uri });
  expect(result, result.stderr).toMatchObject({ code: 0, stdout: '' });
  return result;
}

/** The exact text of a feed message as the trigger builds it. */
function feedText(channel: string, payload: Record<string, unknown>): string {
  return JSON.stringify({ channel, payload });
}

/** What arrives before a marker NOTIFY sent now: everything the statements before it sent. */
async function untilMarker(db: TestDatabase, watch: DbWatch, channel = LISTEN): Promise<string[]> {
  const marker = `marker-${randomBytes(4).toString('hex')}`;
  await db.sql`SELECT pg_notify(${channel}, ${marker})`;
  const got: string[] = [];
  for (;;) {
    const text = await watch.next();
    if (text === marker) return got;
    got.push(text);
  }
}

/** A row of `pad` characters in its text column makes a message of exactly this many bytes. */
function padFor(bytes: number, make: (pad: string) => string): string {
  const base = Buffer.byteLength(make(''));
  return 'x'.repeat(bytes - base);
}

describe('without the journal: through pg_notify on the listen channel', () => {
  let db: TestDatabase;
  let watch: DbWatch;

  beforeAll(async () => {
    db = await createTestDatabase();
    watch = await watchChannel(db.sql, LISTEN);
  });

  it('INSERT, UPDATE and DELETE each send the documented message, new and old in column order', async () => {
    await db.sql`CREATE TABLE public.todos (id serial PRIMARY KEY, title text NOT NULL, done boolean NOT NULL DEFAULT false)`;
    const fed = await applied(db, ['feed', 'public.todos']);
    expect(fed.stderr).toContain('through pg_notify');
    await db.sql`INSERT INTO todos (id, title) VALUES (1, 'buy milk')`;
    await db.sql`UPDATE todos SET done = true WHERE id = 1`;
    await db.sql`DELETE FROM todos WHERE id = 1`;
    const head = { schema: 'public', table: 'todos' };
    const row = { id: 1, title: 'buy milk', done: false };
    expect(await untilMarker(db, watch)).toEqual([
      feedText('public.todos', { op: 'INSERT', ...head, new: row, old: null }),
      feedText('public.todos', { op: 'UPDATE', ...head, new: { ...row, done: true }, old: row }),
      feedText('public.todos', { op: 'DELETE', ...head, new: null, old: { ...row, done: true } }),
    ]);
  });

  it('one statement changing several rows sends one message per row', async () => {
    await db.sql`INSERT INTO todos (id, title) VALUES (10, 'a'), (11, 'b'), (12, 'c')`;
    const messages = (await untilMarker(db, watch)).map((text) => JSON.parse(text) as { payload: { new: { id: number } } });
    expect(messages.map((message) => message.payload.new.id)).toEqual([10, 11, 12]);
    await db.sql`DELETE FROM todos`;
    expect(await untilMarker(db, watch)).toHaveLength(3);
  });

  it('a rolled-back transaction sends nothing', async () => {
    await db.sql
      .begin(async (sql) => {
        await sql`INSERT INTO todos (id, title) VALUES (2, 'never')`;
        await sql`UPDATE todos SET title = 'never either'`;
        throw new Error('roll back');
      })
      .catch(() => undefined);
    expect(await untilMarker(db, watch)).toEqual([]);
  });

  it('feeding twice replaces the feed: one trigger, one message per change', async () => {
    await applied(db, ['feed', 'public.todos']);
    const again = await applied(db, ['feed', 'public.todos']);
    expect(again.stderr).toContain('replaced the feed');
    const triggers = await db.sql`SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.todos'::regclass AND NOT tgisinternal`;
    expect(triggers).toEqual([{ tgname: 'pgws_feed' }]);
    await db.sql`INSERT INTO todos (id, title) VALUES (3, 'once')`;
    expect(await untilMarker(db, watch)).toHaveLength(1);
  });

  it('--columns restricts new and old to those columns, in table order; --channel names the channel', async () => {
    await applied(db, ['feed', 'public.todos', '--columns', 'done,ID', '--channel', 'todo-list']);
    await db.sql`UPDATE todos SET title = 'renamed' WHERE id = 3`;
    expect(await untilMarker(db, watch)).toEqual([
      feedText('todo-list', { op: 'UPDATE', schema: 'public', table: 'todos', new: { id: 3, done: false }, old: { id: 3, done: false } }),
    ]);
  });

  it('a row too big for a notification (20 kB) is sent with its primary key columns only and "truncated":true', async () => {
    await db.sql`CREATE TABLE public.docs (part int, name text, body text, PRIMARY KEY (name, part))`;
    await applied(db, ['feed', 'public.docs']);
    const body = 'é'.repeat(10_000);
    await db.sql`INSERT INTO docs VALUES (1, 'readme', ${body})`;
    await db.sql`UPDATE docs SET body = ${`${body}!`}`;
    await db.sql`DELETE FROM docs`;
    const head = { schema: 'public', table: 'docs' };
    // The key columns, in the table's column order.
    const key = { part: 1, name: 'readme' };
    expect(await untilMarker(db, watch)).toEqual([
      feedText('public.docs', { op: 'INSERT', ...head, new: key, old: null, truncated: true }),
      feedText('public.docs', { op: 'UPDATE', ...head, new: key, old: key, truncated: true }),
      feedText('public.docs', { op: 'DELETE', ...head, new: null, old: key, truncated: true }),
    ]);
  });

  it('is whole up to 7999 bytes and truncated from 8000 (the NOTIFY limit)', async () => {
    await db.sql`CREATE TABLE public.sized (id int PRIMARY KEY, body text)`;
    await applied(db, ['feed', 'public.sized']);
    const message = (id: number, body: string) =>
      feedText('public.sized', { op: 'INSERT', schema: 'public', table: 'sized', new: { id, body }, old: null });
    const fits = padFor(7999, (pad) => message(1, pad));
    const over = padFor(8000, (pad) => message(2, pad));
    await db.sql`INSERT INTO sized VALUES (1, ${fits}), (2, ${over})`;
    const [whole, cut] = await untilMarker(db, watch);
    expect(Buffer.byteLength(whole ?? '')).toBe(7999);
    expect(whole).toBe(message(1, fits));
    expect(cut).toBe(feedText('public.sized', { op: 'INSERT', schema: 'public', table: 'sized', new: { id: 2 }, old: null, truncated: true }));
  });

  it('a table without a primary key: a warning when fed, and a too-big row is still announced, with new and old null', async () => {
    await db.sql`CREATE TABLE public.logs (line text)`;
    const fed = await applied(db, ['feed', 'public.logs']);
    expect(fed.stderr).toMatch(/warning: table "public"\."logs" has no primary key/);
    await db.sql`INSERT INTO logs VALUES ('short'), (${'y'.repeat(20_000)})`;
    expect(await untilMarker(db, watch)).toEqual([
      feedText('public.logs', { op: 'INSERT', schema: 'public', table: 'logs', new: { line: 'short' }, old: null }),
      feedText('public.logs', { op: 'INSERT', schema: 'public', table: 'logs', new: null, old: null, truncated: true }),
    ]);
  });

  it('unfeed stops the messages and drops the trigger and its function; a second unfeed is fine', async () => {
    const removed = await applied(db, ['unfeed', 'public.todos']);
    expect(removed.stderr).toContain('removed the feed');
    await db.sql`INSERT INTO todos (id, title) VALUES (4, 'unfed')`;
    await db.sql`DELETE FROM todos`;
    expect(await untilMarker(db, watch)).toEqual([]);
    expect(await db.sql`SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.todos'::regclass AND NOT tgisinternal`).toEqual([]);
    expect(await db.sql`SELECT proname FROM pg_proc WHERE proname = 'pgws_feed_todos'`).toEqual([]);
    const again = await applied(db, ['unfeed', 'public.todos']);
    expect(again.stderr).toContain('had no feed');
  });

  it('quoted names, an odd channel (quotes, $pgws$, %s) and another listen channel', async () => {
    await db.sql.unsafe(`CREATE SCHEMA "My App"; CREATE TABLE "My App"."Todo Items" ("Id" int PRIMARY KEY, "Note" text)`);
    const otherListen = 'other listener';
    const other = await watchChannel(db.sql, otherListen);
    await applied(db, ['feed', '"My App"."Todo Items"', '--listen-channel', otherListen]);
    await db.sql.unsafe(`INSERT INTO "My App"."Todo Items" VALUES (1, 'it''s')`);
    const head = { schema: 'My App', table: 'Todo Items' };
    expect(await untilMarker(db, other, otherListen)).toEqual([
      feedText('My App.Todo Items', { op: 'INSERT', ...head, new: { Id: 1, Note: "it's" }, old: null }),
    ]);
    const odd = `it's $pgws$ "odd" %s \\`;
    await applied(db, ['feed', '"My App"."Todo Items"', '--channel', odd, '--listen-channel', otherListen]);
    await db.sql.unsafe(`DELETE FROM "My App"."Todo Items"`);
    expect(await untilMarker(db, other, otherListen)).toEqual([feedText(odd, { op: 'DELETE', ...head, new: null, old: { Id: 1, Note: "it's" } })]);
    // Nothing on the default listen channel.
    expect(await untilMarker(db, watch)).toEqual([]);
    await applied(db, ['unfeed', '"My App"."Todo Items"']);
  });
});

describe('with the journal: through pgws.publish, with an offset', () => {
  let db: TestDatabase;
  let watch: DbWatch;

  beforeAll(async () => {
    db = await createTestDatabase();
    watch = await watchChannel(db.sql, LISTEN);
    await db.sql`CREATE TABLE public.todos (id int PRIMARY KEY, title text NOT NULL)`;
  });

  it('a feed made before the journal switches to pgws.publish once the journal is installed, without being made again', async () => {
    await applied(db, ['feed', 'public.todos']);
    await db.sql`INSERT INTO todos VALUES (1, 'before')`;
    const head = { schema: 'public', table: 'todos' };
    expect(await untilMarker(db, watch)).toEqual([feedText('public.todos', { op: 'INSERT', ...head, new: { id: 1, title: 'before' }, old: null })]);

    const installed = await pgwsSql(['install', '--apply'], { PGWS_DB_URI: db.uri });
    expect(installed, installed.stderr).toMatchObject({ code: 0, stdout: '' });
    await db.sql`INSERT INTO todos VALUES (2, 'after')`;
    await db.sql`UPDATE todos SET title = 'changed' WHERE id = 2`;
    await db.sql`DELETE FROM todos WHERE id = 2`;
    const messages = [
      feedText('public.todos', { op: 'INSERT', ...head, new: { id: 2, title: 'after' }, old: null }),
      feedText('public.todos', { op: 'UPDATE', ...head, new: { id: 2, title: 'changed' }, old: { id: 2, title: 'after' } }),
      feedText('public.todos', { op: 'DELETE', ...head, new: null, old: { id: 2, title: 'changed' } }),
    ];
    const live = await untilMarker(db, watch);
    const rows = await db.sql<{ id: string; message: string }[]>`
      SELECT id::text AS id, message FROM pgws.journal WHERE channel = 'public.todos' ORDER BY journal.id`;
    // Stored as sent, without the offset; NOTIFYed with it right after the brace.
    expect(rows.map((row) => row.message)).toEqual(messages);
    expect(live).toEqual(rows.map((row) => row.message.replace(/^\{/, `{"pgws_offset":"${row.id}",`)));

    const fedAgain = await applied(db, ['feed', 'public.todos']);
    expect(fedAgain.stderr).toContain('through pgws.publish');
  });

  it('a rolled-back change sends nothing and leaves no journal row', async () => {
    const [before] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pgws.journal`;
    await db.sql
      .begin(async (sql) => {
        await sql`INSERT INTO todos VALUES (3, 'never')`;
        throw new Error('roll back');
      })
      .catch(() => undefined);
    expect(await untilMarker(db, watch)).toEqual([]);
    const [after] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pgws.journal`;
    expect(after?.n).toBe(before?.n);
  });

  it('leaves room for the offset: a message that would fit pg_notify but not with "pgws_offset" is truncated', async () => {
    const message = (pad: string) =>
      feedText('public.todos', { op: 'INSERT', schema: 'public', table: 'todos', new: { id: 5, title: pad }, old: null });
    // 7990 bytes: under the 8000 of NOTIFY alone, over it once "pgws_offset":"<up to 19 digits>", is in.
    const title = padFor(7990, message);
    await db.sql`INSERT INTO todos VALUES (5, ${title})`;
    const [notified] = await untilMarker(db, watch);
    expect(JSON.parse(notified ?? '{}')).toMatchObject({
      channel: 'public.todos',
      payload: { op: 'INSERT', new: { id: 5 }, old: null, truncated: true },
    });
    // A message that fits with its offset goes whole.
    await db.sql`INSERT INTO todos VALUES (7, 'short')`;
    const [whole] = await untilMarker(db, watch);
    expect(JSON.parse(whole ?? '{}')).toMatchObject({ payload: { op: 'INSERT', new: { id: 7, title: 'short' } } });
    expect(JSON.parse(whole ?? '{}')).not.toHaveProperty('payload.truncated');
  });

  it('a role that may write the table but not the journal still feeds it (the trigger runs as its owner)', async () => {
    expect((await pgwsSql(['install', '--apply'], { PGWS_DB_URI: db.uri })).code).toBe(0);
    await applied(db, ['feed', 'public.todos']);
    const role = `pgws_writer_${randomBytes(4).toString('hex')}`;
    await db.sql.unsafe(`CREATE ROLE ${role} NOLOGIN; GRANT INSERT, SELECT ON public.todos TO ${role}`);
    track(async () => {
      await db.sql.unsafe(`DROP OWNED BY ${role}; DROP ROLE ${role}`).catch(() => undefined);
    });
    await db.sql.begin(async (sql) => {
      await sql.unsafe(`SET LOCAL ROLE ${role}`);
      // The role itself may not publish...
      await expect(sql.savepoint((inner) => inner`SELECT pgws.send('x', 'y')`)).rejects.toMatchObject({ code: '42501' });
      // ...but its write is fed, through the journal.
      await sql`INSERT INTO todos VALUES (6, 'by a writer')`;
    });
    const [notified] = await untilMarker(db, watch);
    expect(notified).toMatch(/^\{"pgws_offset":"\d+","channel":"public.todos","payload":\{"op":"INSERT"/);
  });
});
