// A raw LISTEN on the database, independent of pgws: what really reached PostgreSQL.
import type { Sql } from './db.js';
import { track } from './leftovers.js';

export interface DbWatch {
  readonly seen: string[];
  /** Resolves with the next payload (or one already seen and not yet taken). */
  next(timeoutMs?: number): Promise<string>;
}

export async function watchChannel(sql: Sql, channel: string): Promise<DbWatch> {
  const seen: string[] = [];
  let taken = 0;
  const waiting: (() => void)[] = [];
  const { unlisten } = await sql.listen(channel, (payload) => {
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
