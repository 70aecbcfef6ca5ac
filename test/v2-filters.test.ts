// v2 filters end to end (PROTOCOL.md §9 "Filters"), on both transports: a differential test of
// random filters and random notifications (fast-check, fixed seed) through real pgws sockets
// and a real PostgreSQL, against the plain reference evaluator of
// test/harness/filter-reference.ts (which shares no code with src/v2/filter.ts). Each
// subscription must receive exactly the notifications the reference says its filter matches,
// in the order they were sent, and nothing else. Operator by operator cases:
// filter.unit.test.ts; the protocol around filters: v2.test.ts.
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Json } from '../src/types.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { isObj, matchingFilter, NAMES, nearFilter, notification, objectOf, randomFilter, reference, rewrite, roundTrip, value, type Obj } from './harness/filter-reference.js';
import { LISTEN_CHANNEL, startPgws, type TestServer } from './harness/pgws.js';
import { token } from './harness/tokens.js';
import { connectV2, type Frame, type V2Client } from './harness/v2.js';

const SEED = 20261210;
const RUNS = 5;
const MAX_FILTER_BYTES = 4096; // PROTOCOL.md §9

let db: TestDatabase;
let srv: TestServer;

beforeAll(async () => {
  db = await createTestDatabase();
  srv = await startPgws(db.uri);
});

// ---------------------------------------------------------------------------------------------
// Scenarios: what one run sends. The random content of a notification sits under `payload`
// (the notification itself is an object whose `channel` routes it to the run's channel), so
// the random filters' paths are moved under `payload.` to meet it.

interface Scenario {
  /** The random content of each notification (mostly objects, sometimes not). */
  readonly payloads: readonly Json[];
  /** Per notification: true to send it pretty-printed after some whitespace (still JSON). */
  readonly pretty: readonly boolean[];
  /** Filters built from the notifications' own fields, so that many match: some that their notification meets, some near it. */
  readonly matching: readonly Obj[];
  readonly near: readonly Obj[];
  readonly random: readonly Obj[];
}

const nonEmpty = (f: Obj): boolean => Object.keys(f).length > 0;
const hasFields = (n: Json): boolean => isObj(n) && nonEmpty(n);

/**
 * Payloads: mostly variations of three base objects (one member replaced or added), so that a
 * filter built from a base matches many of them; some fresh random ones (a few not objects).
 */
const scenario: fc.Arbitrary<Scenario> = fc
  .array(objectOf(value, NAMES).filter((b) => isObj(b) && Object.keys(b).length >= 2), { minLength: 3, maxLength: 3 })
  .chain((bases) =>
    fc.record({
      bases: fc.constant(bases),
      payloads: fc.array(
        fc.oneof(
          { weight: 4, arbitrary: notification },
          {
            weight: 6,
            arbitrary: fc
              .tuple(fc.constantFrom(...bases), fc.option(fc.tuple(fc.constantFrom(...NAMES), value)))
              .map(([base, patch]) => roundTrip(Object.fromEntries([...Object.entries(base as Obj), ...(patch === null ? [] : [patch])]) as Json)),
          },
        ),
        { minLength: 40, maxLength: 60 },
      ),
    }),
  )
  .chain(({ bases, payloads }) => {
    const withFields = payloads.filter(hasFields);
    const some = withFields.length > 0 ? fc.constantFrom(...withFields) : fc.constantFrom(...bases);
    return fc.record({
      payloads: fc.constant(payloads),
      pretty: fc.array(fc.nat(9).map((d) => d === 0), { minLength: payloads.length, maxLength: payloads.length }),
      // Two filters that a base meets (so do its unchanged variations), one that some payload meets.
      matching: fc.tuple(
        fc.constantFrom(...bases).chain(matchingFilter),
        fc.constantFrom(...bases).chain(matchingFilter),
        some.chain(matchingFilter),
      ),
      near: fc.array(some.chain(nearFilter), { minLength: 2, maxLength: 2 }),
      random: fc.array(randomFilter.filter(nonEmpty), { minLength: 3, maxLength: 3 }),
    });
  });

const SCENARIOS = fc.sample(scenario, { seed: SEED, numRuns: RUNS });

/** The filter with each path moved under `payload.`. */
function underPayload(f: Obj): Obj {
  return Object.fromEntries(Object.entries(f).map(([p, c]) => [`payload.${p}`, c])) as Obj;
}

/** A subscription's filter as sent: its exact JSON text (compact, or rewritten and pretty). */
interface FilterSpec {
  readonly name: string;
  readonly text: string;
}

const compact = (name: string, f: Json): FilterSpec => ({ name, text: JSON.stringify(f) });

/** The same filter written differently: reordered, `in`/`nin` lists doubled, pretty-printed (if it still fits). */
function rewritten(name: string, f: Obj): FilterSpec {
  const pretty = JSON.stringify(rewrite(f), null, 2);
  return { name, text: Buffer.byteLength(pretty) <= MAX_FILTER_BYTES ? pretty : JSON.stringify(rewrite(f)) };
}

/** The run's filters, in the order the sockets take them. */
function filtersOf(s: Scenario, channel: string): FilterSpec[] {
  const matching = s.matching.map(underPayload);
  const near = s.near.map(underPayload);
  const random = s.random.map(underPayload);
  return [
    compact('empty', {}),
    compact('matching 0', matching[0] as Obj),
    rewritten('matching 0 rewritten', matching[0] as Obj),
    compact('near 0', near[0] as Obj),
    compact('random 0', random[0] as Obj),
    compact('channel', { channel, payload: { exists: true } }),
    compact('matching 1', matching[1] as Obj),
    compact('near 1', near[1] as Obj),
    compact('random 1', random[1] as Obj),
    rewritten('random 1 rewritten', random[1] as Obj),
    compact('matching 2', matching[2] as Obj),
    compact('random 2', random[2] as Obj),
  ];
}

// ---------------------------------------------------------------------------------------------
// Sockets

interface Holder {
  readonly client: V2Client;
  /** sub -> indexes (into the run's filters) of the filters this socket subscribed with it. */
  readonly subs: Map<string, number[]>;
}

/** Subscribes with the filter's exact text (sendRaw, so a pretty one reaches pgws as written). */
async function subscribe(client: V2Client, channel: string, spec: FilterSpec, id: string): Promise<string> {
  client.sendRaw(`{"type":"subscribe","id":${JSON.stringify(id)},"channel":${JSON.stringify(channel)},"filter":${spec.text}}`);
  // No notification is sent before every subscription is answered: the next frame is the answer.
  const answer = await client.next();
  expect(answer, `subscribe with ${spec.name}: ${spec.text}`).toMatchObject({ type: 'subscribed', id, channel, sub: expect.any(String) });
  return answer.sub as string;
}

async function holder(channel: string, filters: readonly FilterSpec[], indexes: readonly number[]): Promise<Holder> {
  const client = await connectV2(`${srv.url}/`, await token({ mode: 'r' }));
  const subs = new Map<string, number[]>();
  for (const i of indexes) {
    const sub = await subscribe(client, channel, filters[i] as FilterSpec, `s${i}`);
    subs.set(sub, [...(subs.get(sub) ?? []), i]);
  }
  return { client, subs };
}

/** The next `count` frames of a socket, or fewer if the deadline passes first (the comparison then shows what is missing). */
async function collect(client: V2Client, count: number, deadline: number): Promise<Frame[]> {
  const frames: Frame[] = [];
  while (frames.length < count) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    const frame = await client.next(left).catch(() => undefined);
    if (frame === undefined) break;
    frames.push(frame);
  }
  return frames;
}

// ---------------------------------------------------------------------------------------------

/** Over all runs, for the generators' check at the end. */
const totals = { pairs: 0, matchedPairs: 0, partial: 0 };

describe(`random filters and notifications through real sockets (fast-check seed ${SEED})`, () => {
  it.each(SCENARIOS.map((s, i) => [i + 1, s] as const))('run %i: every subscription receives exactly its matching notifications, in order', async (_run, s) => {
    const channel = `filters-${randomUUID().slice(0, 8)}`;
    const filters = filtersOf(s, channel);
    const texts = s.payloads.map((payload, i) => {
      const n = { channel, payload };
      return s.pretty[i] === true ? ` \n${JSON.stringify(n, null, 1)}` : JSON.stringify(n);
    });
    const parsed = texts.map((t) => JSON.parse(t) as Json);
    const expected = filters.map((f) => {
      const filter = JSON.parse(f.text) as Obj;
      return texts.flatMap((_t, k) => (reference(filter, parsed[k] as Json) ? [parsed[k] as Json] : []));
    });

    // One socket per filter (the first holds the empty filter: it gets every notification), and
    // two sockets holding six subscriptions each (a filter and its rewritten twin on one socket).
    const all = filters.map((_f, i) => i);
    const singles = await Promise.all(all.map((i) => holder(channel, filters, [i])));
    const multis = await Promise.all([holder(channel, filters, all.slice(0, 6)), holder(channel, filters, all.slice(6))]);
    const holders = [...singles, ...multis];

    for (const text of texts) await db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${text})`;

    /** What each sub of a socket must receive; filters sharing a sub (equal filters) must agree. */
    const wanted = (h: Holder): Map<string, Json[]> =>
      new Map(
        [...h.subs].map(([sub, indexes]) => {
          const lists = indexes.map((i) => expected[i] as Json[]);
          for (const list of lists.slice(1)) expect(list, `filters ${indexes.map((i) => filters[i]?.name).join(', ')} share sub ${sub}`).toEqual(lists[0]);
          return [sub, lists[0] as Json[]];
        }),
      );
    const check = (h: Holder, frames: readonly Frame[]): void => {
      const want = wanted(h);
      const got = new Map([...want.keys()].map((sub) => [sub, [] as Json[]]));
      for (const frame of frames) {
        expect(frame).toMatchObject({ type: 'message', channel });
        const list = got.get(frame.sub as string);
        expect(list, `a frame for a sub this socket does not hold: ${JSON.stringify(frame)}`).toBeDefined();
        list?.push(frame.data as Json);
      }
      for (const [sub, list] of want) {
        const names = (h.subs.get(sub) ?? []).map((i) => `${filters[i]?.name}: ${filters[i]?.text}`).join(' | ');
        expect(got.get(sub), `sub ${sub} (${names})`).toEqual(list);
      }
    };
    const frameCount = (h: Holder): number => [...wanted(h).values()].reduce((sum, list) => sum + list.length, 0);

    // The empty-filter socket first: once it has every notification, pgws has handled them all.
    const sentinel = singles[0] as Holder;
    expect(frameCount(sentinel)).toBe(texts.length);
    check(sentinel, await collect(sentinel.client, texts.length, Date.now() + 10_000));
    // Then every socket has its frames on the way: each gets exactly what it must, in order...
    const rest = holders.slice(1);
    const deadline = Date.now() + 5_000;
    const received = await Promise.all(rest.map((h) => collect(h.client, frameCount(h), deadline)));
    rest.forEach((h, i) => check(h, received[i] as Frame[]));
    // ...and nothing more.
    await Promise.all(holders.map((h) => h.client.expectNothing(200)));
    await Promise.all(holders.map((h) => h.client.close()));

    // Generated filters only (not empty, channel): how often they match.
    filters.forEach((f, i) => {
      if (f.name === 'empty' || f.name === 'channel') return;
      const matched = (expected[i] as Json[]).length;
      totals.pairs += texts.length;
      totals.matchedPairs += matched;
      if (matched > 0 && matched < texts.length) totals.partial++;
    });
  });

  afterAll(() => {
    // The generators are only useful when both answers are common, and when filters match
    // some notifications of a run but not all.
    expect(totals.matchedPairs).toBeGreaterThan(totals.pairs * 0.1);
    expect(totals.matchedPairs).toBeLessThan(totals.pairs * 0.85);
    expect(totals.partial).toBeGreaterThanOrEqual(2 * RUNS);
  });
});
