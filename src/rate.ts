// Per-socket write rate limit (PGWS_MAX_MESSAGES_PER_SECOND): a token bucket
// holding one second's worth of frames, so a short burst up to the limit passes
// and a sustained rate above it does not.

export interface RateLimiter {
  /** Takes one frame's token; false means the socket is over its rate. */
  take(): boolean;
}

const UNLIMITED: RateLimiter = { take: () => true };

export function createRateLimiter(perSecond: number, now: () => number = Date.now): RateLimiter {
  if (perSecond <= 0) return UNLIMITED;
  let tokens = perSecond;
  let last = now();
  return {
    take() {
      const at = now();
      tokens = Math.min(perSecond, tokens + ((at - last) / 1000) * perSecond);
      last = at;
      if (tokens < 1) return false;
      tokens -= 1;
      return true;
    },
  };
}
