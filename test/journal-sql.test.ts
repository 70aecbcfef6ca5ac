// The journal's SQL (PROTOCOL.md §10, src/sql/journal.ts) through plain connections, with no
// pgws process: pgws.publish and pgws.send number, store and NOTIFY messages; the NOTIFY text
// carries "pgws_offset" right after the opening brace; bad messages are refused with 22023;
// and, under concurrent writers whose transactions commit in another order than they
// started, the offsets a raw LISTEN sees strictly increase and the journal replays them in
// the same order. A rolled-back publish sends nothing and leaves only a gap.
import postgres from 'postgres';
import { beforeAll, describe, expect, it } from 'vitest';
import { installSql } from '../src/sql/journal.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { watchChannel, type DbWatch } from './harness/db-watch.js';
import { track } from './harness/leftovers.js';
import { within } from './harness/within.js';

const LISTEN = 'journal-sql-listener';

let db: TestDatabase;
/** Every NOTIFY on LISTEN, raw, as any database session sees it. */
let watch: DbWatch;

/** The message text pgws.publish NOTIFYs for `message` published with offset `id`. */
const withOffset = (message: string, id: string): string => message.replace(/^(\s*)\{/, `$1{"pgws_offset":"${id}",`);

/** A client of its own, ended with the file. */
function client(max: number): postgres.Sql {
  const sql = postgres(db.uri, { max, onnotice: () => undefined, fetch_types: false });
  track(() => sql.end({ timeout: 1 }));
  return sql;
}

/** Waits for the NOTIFY of a marker published after the thing under test: what came before it came first. */
async function nextUntilMarker(marker: string): Promise<string[]> {
  const got: string[] = [];
  for (;;) {
    const text = await watch.next();
    if (text.includes(marker)) return got;
    got.push(text);
  }
}

beforeAll(async () => {
  db = await createTestDatabase();
  // The script has BEGIN/COMMIT in it: one connection, simple protocol (no parameters).
  const installer = client(1);
  await installer.unsafe(installSql(LISTEN));
  watch = await watchChannel(db.sql, LISTEN);
});

describe('pgws.publish and pgws.send', () => {
  it('return the new id; the NOTIFY text has "pgws_offset":"<id>", right after the opening brace and is otherwise the message', async () => {
    const message = '{"channel":"chat","payload":{"text":"hi","n":[1,2]}}';
    const [published] = await db.sql<{ id: string }[]>`SELECT pgws.publish(${message})::text AS id`;
    const id = published?.id ?? '';
    expect(id).toMatch(/^\d+$/);
    const notified = await watch.next();
    expect(notified.startsWith(`{"pgws_offset":"${id}",`)).toBe(true);
    expect(notified).toBe(withOffset(message, id));

    const [sent] = await db.sql<{ id: string }[]>`SELECT pgws.send('chat', 'hello')::text AS id`;
    expect(BigInt(sent?.id ?? '0')).toBeGreaterThan(BigInt(id));
    const sentText = await watch.next();
    expect(sentText.startsWith(`{"pgws_offset":"${sent?.id}",`)).toBe(true);
    const { pgws_offset: offset, ...rest } = JSON.parse(sentText) as Record<string, unknown>;
    expect(offset).toBe(sent?.id);
    expect(rest).toEqual({ channel: 'chat', payload: 'hello' });
  });

  it('keep the message as given, spacing and member order included, with leading white space', async () => {
    const message = ' \n {"payload" : {"b":1, "a":2},   "channel":"spaced"}';
    const [published] = await db.sql<{ id: string }[]>`SELECT pgws.publish(${message})::text AS id`;
    const id = published?.id ?? '';
    expect(await watch.next()).toBe(` \n {"pgws_offset":"${id}","payload" : {"b":1, "a":2},   "channel":"spaced"}`);
    const rows = await db.sql<{ channel: string; message: string }[]>`SELECT channel, message FROM pgws.journal WHERE id = ${id}`;
    // Stored without the offset, exactly as published.
    expect(rows).toEqual([{ channel: 'spaced', message }]);
  });

  it.each([
    ['not JSON', 'hello'],
    ['a JSON array', '[{"channel":"chat"}]'],
    ['a JSON string', '"chat"'],
    ['an object without channel', '{"payload":"x"}'],
    ['an object whose channel is a number', '{"channel":7}'],
    ['an object whose channel is null', '{"channel":null}'],
  ])('refuse %s with SQLSTATE 22023, storing and sending nothing', async (_what, message) => {
    const [before] = await db.sql<{ n: string }[]>`SELECT count(*)::text AS n FROM pgws.journal`;
    const error = await db.sql`SELECT pgws.publish(${message})`.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toMatchObject({ code: '22023' });
    const [after] = await db.sql<{ n: string }[]>`SELECT count(*)::text AS n FROM pgws.journal`;
    expect(after?.n).toBe(before?.n);
    await db.sql`SELECT pgws.send('refusal-marker', 'x')`;
    expect(await nextUntilMarker('refusal-marker')).toEqual([]);
  });

  it('a rolled-back publish sends nothing and leaves only a gap in the ids', async () => {
    const tx = client(1);
    let rolledBack = '';
    await tx
      .begin(async (sql) => {
        const [row] = await sql<{ id: string }[]>`SELECT pgws.send('rolled-back', 'never')::text AS id`;
        rolledBack = row?.id ?? '';
        throw new Error('roll back');
      })
      .catch(() => undefined);
    expect(rolledBack).toMatch(/^\d+$/);
    const [marker] = await db.sql<{ id: string }[]>`SELECT pgws.send('rollback-marker', 'x')::text AS id`;
    // Nothing arrived before the marker, and the marker is the next message.
    expect(await nextUntilMarker('rollback-marker')).toEqual([]);
    expect(BigInt(marker?.id ?? '0')).toBeGreaterThan(BigInt(rolledBack));
    const rows = await db.sql`SELECT id FROM pgws.journal WHERE id = ${rolledBack} OR channel = 'rolled-back'`;
    expect(rows).toEqual([]);
  });

  it('running the install script again keeps the rows and the numbering', async () => {
    const [before] = await db.sql<{ n: string; top: string }[]>`SELECT count(*)::text AS n, max(id)::text AS top FROM pgws.journal`;
    await client(1).unsafe(installSql(LISTEN));
    const [after] = await db.sql<{ n: string }[]>`SELECT count(*)::text AS n FROM pgws.journal`;
    expect(after?.n).toBe(before?.n);
    const [next] = await db.sql<{ id: string }[]>`SELECT pgws.send('again', 'x')::text AS id`;
    expect(BigInt(next?.id ?? '0')).toBeGreaterThan(BigInt(before?.top ?? '0'));
    // Taken, so the next test's watch starts clean.
    await nextUntilMarker('"again"');
  });
});

describe('commit order under concurrency', () => {
  const WRITERS = 20;
  const MESSAGES_PER_WRITER = 25;

  it(`${WRITERS} writers x ${MESSAGES_PER_WRITER} transactions that commit out of start order: live offsets strictly increase, and the journal replays the same sequence`, async () => {
    const channel = 'concurrency';
    const live: { offset: bigint; text: string }[] = [];
    let allSeen: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (allSeen = resolve));
    const { unlisten } = await db.sql.listen(LISTEN, (text) => {
      const parsed = JSON.parse(text) as { pgws_offset: string; channel: string };
      if (parsed.channel !== channel) return;
      live.push({ offset: BigInt(parsed.pgws_offset), text });
      if (live.length === WRITERS * MESSAGES_PER_WRITER) allSeen();
    });
    track(unlisten);

    const writers = client(WRITERS);
    // Each transaction waits a random 0-10 ms before it publishes and 0-20 ms after, so the
    // transactions, started together, reach pgws.publish and commit in another order than
    // they began; a writer that drew its id before an earlier one committed would show up as
    // a decreasing offset below.
    const startOrder: string[] = [];
    await Promise.all(
      Array.from({ length: WRITERS }, async (_, writer) => {
        for (let n = 0; n < MESSAGES_PER_WRITER; n += 1) {
          const payload = `${writer}:${n}`;
          startOrder.push(payload);
          await writers.begin(async (sql) => {
            await sql`SELECT pg_sleep(random() * 0.01)`;
            await sql`SELECT pgws.send(${channel}, ${payload})`;
            await sql`SELECT pg_sleep(random() * 0.02)`;
          });
        }
      }),
    );
    await within(done, 30_000, `all ${WRITERS * MESSAGES_PER_WRITER} NOTIFYs (got ${live.length})`);

    const offsets = live.map((entry) => entry.offset);
    for (let i = 1; i < offsets.length; i += 1) expect(offsets[i] ?? 0n, `offset #${i} after ${offsets[i - 1]}`).toBeGreaterThan(offsets[i - 1] ?? 0n);

    const replay = await db.sql<{ id: string; message: string }[]>`SELECT id::text AS id, message FROM pgws.journal WHERE channel = ${channel} ORDER BY journal.id`;
    expect(replay.map((row) => BigInt(row.id))).toEqual(offsets);
    // Same messages in the same order: the live text is the stored one with its offset.
    expect(replay.map((row) => withOffset(row.message, row.id))).toEqual(live.map((entry) => entry.text));
    // And the order really differed from the start order (else this test proved nothing).
    const payloads = live.map((entry) => (JSON.parse(entry.text) as { payload: string }).payload);
    expect(payloads).not.toEqual(startOrder);
    expect(new Set(payloads).size).toBe(WRITERS * MESSAGES_PER_WRITER);
  });

  it('transactions held open: the second publish waits for the first commit, and a rollback in between leaves a gap, never a reordering', async () => {
    const channel = 'held-open';
    const first = client(1);
    const second = client(1);
    const third = client(1);
    const seen: bigint[] = [];
    const { unlisten } = await db.sql.listen(LISTEN, (text) => {
      const parsed = JSON.parse(text) as { pgws_offset: string; channel: string };
      if (parsed.channel === channel) seen.push(BigInt(parsed.pgws_offset));
    });
    track(unlisten);

    // 1 publishes and holds its transaction; 2 and 3 start theirs and try to publish.
    let releaseFirst: () => void = () => undefined;
    const firstHeld = new Promise<void>((resolve) => (releaseFirst = resolve));
    let firstPublished: () => void = () => undefined;
    const firstIn = new Promise<void>((resolve) => (firstPublished = resolve));
    const ids: Record<string, bigint> = {};
    const one = first.begin(async (sql) => {
      const [row] = await sql<{ id: string }[]>`SELECT pgws.send(${channel}, 'one')::text AS id`;
      ids.one = BigInt(row?.id ?? '0');
      firstPublished();
      await firstHeld;
    });
    await firstIn;
    const two = second
      .begin(async (sql) => {
        const [row] = await sql<{ id: string }[]>`SELECT pgws.send(${channel}, 'two')::text AS id`;
        ids.two = BigInt(row?.id ?? '0');
        throw new Error('roll back');
      })
      .catch(() => undefined);
    const three = third.begin(async (sql) => {
      const [row] = await sql<{ id: string }[]>`SELECT pgws.send(${channel}, 'three')::text AS id`;
      ids.three = BigInt(row?.id ?? '0');
    });
    // Both are blocked on the write lock until the first commits.
    await expect.poll(async () => {
      const [row] = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM pg_locks
        WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`;
      return row?.n;
    }).toBe(2);
    expect(ids.two).toBeUndefined();
    expect(ids.three).toBeUndefined();
    releaseFirst();
    await Promise.all([one, two, three]);

    await expect.poll(() => seen.length).toBe(2);
    expect(seen[0]).toBe(ids.one);
    expect(seen[1]).toBe(ids.three);
    expect(seen[1] ?? 0n).toBeGreaterThan(seen[0] ?? 0n);
    const stored = await db.sql<{ id: string }[]>`SELECT id::text AS id FROM pgws.journal WHERE channel = ${channel} ORDER BY journal.id`;
    expect(stored.map((row) => BigInt(row.id))).toEqual(seen);
  });
});
