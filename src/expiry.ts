// Closing sockets when their token's `exp` passes (PROTOCOL.md §1, 3001), with one timer per
// distinct `exp` rather than one per socket. Tokens from one issuer share a lifetime, so the
// sockets opened within one second share an `exp` second: a setTimeout per socket cost 10-15%
// of the server's CPU per handshake, a Set insertion costs next to nothing.
import { timer, type Timer } from './timer.js';

export interface ExpirySchedule<T> {
  /** Calls `expire(item)` once `exp` (Unix seconds) has passed, unless removed first. */
  add(item: T, exp: number): void;
  remove(item: T): void;
  /** Items waiting, for tests. */
  size(): number;
}

export function createExpirySchedule<T>(expire: (item: T) => void): ExpirySchedule<T> {
  const buckets = new Map<number, { readonly items: Set<T>; readonly timer: Timer }>();
  const bucketOf = new Map<T, number>();

  function fire(exp: number): void {
    const bucket = buckets.get(exp);
    buckets.delete(exp);
    if (bucket === undefined) return;
    for (const item of bucket.items) {
      bucketOf.delete(item);
      expire(item);
    }
  }

  return {
    add(item, exp) {
      this.remove(item);
      let bucket = buckets.get(exp);
      if (bucket === undefined) {
        // timer() splits delays over 24.8 days into hops, so a token valid for months still closes on time.
        bucket = { items: new Set(), timer: timer(() => fire(exp), exp * 1000 - Date.now()) };
        buckets.set(exp, bucket);
        bucket.timer.start();
      }
      bucket.items.add(item);
      bucketOf.set(item, exp);
    },
    remove(item) {
      const exp = bucketOf.get(item);
      if (exp === undefined) return;
      bucketOf.delete(item);
      const bucket = buckets.get(exp);
      if (bucket === undefined) return;
      bucket.items.delete(item);
      if (bucket.items.size === 0) {
        bucket.timer.cancel();
        buckets.delete(exp);
      }
    },
    size: () => bucketOf.size,
  };
}
