// /health, /ready and /metrics (PROTOCOL.md §13), as plain answers that either HTTP
// server can write: the admin port's (admin/server.ts) or the main port's transport.
import type { Metrics } from '../metrics.js';
import type { HttpAnswer } from '../transport/types.js';

/** What readiness asks of the running server. */
export interface ReadinessProbes {
  /** Set once stop() began: a load balancer should send no more sockets. */
  stopping(): boolean;
  listenerUp(): boolean;
  /** A query through the NOTIFY pool; rejects with the database's error. */
  pingPool(): Promise<void>;
}

/** How long /ready waits for the NOTIFY pool: under the 5 s most probes give a request. */
export const READY_PING_TIMEOUT_MS = 2000;

const TEXT = { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' } as const;

/** Liveness: the process is serving requests. Nothing else is checked, so a database outage never gets pgws restarted. */
export function healthAnswer(): HttpAnswer {
  return { status: 200, headers: TEXT, body: 'ok' };
}

/** Readiness: the LISTEN connection is up and the NOTIFY pool answers; else 503 with the reason. */
export async function readyAnswer(probes: ReadinessProbes): Promise<HttpAnswer> {
  const notReady = (reason: string): HttpAnswer => ({ status: 503, headers: TEXT, body: `not ready: ${reason}\n` });
  if (probes.stopping()) return notReady('shutting down');
  if (!probes.listenerUp()) return notReady('the LISTEN connection is down');
  const failure = await pingWithin(probes.pingPool, READY_PING_TIMEOUT_MS);
  if (failure !== undefined) return notReady(`the NOTIFY pool does not answer (${failure})`);
  return { status: 200, headers: TEXT, body: 'ready\n' };
}

export async function metricsAnswer(metrics: Metrics): Promise<HttpAnswer> {
  return {
    status: 200,
    headers: { 'Content-Type': metrics.registry.contentType, 'Cache-Control': 'no-store' },
    body: await metrics.registry.metrics(),
  };
}

/** On the main port, /metrics is never served: metrics belong on a port that is not public. */
export function metricsNotHereAnswer(): HttpAnswer {
  return { status: 404, headers: TEXT, body: 'Not found: /metrics is served on PGWS_ADMIN_PORT only\n' };
}

/** Undefined when the ping answered in time, else why not (no secrets: the database's error code and message). */
async function pingWithin(ping: () => Promise<void>, ms: number): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`no answer within ${ms} ms`), ms);
  });
  const answered = ping().then(
    () => undefined,
    (err: unknown) => (err instanceof Error ? err.message : String(err)),
  );
  try {
    return await Promise.race([answered, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
