// Health, readiness and metrics (PROTOCOL.md §13), through real servers on a real
// PostgreSQL: on the main port when PGWS_ADMIN_PORT is unset, on the admin port when it
// is set, and /ready following the database down and up again.
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { start } from '../src/server.js';
import { freePort } from '../src/embedded.js';
import { connect, handshake } from './harness/client.js';
import { createTestDatabase, ownCluster, type TestDatabase } from './harness/db.js';
import { LISTEN_CHANNEL, startPgws, testConfig } from './harness/pgws.js';
import { track } from './harness/leftovers.js';
import { token } from './harness/tokens.js';
import { eventually, until, within } from './harness/within.js';
import { createLogger } from '../src/log.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

interface Answer {
  readonly status: number;
  readonly type: string | null;
  readonly body: string;
}

async function get(url: string, method = 'GET'): Promise<Answer> {
  const res = await fetch(url, { method });
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
}

/** The value of one sample line (`name{labels} value`) of a Prometheus text page; undefined when absent. */
function sample(page: string, series: string): number | undefined {
  const line = page.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('without PGWS_ADMIN_PORT: health and readiness on the main port', () => {
  it('answers /health 200 ok and /ready 200, even when a static file has the same name', async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'pgws-admin-root-'));
    track(() => fs.rm(root, { recursive: true, force: true }));
    await fs.writeFile(path.join(root, 'health'), 'a file named health');
    await fs.writeFile(path.join(root, 'ready'), 'a file named ready');
    await fs.writeFile(path.join(root, 'metrics'), 'a file named metrics');
    const srv = await startPgws(db.uri, { rootPath: root });

    expect(await get(`${srv.http}/health`)).toEqual({ status: 200, type: 'text/plain; charset=utf-8', body: 'ok' });
    expect(await get(`${srv.http}/ready`)).toEqual({ status: 200, type: 'text/plain; charset=utf-8', body: 'ready\n' });
    expect(await get(`${srv.http}/health`, 'HEAD')).toMatchObject({ status: 200, body: '' });
    expect((await get(`${srv.http}/health`, 'POST')).status).toBe(405);
  });

  it('never serves /metrics there: 404 whatever the root holds', async () => {
    const srv = await startPgws(db.uri);
    const answer = await get(`${srv.http}/metrics`);
    expect(answer.status).toBe(404);
    expect(answer.body).toBe('Not found: /metrics is served on PGWS_ADMIN_PORT only\n');
    expect(srv.server.adminPort).toBeUndefined();
  });
});

describe('with PGWS_ADMIN_PORT', () => {
  it('serves /health, /ready and /metrics there, and not /health on the main port', async () => {
    const srv = await startPgws(db.uri, { adminPort: 0 });
    const admin = `http://127.0.0.1:${srv.server.adminPort}`;
    expect(srv.server.adminPort).toBeGreaterThan(0);
    expect(await get(`${admin}/health`)).toMatchObject({ status: 200, body: 'ok' });
    expect(await get(`${admin}/ready`)).toMatchObject({ status: 200, body: 'ready\n' });
    expect((await get(`${admin}/anything-else`)).status).toBe(404);
    // The main port answers as it always did (the banner), and never /metrics.
    expect((await get(`${srv.http}/health`)).body).toContain('pgws');
    expect((await get(`${srv.http}/metrics`)).status).toBe(404);
    const ready = srv.logs.find((l) => l.msg === 'pgws ready');
    expect(ready?.adminPort).toBe(srv.server.adminPort);
  });

  it('exposes the pgws_ series in Prometheus text format, and they move with the traffic', async () => {
    const srv = await startPgws(db.uri, { adminPort: 0 });
    const metricsUrl = `http://127.0.0.1:${srv.server.adminPort}/metrics`;
    const before = await get(metricsUrl);
    expect(before.status).toBe(200);
    expect(before.type).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(sample(before.body, 'pgws_sockets_open')).toBe(0);
    expect(sample(before.body, 'pgws_listener_up')).toBe(1);
    expect(sample(before.body, 'pgws_frames_received_total')).toBe(0);
    // Process metrics, prefixed too.
    expect(before.body).toMatch(/^pgws_process_cpu_user_seconds_total \d/m);
    expect(before.body).toMatch(/^pgws_nodejs_heap_size_used_bytes \d/m);

    const writer = await connect(`${srv.url}/chat/${await token({ mode: 'rw' })}`);
    const refused = await handshake(`${srv.url}/chat/${await token({ mode: 'rw' }, 'another-secret-of-sufficient-length!')}`);
    expect(refused).toMatchObject({ ok: false, status: 401 });
    writer.send('hello');
    expect(JSON.parse(await writer.next())).toMatchObject({ event: 'WebsocketMessage', payload: 'hello' });
    await db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${JSON.stringify({ channel: 'chat', payload: 'from sql' })})`;
    expect(await writer.nextJson()).toEqual({ channel: 'chat', payload: 'from sql' });
    await writer.close();
    await until(() => srv.server.socketCount() === 0, 5000, 'the socket closed');

    const after = (await get(metricsUrl)).body;
    expect(sample(after, 'pgws_upgrades_total{status="101"}')).toBe(1);
    expect(sample(after, 'pgws_upgrades_total{status="401"}')).toBe(1);
    expect(sample(after, 'pgws_frames_received_total')).toBe(1);
    expect(sample(after, 'pgws_notify_frames_total{result="committed"}')).toBe(1);
    expect(sample(after, 'pgws_notifications_total')).toBe(2);
    expect(sample(after, 'pgws_frames_sent_total')).toBe(2);
    expect(sample(after, 'pgws_closes_total{code="1000"}')).toBe(1);
    expect(sample(after, 'pgws_notify_batch_size_count')).toBe(1);
    expect(sample(after, 'pgws_notify_batch_size_sum')).toBe(1);
    expect(sample(after, 'pgws_notify_batch_seconds_count')).toBe(1);
    expect(sample(after, 'pgws_sockets_open')).toBe(0);
    // A counter never goes back: a second scrape with no traffic reads the same.
    expect(sample((await get(metricsUrl)).body, 'pgws_frames_sent_total')).toBe(2);
  });

  it('answers /health and a 503 /ready while start-up is still trying to reach the database', async () => {
    const adminPort = await freePort();
    const deadDb = `postgres://app:pw@127.0.0.1:${await freePort()}/app`;
    const starting = start(testConfig(deadDb, { adminPort, retries: 3 }), { log: createLogger('silent') });
    const failed = starting.then(
      () => undefined,
      (err: unknown) => err,
    );
    const admin = `http://127.0.0.1:${adminPort}`;
    const health = await eventually(
      async () => get(`${admin}/health`).then((answer) => (answer.status === 200 ? answer : undefined), () => undefined),
      5000,
      '/health answering during start-up',
    );
    expect(health.body).toBe('ok');
    expect(await get(`${admin}/ready`)).toEqual({
      status: 503,
      type: 'text/plain; charset=utf-8',
      body: 'not ready: the LISTEN connection is down\n',
    });
    expect(await within(failed, 15_000, 'start() giving up')).toBeInstanceOf(Error);
    // Start-up failed: the admin port is released with everything else.
    await expect(fetch(`${admin}/health`)).rejects.toThrow();
  });
});

describe('readiness follows the database', () => {
  it('/ready turns 503 while PostgreSQL is down and 200 after; /health stays 200', async () => {
    const cluster = await ownCluster();
    const srv = await startPgws(cluster.uri, { adminPort: 0, checkListenerInterval: 200 });
    const admin = `http://127.0.0.1:${srv.server.adminPort}`;
    expect((await get(`${admin}/ready`)).status).toBe(200);

    const lost = srv.waitFor('listener-lost');
    await cluster.pause();
    await within(lost, 5000, 'listener-lost');
    const down = await get(`${admin}/ready`);
    expect(down.status).toBe(503);
    expect(down.body).toBe('not ready: the LISTEN connection is down\n');
    expect(await get(`${admin}/health`)).toMatchObject({ status: 200, body: 'ok' });
    expect(sample((await get(`${admin}/metrics`)).body, 'pgws_listener_up')).toBe(0);

    const back = srv.waitFor('listener-ready');
    await cluster.start();
    await within(back, 15_000, 'listener-ready after the restart');
    // The pool's connections died with the server; /ready waits for them to answer again.
    const ready = await eventually(
      async () => get(`${admin}/ready`).then((answer) => (answer.status === 200 ? answer : undefined)),
      10_000,
      '/ready 200 after the restart',
    );
    expect(ready.body).toBe('ready\n');
    const page = (await get(`${admin}/metrics`)).body;
    expect(sample(page, 'pgws_listener_lost_total')).toBe(1);
    expect(sample(page, 'pgws_listener_recovered_total')).toBe(1);
    expect(sample(page, 'pgws_listener_blind_seconds_total')).toBeGreaterThan(0);
  });
});
