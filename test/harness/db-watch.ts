// A raw LISTEN on the database, independent of pgws: what really reached PostgreSQL.
import type { Sql } from './db.js';
import { track } from './leftovers.js';

export interface DbWatch {
  readonly seen: string[];
  /** Resolves with the next payload (or one already seen and not yet taken). */
  next(timeoutMs?: number): Promise<string>;
}

/**
 * `accept` keeps only the payloads a test is about: the LISTEN connection is shared within a
 * file, so a NOTIFY sent by an earlier test may still arrive after this watch starts.
 */
export async function watchChannel(sql: Sql, channel: string, accept: (payload: string) => boolean = () => true): Promise<DbWatch> {
  const seen: string[] = [];
  let taken = 0;
  const waiting: (() => void)[] = [];
  const { unlisten } = await sql.listen(channel, (payload) => {
    if (!accept(payload)) return;
    seen.push(payload);
    waiting.splice(0).forEach((w) => w());
  });
  track(() => unlisten());
  return {
    seen,
    async next(timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (taken >= seen.length) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no NOTIFY on ${channel} within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiting.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      return seen[taken++] as string;
    },
  };
}
