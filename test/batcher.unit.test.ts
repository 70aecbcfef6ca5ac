// The NOTIFY batcher alone, with a recording sender: batching, per-owner order,
// the identical-payload rule, atomic frames, failures and dropping.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createNotifyBatcher, NotifyTimeoutError } from '../src/db/batcher.js';

interface Gate {
  readonly batches: string[][];
  /** Completes the oldest batch still open. */
  release(error?: Error): void;
}

function gatedSender(): Gate & { send: (payloads: readonly string[]) => Promise<void> } {
  const batches: string[][] = [];
  const open: { resolve: () => void; reject: (e: Error) => void }[] = [];
  return {
    batches,
    send: (payloads) =>
      new Promise<void>((resolve, reject) => {
        batches.push([...payloads]);
        open.push({ resolve, reject });
      }),
    release(error) {
      const next = open.shift();
      if (error) next?.reject(error);
      else next?.resolve();
    },
  };
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('notify batcher', () => {
  it('sends the frames of many owners read in one turn as one batch', async () => {
    const gate = gatedSender();
    const b = createNotifyBatcher<string>({ send: gate.send, concurrency: 4 });
    const done = ['a', 'b', 'c'].map((owner) => b.push(owner, [`${owner}1`]));
    await turn();
    expect(gate.batches).toEqual([['a1', 'b1', 'c1']]);
    gate.release();
    await Promise.all(done);
    expect(b.size()).toBe(0);
  });

  it('keeps one batch in flight per owner, so its frames commit in order', async () => {
    const gate = gatedSender();
    const b = createNotifyBatcher<string>({ send: gate.send, concurrency: 4 });
    void b.push('a', ['a1']);
    await turn();
    void b.push('a', ['a2']);
    void b.push('a', ['a3']);
    void b.push('z', ['z1']);
    await turn();
    // a2 and a3 wait for a1's batch; z does not wait for anyone.
    expect(gate.batches).toEqual([['a1'], ['z1']]);
    gate.release();
    await turn();
    expect(gate.batches[2]).toEqual(['a2', 'a3']);
    expect(b.pending('a')).toBe(2);
  });

  it('never puts two identical payloads in one batch (PostgreSQL would fold them)', async () => {
    const gate = gatedSender();
    const b = createNotifyBatcher<string>({ send: gate.send, concurrency: 1 });
    for (const owner of ['a', 'b', 'c']) void b.push(owner, ['same']);
    void b.push('d', ['other']);
    await turn();
    expect(gate.batches).toEqual([['same', 'other']]);
    gate.release();
    await turn();
    gate.release();
    await turn();
    expect(gate.batches).toEqual([['same', 'other'], ['same'], ['same']]);
  });

  it('keeps a frame\'s payloads together and respects the batch caps', async () => {
    const gate = gatedSender();
    const b = createNotifyBatcher<string>({ send: gate.send, concurrency: 1, maxBatchPayloads: 3 });
    void b.push('a', ['a-x', 'a-y']);
    void b.push('b', ['b-x', 'b-y']);
    await turn();
    expect(gate.batches).toEqual([['a-x', 'a-y']]);
    gate.release();
    await turn();
    expect(gate.batches[1]).toEqual(['b-x', 'b-y']);
  });

  it('rejects every frame of a failed batch; drop() rejects what is still queued', async () => {
    const gate = gatedSender();
    const b = createNotifyBatcher<string>({ send: gate.send, concurrency: 1 });
    const first = b.push('a', ['a1']);
    await turn();
    const queued = b.push('a', ['a2']);
    b.drop('a', new Error('socket failed'));
    gate.release(new Error('database down'));
    await expect(first).rejects.toThrow('database down');
    await expect(queued).rejects.toThrow('socket failed');
    await b.idle();
    expect(gate.batches).toEqual([['a1']]);
  });

  it('fails a batch the database does not answer in time, so its sockets are told and others go on', async () => {
    const gate = gatedSender();
    const b = createNotifyBatcher<string>({ send: gate.send, concurrency: 2, timeoutMs: 50 });
    const stuck = b.push('a', ['a1']);
    await expect(stuck).rejects.toBeInstanceOf(NotifyTimeoutError);
    const next = b.push('z', ['z1']);
    await turn();
    gate.release(); // the stuck one answers late: ignored
    gate.release();
    await next;
    expect(b.size()).toBe(0);
  });
});

describe('notify batcher: a stalled database answers every frame in bounded time', () => {
  // Fake clocks (setTimeout and performance.now()); setImmediate stays real, for turn().
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fails a frame that waited 0.9 x timeout for a batch while none committed, unsent, before the stalled batch times out', async () => {
    const gate = gatedSender();
    const settled: [string, boolean][] = [];
    const b = createNotifyBatcher<string>({ send: gate.send, concurrency: 1, timeoutMs: 1000, onSettled: (owner, ok) => void settled.push([owner, ok]) });
    const order: string[] = [];
    const watch = (name: string, p: Promise<void>): Promise<unknown> =>
      p.then(
        () => order.push(`${name} ok`),
        (err: unknown) => {
          order.push(`${name} ${(err as Error).name}`);
        },
      );
    const stuck = watch('a1', b.push('a', ['a1']));
    await turn();
    // No connection free: these wait. Without the rule they would be sent once a1 timed out
    // (at 1000 ms) and fail 1000 ms later: 2 x timeout, and more for every batch's worth behind.
    const waiting = [watch('b1', b.push('b', ['b1'])), watch('c1', b.push('c', ['c1']))];
    await turn();
    vi.advanceTimersByTime(899);
    await turn();
    expect(order).toEqual([]);
    vi.advanceTimersByTime(1);
    await Promise.all(waiting);
    expect(order).toEqual(['b1 NotifyQueueTimeoutError', 'c1 NotifyQueueTimeoutError']);
    expect(settled).toEqual([
      ['b', false],
      ['c', false],
    ]);
    vi.advanceTimersByTime(100);
    await stuck;
    expect(order.at(-1)).toBe('a1 NotifyTimeoutError');
    // Never sent: they could not have been delivered, and the error says so.
    expect(gate.batches).toEqual([['a1']]);
    expect(b.size()).toBe(0);
  });

  it('lets frames wait longer than that while batches keep committing: a busy database is not a stalled one', async () => {
    const gate = gatedSender();
    const b = createNotifyBatcher<string>({ send: gate.send, concurrency: 1, timeoutMs: 1000, maxBatchPayloads: 1 });
    const frames = [b.push('a', ['a1'])];
    await turn();
    frames.push(b.push('b', ['b1']), b.push('c', ['c1']));
    await turn();
    vi.advanceTimersByTime(500);
    gate.release(); // a1 commits at 500 ms: b1 goes, c1 waits on
    await turn();
    vi.advanceTimersByTime(500);
    await turn();
    // c1 has waited 1000 ms, but the database committed 500 ms ago.
    gate.release(); // b1 commits: c1 goes
    await turn();
    gate.release();
    await Promise.all(frames);
    expect(gate.batches).toEqual([['a1'], ['b1'], ['c1']]);
  });
});

describe('notify batcher: a failure stops the owner', () => {
  it('fails the frames an owner queued behind a failed batch at once, so none of them is sent after it', async () => {
    const gate = gatedSender();
    const settled: [string, boolean][] = [];
    const b = createNotifyBatcher<string>({ send: gate.send, concurrency: 4, onSettled: (owner, ok) => void settled.push([owner, ok]) });
    const first = b.push('a', ['a1']);
    await turn();
    const behind = [b.push('a', ['a2']), b.push('a', ['a3'])];
    const other = b.push('z', ['z1']);
    await turn();
    expect(gate.batches).toEqual([['a1'], ['z1']]);
    gate.release(new Error('database down'));
    await expect(first).rejects.toThrow('database down');
    for (const frame of behind) await expect(frame).rejects.toThrow('database down');
    gate.release();
    await other;
    await turn();
    // a2 and a3 were never sent: the database would have had them without a1.
    expect(gate.batches).toEqual([['a1'], ['z1']]);
    expect(settled).toEqual([
      ['a', false],
      ['z', true],
    ]);
    expect(b.size()).toBe(0);
    expect(b.pending('a')).toBe(0);
  });
});
