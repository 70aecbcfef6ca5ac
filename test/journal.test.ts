// The journal (PROTOCOL.md §10) end to end, on both transports: the SQL of `pgws sql install`
// applied to a real database, pgws with PGWS_JOURNAL=on, raw v1 and v2 sockets. Offsets
// stripped for v1 and carried by v2, frames and publishes journaled, `subscribed.offset`,
// catch-up with `since` while a writer keeps writing (no gap, no duplicate), filters on the
// history, the 10000-row limit, pruning, and the start-up check.
import type { JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_REPLAY_ROWS } from '../src/sql/journal.js';
import { connect } from './harness/client.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { installJournal } from './harness/journal.js';
import { stall } from './harness/stall.js';
import { LISTEN_CHANNEL, startPgws, type TestServer } from './harness/pgws.js';
import { token } from './harness/tokens.js';
import { connectV2, type Frame, type V2Client } from './harness/v2.js';
import { eventually, within } from './harness/within.js';

let db: TestDatabase;
let srv: TestServer;
let fresh = 0;
const channel = (): string => `j${++fresh}-${Date.now().toString(36)}`;

async function v2(claims: JWTPayload = { mode: 'rw' }, server: TestServer = srv): Promise<V2Client> {
  return connectV2(`${server.url}/`, await token(claims));
}

/** pgws.send from SQL; returns the offset. */
async function send(target: string, payload: string): Promise<string> {
  const [row] = await db.sql<{ id: string }[]>`SELECT pgws.send(${target}, ${payload})::text AS id`;
  return row?.id as string;
}

/** Reads message frames until `n` arrived (other frames fail the test). */
async function messages(client: V2Client, n: number, timeoutMs = 10_000): Promise<Frame[]> {
  const out: Frame[] = [];
  const deadline = Date.now() + timeoutMs;
  while (out.length < n) {
    const frame = await client.next(Math.max(1, deadline - Date.now()));
    expect(frame.type).toBe('message');
    out.push(frame);
  }
  return out;
}

/** Waits until the journal holds at least `n` rows of `target`. */
async function journaled(target: string, n: number): Promise<void> {
  await eventually(async () => {
    const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pgws.journal WHERE channel = ${target}`;
    return (row?.n ?? 0) >= n ? true : undefined;
  }, 5000, `${n} rows of ${target} journaled`);
}

const payloadOf = (frame: Frame): unknown => (frame.data as { payload?: unknown }).payload;

beforeAll(async () => {
  db = await createTestDatabase();
  await installJournal(db.uri);
  // Applied twice: idempotent.
  await installJournal(db.uri);
  srv = await startPgws(db.uri, { journal: true });
});

describe('offsets', () => {
  it('a v1 socket gets a journaled message exactly as published; a v2 frame carries its offset', async () => {
    const target = channel();
    const v1 = await connect(`${srv.url}/${target}/${await token({ mode: 'r' })}`);
    const client = await v2({ mode: 'r' });
    const { sub } = await client.request({ type: 'subscribe', channel: target });
    const offset = await send(target, 'hello');
    expect(await v1.next()).toBe(`{"channel" : "${target}", "payload" : "hello"}`);
    const [frame] = await messages(client, 1);
    expect(frame).toEqual({ type: 'message', sub, channel: target, data: { channel: target, payload: 'hello' }, offset });
  });

  it('subscribed carries the channel\'s newest offset, null when it has none', async () => {
    const target = channel();
    const client = await v2({ mode: 'r' });
    expect(await client.request({ type: 'subscribe', channel: target })).toMatchObject({ type: 'subscribed', offset: null });
    await send(target, 'one');
    const newest = await send(target, 'two');
    await messages(client, 2);
    const other = await v2({ mode: 'r' });
    expect(await other.request({ type: 'subscribe', channel: target })).toMatchObject({ type: 'subscribed', offset: newest });
  });

  it('socket frames and v2 publishes go through pgws.publish: journaled, numbered, delivered with offsets', async () => {
    const target = channel();
    const reader = await v2({ mode: 'r' });
    await reader.request({ type: 'subscribe', channel: target });
    const writer = await connect(`${srv.url}/${target}/${await token({ mode: 'w' })}`);
    writer.send('from v1');
    await journaled(target, 1); // two sockets' frames have no order between them
    const publisher = await v2({ mode: 'w' });
    expect(await publisher.request({ type: 'publish', channel: target, payload: { from: 'v2' } })).toMatchObject({ type: 'published' });
    const frames = await messages(reader, 2);
    expect(frames.map(payloadOf)).toEqual(['from v1', { from: 'v2' }]);
    const rows = await db.sql<{ id: string; message: string }[]>`SELECT id::text AS id, message FROM pgws.journal WHERE channel = ${target} ORDER BY journal.id`;
    expect(rows.map((r) => r.id)).toEqual(frames.map((f) => f.offset));
    expect(rows.map((r) => (JSON.parse(r.message) as { event: string }).event)).toEqual(['WebsocketMessage', 'WebsocketMessage']);
    expect(BigInt(rows[1]?.id ?? 0)).toBeGreaterThan(BigInt(rows[0]?.id ?? 0));
  });
});

describe('batches through the journal', () => {
  it('numbers a fast writer\'s frames in the order it sent them, batch after batch (pgws.publish_batch)', async () => {
    const target = channel();
    const reader = await v2({ mode: 'r' });
    await reader.request({ type: 'subscribe', channel: target });
    const writer = await connect(`${srv.url}/${target}/${await token({ mode: 'w' })}`);
    const sent = Array.from({ length: 300 }, (_, i) => `frame ${i}`);
    for (const text of sent) writer.send(text);
    const frames = await messages(reader, sent.length);
    expect(frames.map(payloadOf)).toEqual(sent);
    const offsets = frames.map((f) => BigInt(f.offset as string));
    for (let i = 1; i < offsets.length; i++) expect(offsets[i]).toBeGreaterThan(offsets[i - 1] as bigint);
    const rows = await db.sql<{ payload: string }[]>`SELECT message::json->>'payload' AS payload FROM pgws.journal WHERE channel = ${target} ORDER BY journal.id`;
    expect(rows.map((r) => r.payload)).toEqual(sent);
  });
});

describe('catch-up with since', () => {
  it('replays what a client missed from SQL, v1 frames and v2 publishes, once and in order, then live messages, while a writer keeps writing', async () => {
    const target = channel();
    const client = await v2({ mode: 'r' });
    await client.request({ type: 'subscribe', channel: target });
    await send(target, 'seen');
    const [seen] = await messages(client, 1);
    const since = seen?.offset as string;
    await client.close();

    // Missed: from SQL, a v1 frame and a v2 publish.
    await send(target, 'missed sql');
    const v1writer = await connect(`${srv.url}/${target}/${await token({ mode: 'w' })}`);
    v1writer.send('missed v1');
    // Frames of two sockets have no order between them: the v2 publish is
    // only sent once the v1 frame is in the journal, so the order to expect is known.
    await journaled(target, 3);
    const publisher = await v2({ mode: 'w' });
    await publisher.request({ type: 'publish', channel: target, payload: 'missed v2' });
    await journaled(target, 4);

    // A writer keeps writing while the client comes back.
    let writing = true;
    let written = 0;
    const writer = (async () => {
      while (writing) {
        await send(target, `live ${written}`);
        written++;
      }
    })();
    const back = await v2({ mode: 'r' });
    const answer = await back.request({ type: 'subscribe', channel: target, since });
    expect(answer).toMatchObject({ type: 'subscribed', channel: target, recovered: true });
    // Let the writer run past the catch-up, then stop it.
    await eventually(async () => (written >= 30 ? true : undefined), 10_000, 'the writer wrote on');
    writing = false;
    await writer;

    const expected = await db.sql<{ id: string }[]>`SELECT id::text AS id FROM pgws.journal WHERE channel = ${target} AND journal.id > ${since}::bigint ORDER BY journal.id`;
    const frames = await messages(back, expected.length);
    expect(frames.map((f) => f.offset)).toEqual(expected.map((r) => r.id));
    expect(frames.slice(0, 3).map(payloadOf)).toEqual(['missed sql', 'missed v1', 'missed v2']);
    await back.expectNothing(300);
  });

  it('replays a history larger than PGWS_MAX_BACKPRESSURE without closing the reader as slow, then a live message once', async () => {
    const target = channel();
    const since = await send(target, 'start');
    const rows = 6000;
    // About 2.6 MB of frames: more than twice the 1 MiB limit of a reader's buffer.
    await db.sql`SELECT count(pgws.send(${target}, ${'x'.repeat(400)} || n)) FROM generate_series(1, ${rows}) AS n`;
    const client = await v2({ mode: 'r' });
    expect(await client.request({ type: 'subscribe', channel: target, since }, 10_000)).toMatchObject({ type: 'subscribed', recovered: true });
    const live = send(target, 'live during the replay');
    const frames = await messages(client, rows + 1, 30_000);
    await live;
    expect(frames.at(-1)).toMatchObject({ data: { payload: 'live during the replay' } });
    expect(new Set(frames.map((f) => f.offset)).size).toBe(rows + 1);
    await client.expectNothing(300);
    expect(client.ws.readyState).toBe(client.ws.OPEN);
  });

  it('with a filter, replays only the matching history', async () => {
    const target = channel();
    const since = await send(target, JSON.stringify({ n: 0 }));
    for (let n = 1; n <= 6; n++) await send(target, JSON.stringify({ n }));
    const client = await v2({ mode: 'r' });
    // The payload is a string here (pgws.send): filter on the notification's own fields instead.
    const answer = await client.request({ type: 'subscribe', channel: target, since, filter: { payload: { in: ['{"n":2}', '{"n":5}'] } } });
    expect(answer).toMatchObject({ recovered: true });
    const frames = await messages(client, 2);
    expect(frames.map(payloadOf)).toEqual(['{"n":2}', '{"n":5}']);
    await client.expectNothing(300);
  });

  it(`answers recovered false, with live messages only, when more than ${MAX_REPLAY_ROWS} rows follow since`, async () => {
    const target = channel();
    const since = await send(target, 'start');
    await db.sql`SELECT count(pgws.send(${target}, 'bulk')) FROM generate_series(1, ${MAX_REPLAY_ROWS + 1})`;
    const client = await v2({ mode: 'r' });
    expect(await client.request({ type: 'subscribe', channel: target, since })).toMatchObject({ type: 'subscribed', recovered: false });
    await send(target, 'live');
    // Live messages only: the bulk rows' own NOTIFYs may still be reaching pgws (live, then), but
    // no history is replayed before them.
    const live: unknown[] = [];
    while (live.at(-1) !== 'live') live.push(payloadOf((await messages(client, 1))[0] as Frame));
    expect(new Set(live.slice(0, -1))).toEqual(new Set(live.length > 1 ? ['bulk'] : []));
    await client.expectNothing(300);
  });
});

describe('where a subscription starts', () => {
  it('a message committed before a subscribe, its NOTIFY still on the way, is history: not sent live, so a since from the answer\'s offset skips nothing', async () => {
    const target = channel();
    // The listener's backend frozen: the next message commits, its NOTIFY waits in PostgreSQL.
    const frozen = stall([srv.server.listenerPid() ?? 0]);
    try {
      const inFlight = await send(target, 'in flight');
      const client = await v2({ mode: 'r' });
      expect(await client.request({ type: 'subscribe', channel: target })).toMatchObject({ type: 'subscribed', offset: inFlight });
      frozen.resume();
      const live = await send(target, 'live');
      const [first] = await messages(client, 1);
      expect(first).toMatchObject({ offset: live, data: { payload: 'live' } });
      await client.expectNothing(300);
    } finally {
      frozen.resume();
    }
  });

  it('a pgws started after messages were journaled does not wait for their NOTIFYs: new subscriptions, with and without since, get a plain pg_notify at once', async () => {
    const target = channel();
    const since = await send(target, 'older');
    await send(target, 'before the start'); // committed before `later` LISTENs: it never reaches it
    const later = await startPgws(db.uri, { journal: true });
    try {
      const plain = await v2({ mode: 'r' }, later);
      expect(await plain.request({ type: 'subscribe', channel: target })).toMatchObject({ type: 'subscribed' });
      const resumed = await v2({ mode: 'r' }, later);
      expect(await resumed.request({ type: 'subscribe', channel: target, since })).toMatchObject({ type: 'subscribed', recovered: true });
      expect((await messages(resumed, 1))[0]).toMatchObject({ data: { payload: 'before the start' } });
      await db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${JSON.stringify({ channel: target, payload: 'plain' })})`;
      // Waiting for the listener to pass 'before the start' would hold it for 5 s (LISTENER_CATCH_UP_MS):
      // the journal's newest offset, read before the LISTEN, says it will never come.
      for (const client of [plain, resumed]) {
        const frame = await client.next(2500);
        expect(frame).toMatchObject({ type: 'message', data: { payload: 'plain' } });
        expect(frame.offset).toBeUndefined();
      }
    } finally {
      await later.stop();
    }
  });
});

describe('pruning and the start-up check', () => {
  it('prunes rows older than PGWS_JOURNAL_RETENTION in the background; a since before them is recovered false', async () => {
    const pruning = await startPgws(db.uri, { journal: true, journalRetention: 1 });
    const target = channel();
    const since = await send(target, 'old');
    await send(target, 'old too');
    await eventually(
      async () => {
        const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pgws.journal WHERE channel = ${target}`;
        return row?.n === 0 ? true : undefined;
      },
      20_000,
      'the old rows pruned',
    );
    const client = await v2({ mode: 'r' }, pruning);
    expect(await client.request({ type: 'subscribe', channel: target, since })).toMatchObject({ type: 'subscribed', recovered: false });
    await pruning.stop();
  });

  it('refuses to start with PGWS_JOURNAL=on on a database without the journal, naming pgws sql install --apply', async () => {
    const bare = await createTestDatabase();
    await expect(within(startPgws(bare.uri, { journal: true }), 15_000, 'start')).rejects.toThrow(/pgws sql install --apply/);
  });

  it('refuses to start as a role that may not use the journal, naming what it lacks and the GRANTs; with those GRANTs it starts and journals', async () => {
    const role = `pgws_rights_${Date.now().toString(36)}`;
    await db.sql.unsafe(`CREATE ROLE ${role} LOGIN PASSWORD 'rights'`);
    const url = new URL(db.uri);
    url.username = role;
    url.password = 'rights';
    try {
      const refused = within(startPgws(url.toString(), { journal: true }), 15_000, 'start');
      await expect(refused).rejects.toThrow(`role "${role}" may not use the journal: it lacks USAGE on schema pgws, SELECT on pgws.journal`);
      const grants = ((await refused.catch((err: unknown) => err)) as Error).message.split('As the journal\'s owner, run: ')[1] ?? '';
      expect(grants).toContain(`GRANT USAGE ON SCHEMA pgws TO "${role}";`);
      // The printed GRANTs, run as given, are all it takes.
      await db.sql.unsafe(grants);
      const granted = await startPgws(url.toString(), { journal: true });
      try {
        const target = channel();
        const reader = await v2({ mode: 'r' }, granted);
        await reader.request({ type: 'subscribe', channel: target });
        const writer = await v2({ mode: 'w' }, granted);
        expect(await writer.request({ type: 'publish', channel: target, payload: 'as the role' })).toMatchObject({ type: 'published' });
        const [frame] = await messages(reader, 1);
        expect(frame).toMatchObject({ data: { payload: 'as the role' } });
        expect(frame?.offset).toMatch(/^[0-9]+$/);
        const again = await v2({ mode: 'r' }, granted);
        const before = (BigInt(frame?.offset ?? '1') - 1n).toString();
        expect(await again.request({ type: 'subscribe', channel: target, since: before })).toMatchObject({ type: 'subscribed', recovered: true });
        expect(await messages(again, 1)).toMatchObject([{ offset: frame?.offset }]);
      } finally {
        await granted.stop();
      }
    } finally {
      await db.sql.unsafe(`DROP OWNED BY ${role}`);
      await db.sql.unsafe(`DROP ROLE ${role}`);
    }
  });
});

afterAll(async () => {
  await srv.stop();
});
