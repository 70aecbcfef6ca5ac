// A bounded cache of verified tokens, keyed by the token's whole text (signature included).
//
// Why: a network blip makes every client reconnect at once, to the same pgws, each with the
// token it already had. Verifying an RS256 signature costs ~40 µs of CPU here, ES256 ~120 µs
// (synchronously; more through jose); looking the text up costs about one. In the bench's
// reconnect storm, 10k RS256 clients came back after a blip on 1.2 CPU-seconds, against 2.4
// after a restart, when the cache starts empty (where it helps only clients sharing a token).
// A hit skips the signature only: exp and nbf are checked against the clock on every hit (an
// entry is never served at or after its exp), and the claims checks and channel rules, which
// depend on the request, run per request in verify.ts as for a token verified just now.
//
// What is safe to keep: the verdict "this exact text carries a valid signature of one of the
// current keys". The text is the key, signature included, so a token differing in one
// character is a miss and is verified in full. Only successes are stored, so a failure can
// never come back as a success, and storing needs a token signed by a trusted key: nobody
// without one can fill the cache or evict good entries. The verdict holds until the keys
// change: whoever replaces the keys calls clear().

/** What the cache needs to know of a verified payload: its time claims, as verified (numbers when present). */
export interface TimedClaims {
  readonly exp?: unknown;
  readonly nbf?: unknown;
}

export interface TokenCache<T extends TimedClaims> {
  /** The verified payload of this exact token text, or undefined (not here, expired, or not yet valid). */
  get(token: string, nowSeconds: number): T | undefined;
  /**
   * Remembers a token whose signature, exp and nbf were just verified. Every hit shares the
   * one `claims` object: it is readonly in every type that reaches it, and nothing writes it.
   * (Not frozen: Object.freeze took about 0.5% of a handshake's CPU.)
   */
  set(token: string, claims: T, nowSeconds: number): void;
  /** Forgets every token: call it whenever the verification keys are (re)loaded. */
  clear(): void;
  readonly size: number;
}

export interface TokenCacheOptions {
  /** Entries kept; past it, the least recently used goes. */
  readonly maxEntries?: number;
  /** Longer tokens are not kept (they are verified every time). */
  readonly maxTokenLength?: number;
  /** Expired entries are removed by a sweep on insert, at most this often (seconds). */
  readonly sweepEverySeconds?: number;
}

/**
 * 10,000 entries: PGWS_MAX_CONNECTIONS' default, so when every client of a full server
 * reconnects after a blip, every one of them is a hit. Past it, the least recently used
 * token goes; a miss only costs a verification. An entry is the token text (typically
 * 0.3-1.5 KiB) plus its claims object, which a connected socket already holds in its grant:
 * with the bench's 330-character tokens, 0.5 KiB of RSS per entry (3.0 KiB per socket with
 * the cache, 2.5 without), so 10,000 entries cost about 5 MiB.
 */
export const DEFAULT_MAX_ENTRIES = 10_000;
/** Tokens of identity providers are under 2 KiB; 8 KiB keeps the worst case near 10,000 x 16 KiB. */
export const DEFAULT_MAX_TOKEN_LENGTH = 8192;
const DEFAULT_SWEEP_EVERY_SECONDS = 60;

interface Entry<T> {
  readonly token: string;
  readonly claims: T;
  /** Unix seconds; the entry is never served at or after it. */
  readonly exp: number | undefined;
  readonly nbf: number | undefined;
  /** Neighbours in use order: `older` towards the least recently used. */
  older: Entry<T> | undefined;
  newer: Entry<T> | undefined;
}

export function createTokenCache<T extends TimedClaims>(options: TokenCacheOptions = {}): TokenCache<T> {
  const maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const maxTokenLength = options.maxTokenLength ?? DEFAULT_MAX_TOKEN_LENGTH;
  const sweepEvery = options.sweepEverySeconds ?? DEFAULT_SWEEP_EVERY_SECONDS;
  const entries = new Map<string, Entry<T>>();
  // Use order as a linked list, so a hit and an eviction are a few pointer moves. (A Map's
  // own insertion order would do it in fewer lines, but taking its first key walks past
  // every entry deleted before it: with tokens churning, each eviction became a long scan.)
  let leastRecent: Entry<T> | undefined;
  let mostRecent: Entry<T> | undefined;
  let nextSweep = -Infinity;

  function unlink(entry: Entry<T>): void {
    if (entry.older) entry.older.newer = entry.newer;
    else leastRecent = entry.newer;
    if (entry.newer) entry.newer.older = entry.older;
    else mostRecent = entry.older;
    entry.older = undefined;
    entry.newer = undefined;
  }

  function append(entry: Entry<T>): void {
    entry.older = mostRecent;
    entry.newer = undefined;
    if (mostRecent) mostRecent.newer = entry;
    else leastRecent = entry;
    mostRecent = entry;
  }

  function remove(entry: Entry<T>): void {
    unlink(entry);
    entries.delete(entry.token);
  }

  function sweep(nowSeconds: number): void {
    nextSweep = nowSeconds + sweepEvery;
    for (const entry of entries.values()) if (entry.exp !== undefined && entry.exp <= nowSeconds) remove(entry);
  }

  return {
    get(token, nowSeconds) {
      const entry = entries.get(token);
      if (entry === undefined) return undefined;
      if (entry.exp !== undefined && entry.exp <= nowSeconds) {
        remove(entry);
        return undefined;
      }
      // Only if the clock went back since it was verified: verify again, and let that refuse it.
      if (entry.nbf !== undefined && entry.nbf > nowSeconds) return undefined;
      if (entry !== mostRecent) {
        unlink(entry);
        append(entry);
      }
      return entry.claims;
    },

    set(token, claims, nowSeconds) {
      if (maxEntries <= 0 || token.length > maxTokenLength) return;
      const exp = typeof claims.exp === 'number' ? claims.exp : undefined;
      const nbf = typeof claims.nbf === 'number' ? claims.nbf : undefined;
      // A verified token is valid now; this only guards a caller's mistake.
      if (exp !== undefined && exp <= nowSeconds) return;
      if (nowSeconds >= nextSweep) sweep(nowSeconds);
      const previous = entries.get(token);
      if (previous) remove(previous);
      const entry: Entry<T> = { token, claims, exp, nbf, older: undefined, newer: undefined };
      entries.set(token, entry);
      append(entry);
      while (entries.size > maxEntries && leastRecent) remove(leastRecent);
    },

    clear() {
      entries.clear();
      leastRecent = undefined;
      mostRecent = undefined;
    },

    get size() {
      return entries.size;
    },
  };
}
