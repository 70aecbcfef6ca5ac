// The journal reads of v2 subscribes (PROTOCOL.md §10), shared. Clients that come back at once
// (after a pgws restart or a network blip, most of them from the same offset of a busy channel)
// would each read the same rows from PostgreSQL and build the same frames: here they share one
// read, and each subscription's frames are built once for all of its sockets (a subscription's
// frame text is the same for every socket that holds it).
//
// A read may only be shared by subscribes that were registered before it started. A subscribe's
// live frames wait from its registration on; a message committed after a read's snapshot but
// delivered before a late subscribe registered would be in neither its rows nor its waiting
// frames. So a read is joined only while it waits for its turn, never once it runs; reads run at
// most `concurrency` at a time (the journal pool's size), which is what makes them wait under load.
import type { Journal, JournalRow, Replay } from '../db/journal.js';
import { parseNotificationObject } from './filter.js';
import { messageFrame } from './frames.js';
import type { Subscription } from './subscriptions.js';

/** What a subscribe learns from the journal: the channel's newest offset, and with `since` its history. */
export interface History {
  readonly offset: string | null;
  readonly replay: Replay | undefined;
}

/** Rows of a replay written at once (one corked write), and built into frames at once. */
export const REPLAY_CHUNK_ROWS = 256;

export interface HistoryReader {
  /** The channel's newest offset and, with `since`, the rows after it; shared with subscribes queued alongside. */
  read(channel: string, since: string | undefined): Promise<History>;
  /** How many chunks of REPLAY_CHUNK_ROWS rows the history has (none when it is not complete). */
  chunkCount(history: History): number;
  /**
   * The `message` frames of chunk `index` of the history's rows that the subscription's filter
   * matches, in order: built when a socket first needs them (the first chunk goes out before the
   * last is built), then the same array for every socket of that subscription.
   */
  chunk(history: History, subscription: Subscription, index: number): readonly string[];
  /** Reads running and waiting (for tests). */
  pending(): number;
}

interface QueuedRead {
  readonly key: string;
  readonly channel: string;
  readonly since: string | undefined;
  readonly waiters: { readonly resolve: (history: History) => void; readonly reject: (err: unknown) => void }[];
}

export function createHistoryReader(journal: Pick<Journal, 'newestOffset' | 'replay'>, concurrency: number): HistoryReader {
  const queue: QueuedRead[] = [];
  /** Queued reads by channel and since: only these can be joined (see the top of this file). */
  const joinable = new Map<string, QueuedRead>();
  let running = 0;
  /** Frames built so far, per history and subscription, chunk by chunk. */
  const built = new WeakMap<History, Map<Subscription, (readonly string[] | undefined)[]>>();

  async function run(channel: string, since: string | undefined): Promise<History> {
    // The offset first: every row at or below it is then in the replay read after it.
    const offset = await journal.newestOffset(channel);
    return { offset, replay: since === undefined ? undefined : await journal.replay(channel, since) };
  }

  function next(): void {
    while (running < concurrency && queue.length > 0) {
      const read = queue.shift() as QueuedRead;
      joinable.delete(read.key);
      running += 1;
      run(read.channel, read.since).then(
        (history) => {
          for (const waiter of read.waiters) waiter.resolve(history);
        },
        (err: unknown) => {
          for (const waiter of read.waiters) waiter.reject(err);
        },
      ).finally(() => {
        running -= 1;
        next();
      });
    }
  }

  return {
    read(channel, since) {
      return new Promise<History>((resolve, reject) => {
        // U+0000 cannot be part of an offset: the key is unambiguous.
        const key = `${since ?? ''}\u0000${channel}`;
        let read = joinable.get(key);
        if (read === undefined) {
          read = { key, channel, since, waiters: [] };
          joinable.set(key, read);
          queue.push(read);
        }
        read.waiters.push({ resolve, reject });
        next();
      });
    },

    chunkCount(history) {
      return history.replay?.complete === true ? Math.ceil(history.replay.rows.length / REPLAY_CHUNK_ROWS) : 0;
    },

    chunk(history, subscription, index) {
      let bySubscription = built.get(history);
      if (bySubscription === undefined) built.set(history, (bySubscription = new Map()));
      let chunks = bySubscription.get(subscription);
      if (chunks === undefined) bySubscription.set(subscription, (chunks = []));
      let frames = chunks[index];
      if (frames === undefined) {
        const rows: readonly JournalRow[] = history.replay?.complete === true ? history.replay.rows : [];
        const everything = subscription.filter.key === '';
        const out: string[] = [];
        for (let i = index * REPLAY_CHUNK_ROWS, end = Math.min(i + REPLAY_CHUNK_ROWS, rows.length); i < end; i++) {
          const row = rows[i] as JournalRow;
          if (everything || subscription.filter.matches(parseNotificationObject(row.message))) {
            out.push(messageFrame(subscription.sub, subscription.channel, row.message, true, row.offset));
          }
        }
        chunks[index] = frames = out;
      }
      return frames;
    },

    pending: () => running + queue.length,
  };
}
