// Floods (issue 4, item 4): 200 writers sending as fast as they can. Every frame
// is NOTIFYed or its socket is told (1011/1013); per socket, what reached the
// database is exactly a prefix of what it sent; NOTIFYs travel in batches.
import { beforeAll, describe, expect, it } from 'vitest';
import { connect, type Closed, type TestClient } from './harness/client.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { watchChannel } from './harness/db-watch.js';
import { LISTEN_CHANNEL, startPgws, type TestServer } from './harness/pgws.js';
import { token } from './harness/tokens.js';
import { until } from './harness/within.js';

let db: TestDatabase;
let srv: TestServer;

beforeAll(async () => {
  db = await createTestDatabase();
  srv = await startPgws(db.uri, { poolSize: 4, logLevel: 'info' });
});

interface Envelope {
  readonly channel: string;
  readonly payload: string;
}

describe('200 writers at full speed', () => {
  it('delivers every frame or closes its socket with a code; nothing is lost in silence', async () => {
    const WRITERS = 200;
    const FRAMES = 50;
    const watch = await watchChannel(db.sql, LISTEN_CHANNEL);
    const writers: TestClient[] = [];
    for (let w = 0; w < WRITERS; w++) writers.push(await connect(`${srv.url}/burst-${w}/${await token({ mode: 'w' })}`));
    const closes: (Closed | undefined)[] = writers.map(() => undefined);
    writers.forEach((c, w) => void c.closed.then((closed) => (closes[w] = closed)));

    for (let j = 0; j < FRAMES; j++) for (const [w, c] of writers.entries()) c.send(`w${w}-${j}`);

    const delivered = (): Map<number, string[]> => {
      const by = new Map<number, string[]>();
      for (const text of watch.seen) {
        const env = JSON.parse(text) as Envelope;
        const w = Number(env.channel.slice('burst-'.length));
        by.set(w, [...(by.get(w) ?? []), env.payload]);
      }
      return by;
    };
    // Done when each writer has all its frames delivered or was closed.
    await until(() => {
      const by = delivered();
      return writers.every((_, w) => (by.get(w)?.length ?? 0) === FRAMES || closes[w] !== undefined);
    }, 60_000, 'every writer delivered or closed');
    // A short "does not happen" window for stragglers of closed writers.
    await new Promise((resolve) => setTimeout(resolve, 300));

    const by = delivered();
    let total = 0;
    for (let w = 0; w < WRITERS; w++) {
      const sent = Array.from({ length: FRAMES }, (_, j) => `w${w}-${j}`);
      const got = by.get(w) ?? [];
      total += got.length;
      expect(got, `writer ${w}`).toEqual(sent.slice(0, got.length));
      if (got.length < FRAMES) expect([1011, 1013], `writer ${w} lost frames without a close code`).toContain(closes[w]?.code);
    }
    const m = srv.server.metrics.snapshot();
    expect(m.framesNotified).toBe(total);
    // Batching happened: far fewer statements than frames.
    expect(m.notifyBatches * 4).toBeLessThan(m.framesNotified);
    // Memory stayed bounded by the per-socket queue limit.
    expect(m.queuedFramesPeak).toBeLessThanOrEqual(WRITERS * 256);
    expect(total).toBeGreaterThan(0);
  });

  it('delivers identical frames sent in the same millisecond by two sockets with one token: every envelope distinct, none folded by PostgreSQL', async () => {
    const watch = await watchChannel(db.sql, LISTEN_CHANNEL);
    // Two sockets with the same token sending the same text at once: before envelopes had
    // distinct stamps they were identical byte for byte within a millisecond, and PostgreSQL
    // delivers identical notifications of one transaction once (the batcher kept them in
    // separate batches; test/batcher.unit.test.ts still covers that).
    const jwt = await token({ mode: 'w' });
    const a = await connect(`${srv.url}/twins/${jwt}`);
    const b = await connect(`${srv.url}/twins/${jwt}`);
    const N = 100;
    for (let i = 0; i < N; i++) {
      a.send('same');
      b.send('same');
    }
    await until(() => watch.seen.filter((p) => p.includes('"channel":"twins"')).length >= 2 * N, 10_000, 'all identical frames');
    await new Promise((resolve) => setTimeout(resolve, 200));
    const twins = watch.seen.filter((p) => p.includes('"channel":"twins"'));
    expect(twins).toHaveLength(2 * N);
    // No two envelopes alike, although the frames, the token and the channel were: the stamps differ.
    expect(new Set(twins).size).toBe(twins.length);
    const stamps = twins.map((p) => (JSON.parse(p) as { claims: { message_delivered_at: number } }).claims.message_delivered_at);
    expect(new Set(stamps).size).toBe(stamps.length);
  });
});
