// One timer helper for every delay in pgws (JWT expiry, listener checks, backoff).
// setTimeout silently fires at once for delays above 2^31-1 ms (about 24.8 days),
// so long delays are split into hops here and nowhere else.

export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export interface Timer {
  /** (Re)start the countdown; `ms` overrides the delay given at creation. */
  start(ms?: number): void;
  cancel(): void;
}

export function timer(fn: () => void, ms: number): Timer {
  let handle: NodeJS.Timeout | undefined;
  let dueAt = 0;

  const hop = (): void => {
    const left = dueAt - Date.now();
    if (left <= 0) {
      handle = undefined;
      fn();
      return;
    }
    handle = setTimeout(hop, Math.min(left, MAX_TIMEOUT_MS));
    handle.unref?.();
  };

  return {
    start(delay = ms) {
      if (handle) clearTimeout(handle);
      dueAt = Date.now() + Math.max(0, delay);
      hop();
    },
    cancel() {
      if (handle) clearTimeout(handle);
      handle = undefined;
    },
  };
}

/** Exponential backoff with full jitter on the upper half: base * 2^attempt, capped. */
export function backoffMs(attempt: number, baseMs: number, capMs: number, jitter = true): number {
  const exp = Math.min(capMs, baseMs * 2 ** attempt);
  return jitter ? Math.round(exp / 2 + (Math.random() * exp) / 2) : exp;
}

/** A promise that resolves after `ms`, or at once when the signal aborts. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}
