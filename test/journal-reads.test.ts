// The shared journal reads of v2 catch-up (src/v2/history.ts) against a real journal: subscribes
// queued behind running reads share one read of the same (channel, since), a read that already
// runs is never joined (that would open a gap: see the top of history.ts), and a subscription's
// frames are built once. The journal is the real one; it only counts the reads it is asked for.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import postgres from 'postgres';
import { createJournal, readJournalFloor, type Journal } from '../src/db/journal.js';
import { compileFilter } from '../src/v2/filter.js';
import { createHistoryReader, REPLAY_CHUNK_ROWS, type History } from '../src/v2/history.js';
import { createSubscriptionTable } from '../src/v2/subscriptions.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { installJournal } from './harness/journal.js';

let db: TestDatabase;
let journal: Journal;
const reads = { newest: 0, replay: 0 };
const counted: Pick<Journal, 'newestOffset' | 'replay'> = {
  newestOffset: (channel) => {
    reads.newest++;
    return journal.newestOffset(channel);
  },
  replay: (channel, since) => {
    reads.replay++;
    return journal.replay(channel, since);
  },
};

beforeAll(async () => {
  db = await createTestDatabase();
  await installJournal(db.uri);
  journal = createJournal(db.uri);
});

afterAll(async () => {
  await journal?.stop();
});

/** Journals `{"channel":channel,"payload":{"n":i}}` for i = 1..count; returns the offsets, in order. */
async function publishMany(channel: string, count: number): Promise<string[]> {
  const rows = await db.sql<{ id: string }[]>`
    SELECT pgws.publish(json_build_object('channel', ${channel}::text, 'payload', json_build_object('n', n))::text)::text AS id
    FROM generate_series(1, ${count}) AS n ORDER BY n`;
  return rows.map((r) => r.id);
}

describe('shared journal reads', () => {
  it('subscribes queued behind a running read share one read per (channel, since); the running one is not joined', async () => {
    const ids = await publishMany('shared', 300);
    const fromA = ids[99] as string;
    const fromB = ids[199] as string;
    const reader = createHistoryReader(counted, 1);
    reads.newest = 0;
    reads.replay = 0;
    // The first starts at once (one read at a time); everything after it queues behind it.
    const first = reader.read('shared', fromA);
    const sameAsFirst = Array.from({ length: 20 }, () => reader.read('shared', fromA));
    const others = Array.from({ length: 5 }, () => reader.read('shared', fromB));
    const plain = Array.from({ length: 3 }, () => reader.read('shared', undefined));
    expect(reader.pending()).toBe(4);
    const [one, ...twenty] = await Promise.all([first, ...sameAsFirst]);
    const five = await Promise.all(others);
    const three = await Promise.all(plain);

    // 4 reads, not 29: the running one, then one per distinct (channel, since) that queued.
    expect(reads).toEqual({ newest: 4, replay: 3 });
    expect(new Set(twenty).size).toBe(1);
    expect(twenty[0]).not.toBe(one);
    expect(new Set(five).size).toBe(1);
    expect(new Set(three).size).toBe(1);
    const offsetsOf = (h: History | undefined): string[] => (h?.replay?.complete === true ? h.replay.rows.map((r) => r.offset) : []);
    expect(offsetsOf(one)).toEqual(ids.slice(100));
    expect(offsetsOf(twenty[0])).toEqual(ids.slice(100));
    expect(offsetsOf(five[0])).toEqual(ids.slice(200));
    expect(three[0]).toEqual({ offset: ids.at(-1), replay: undefined });
    expect(reader.pending()).toBe(0);
  });

  it('builds a subscription\'s frames once per chunk, with its filter, and the same arrays for every socket of it', async () => {
    const count = REPLAY_CHUNK_ROWS + 10;
    const ids = await publishMany('framed', count);
    const reader = createHistoryReader(counted, 2);
    const history = await reader.read('framed', '0');
    expect(reader.chunkCount(history)).toBe(2);
    const table = createSubscriptionTable();
    const filtered = compileFilter({ 'payload.n': { gt: REPLAY_CHUNK_ROWS - 2 } });
    const none = compileFilter(undefined);
    if (!filtered.ok || !none.ok) throw new Error('filters');
    const upper = table.acquire('framed', filtered.filter, true);
    const all = table.acquire('framed', none.filter, true);
    const first = reader.chunk(history, upper, 0);
    expect(reader.chunk(history, upper, 0)).toBe(first);
    const frames = [...first, ...reader.chunk(history, upper, 1)];
    // n = 255 and 256 in the first chunk, the 10 others in the second.
    expect(first).toHaveLength(2);
    expect(frames.map((f) => (JSON.parse(f) as { offset: string }).offset)).toEqual(ids.slice(REPLAY_CHUNK_ROWS - 2));
    expect(JSON.parse(frames[0] as string)).toEqual({
      type: 'message',
      sub: upper.sub,
      channel: 'framed',
      data: { channel: 'framed', payload: { n: REPLAY_CHUNK_ROWS - 1 } },
      offset: ids[REPLAY_CHUNK_ROWS - 2],
    });
    expect(reader.chunk(history, all, 0)).toHaveLength(REPLAY_CHUNK_ROWS);
    expect(reader.chunk(history, all, 1)).toHaveLength(10);
    expect(reader.chunkCount(await reader.read('framed', undefined))).toBe(0);
  });

  it('a failed read rejects every subscribe that shared it, and the next read runs', async () => {
    const reader = createHistoryReader(counted, 1);
    const running = reader.read('any', '0');
    const bad = [reader.read('any', 'not a number'), reader.read('any', 'not a number')];
    await running;
    for (const outcome of await Promise.allSettled(bad)) expect(outcome.status).toBe('rejected');
    await expect(reader.read('any', '0')).resolves.toMatchObject({ replay: { complete: true } });
  });
});

describe('the journal floor read before each LISTEN', () => {
  it('is the newest offset of the whole journal; null without the journal, or for a role that may not read it (LISTEN still goes on)', async () => {
    const [newest] = await publishMany('floor', 3).then((ids) => ids.slice(-1));
    expect(await readJournalFloor(db.sql)).toBe(newest);

    const bare = await createTestDatabase();
    expect(await readJournalFloor(bare.sql)).toBeNull();

    const role = `pgws_floor_${Date.now().toString(36)}`;
    await db.sql.unsafe(`CREATE ROLE ${role} LOGIN PASSWORD 'floor'`);
    const url = new URL(db.uri);
    url.username = role;
    url.password = 'floor';
    const restricted = postgres(url.toString(), { max: 1, onnotice: () => undefined });
    try {
      expect(await readJournalFloor(restricted)).toBeNull(); // no USAGE on schema pgws
      await db.sql.unsafe(`GRANT USAGE ON SCHEMA pgws TO ${role}`);
      expect(await readJournalFloor(restricted)).toBeNull(); // no SELECT on the table
      await db.sql.unsafe(`GRANT SELECT ON pgws.journal TO ${role}`);
      expect(await readJournalFloor(restricted)).toBe(newest);
    } finally {
      await db.sql.unsafe(`DROP OWNED BY ${role}`);
      await restricted.end();
      await db.sql.unsafe(`DROP ROLE ${role}`);
    }
  });
});
