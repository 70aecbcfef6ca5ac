// The single LISTEN connection. It connects (with start-up retries), LISTENs on
// the listen channel, and supervises itself:
//  - checkIntervalMs > 0: a lost or stalled connection is replaced and LISTEN
//    re-issued, with backoff; sockets stay open meanwhile.
//  - checkIntervalMs = 0: a lost connection is fatal (`onFatal`), so that a
//    supervisor restarts the whole process, as postgres-websockets does.
import { EventEmitter } from 'node:events';
import postgres from 'postgres';
import type { Logger } from '../log.js';
import { backoffMs, delay, timer } from '../timer.js';
import { describeDbError } from './errors.js';

export interface ListenerOptions {
  readonly uri: string;
  readonly channel: string;
  readonly checkIntervalMs: number;
  readonly log: Logger;
  /** Every notification on the channel: (database channel, payload). */
  readonly onNotification: (channel: string, payload: string) => void;
  /** The listener is gone and checkIntervalMs is 0: the process should exit non-zero. */
  readonly onFatal: (error: Error) => void;
  /**
   * Runs on each new connection just before its LISTEN (a failure fails that attempt): what it
   * reads there was committed before the LISTEN, so no notification of it will arrive.
   */
  readonly beforeListen?: (sql: postgres.Sql<Record<string, unknown>>) => Promise<void>;
}

export interface ListenerEvents {
  ready: [pid: number];
  lost: [reason: string];
  /** Ready again after a loss; blindMs is how long notifications could not be received. */
  recovered: [blindMs: number];
}

export interface Listener extends EventEmitter<ListenerEvents> {
  /** Connects and LISTENs; rejects with the last error after `attempts` failures. */
  start(attempts: number): Promise<void>;
  /** Backend pid of the LISTEN connection (for tests and diagnostics), undefined while down. */
  pid(): number | undefined;
  isReady(): boolean;
  stop(): Promise<void>;
}

type Sql = postgres.Sql<Record<string, unknown>>;

const STARTUP_BACKOFF_BASE_MS = 1000;
const STARTUP_BACKOFF_CAP_MS = 32_000;
const RECONNECT_BACKOFF_BASE_MS = 100;
const RECONNECT_BACKOFF_CAP_MS = 10_000;

export function createListener(opts: ListenerOptions): Listener {
  const events = new EventEmitter<ListenerEvents>();
  const stopping = new AbortController();
  let sql: Sql | undefined;
  let backendPid: number | undefined;
  let ready = false;
  let lostAt = 0;
  let reconnecting = false;

  const check = timer(() => void supervise(), opts.checkIntervalMs);

  /** One connection attempt: a fresh postgres.js instance holding exactly one connection. */
  async function connectOnce(): Promise<void> {
    // `onnotify` is a postgres.js option its type definitions do not list.
    const options: postgres.Options<Record<string, never>> & { onnotify: (channel: string, payload: string) => void } = {
      max: 1,
      idle_timeout: 0,
      max_lifetime: null,
      connect_timeout: 10,
      fetch_types: false,
      prepare: false,
      onnotice: () => undefined,
      connection: { application_name: 'pgws-listener' },
      onnotify: (channel, payload) => {
        if (instance === sql) opts.onNotification(channel, payload);
      },
      onclose: () => {
        if (instance === sql && ready) lost('the LISTEN connection closed');
      },
    };
    const instance: Sql = postgres(opts.uri, options);
    try {
      await opts.beforeListen?.(instance);
      await instance`LISTEN ${instance(opts.channel)}`;
      const [row] = await instance<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
      sql = instance;
      backendPid = row?.pid;
      ready = true;
    } catch (err) {
      await instance.end({ timeout: 0 }).catch(() => undefined);
      throw err;
    }
  }

  function announceReady(): void {
    if (lostAt) {
      const blindMs = Date.now() - lostAt;
      opts.log.warn(
        { channel: opts.channel, blindMs },
        'listener re-connected; notifications sent while it was down were not received',
      );
      lostAt = 0;
      events.emit('recovered', blindMs);
    } else {
      opts.log.info({ channel: opts.channel, pid: backendPid }, 'listening');
    }
    if (opts.checkIntervalMs > 0) check.start();
    events.emit('ready', backendPid ?? 0);
  }

  function lost(reason: string): void {
    if (!ready || stopping.signal.aborted) return;
    ready = false;
    backendPid = undefined;
    lostAt = Date.now();
    check.cancel();
    const old = sql;
    sql = undefined;
    void old?.end({ timeout: 0 }).catch(() => undefined);
    events.emit('lost', reason);
    if (opts.checkIntervalMs > 0) {
      opts.log.warn({ channel: opts.channel, reason }, 'listener lost; re-connecting');
      void reconnect();
    } else {
      opts.log.fatal(
        { channel: opts.channel, reason },
        'listener lost and PGWS_CHECK_LISTENER_INTERVAL is not set: exiting so a supervisor can restart pgws',
      );
      opts.onFatal(new Error(`listener lost: ${reason}`));
    }
  }

  async function reconnect(): Promise<void> {
    if (reconnecting) return;
    reconnecting = true;
    try {
      for (let attempt = 0; !stopping.signal.aborted; attempt++) {
        try {
          await connectOnce();
          announceReady();
          return;
        } catch (err) {
          const wait = backoffMs(attempt, RECONNECT_BACKOFF_BASE_MS, RECONNECT_BACKOFF_CAP_MS);
          opts.log.warn({ err: describeDbError(err), retryInMs: wait }, 'listener re-connect failed');
          await delay(wait, stopping.signal);
        }
      }
    } finally {
      reconnecting = false;
    }
  }

  /** Periodic check: a query that does not answer within the interval means a stalled connection. */
  async function supervise(): Promise<void> {
    const current = sql;
    if (!current || !ready) return;
    const deadline = new Promise<'timeout'>((resolve) => {
      const t = setTimeout(() => resolve('timeout'), opts.checkIntervalMs);
      t.unref();
    });
    const answer = await Promise.race([current`SELECT 1`.then(() => 'ok' as const), deadline]).catch(() => 'error' as const);
    if (current !== sql) return;
    if (answer === 'ok') check.start();
    else lost(answer === 'timeout' ? 'the LISTEN connection stopped answering' : 'the LISTEN connection failed a check');
  }

  async function start(attempts: number): Promise<void> {
    const total = Math.max(1, attempts);
    for (let attempt = 1; ; attempt++) {
      try {
        await connectOnce();
        announceReady();
        return;
      } catch (err) {
        const description = describeDbError(err);
        if (attempt >= total || stopping.signal.aborted) {
          throw new Error(`cannot LISTEN on the database after ${attempt} attempt(s): ${description}`);
        }
        const wait = backoffMs(attempt - 1, STARTUP_BACKOFF_BASE_MS, STARTUP_BACKOFF_CAP_MS, false);
        opts.log.warn({ attempt, of: total, retryInMs: wait, err: description }, 'database not reachable yet');
        await delay(wait, stopping.signal);
      }
    }
  }

  async function stop(): Promise<void> {
    stopping.abort();
    check.cancel();
    ready = false;
    const old = sql;
    sql = undefined;
    await old?.end({ timeout: 1 }).catch(() => undefined);
  }

  return Object.assign(events, {
    start,
    stop,
    pid: () => backendPid,
    isReady: () => ready,
  });
}
