// Start-up retries, a lost LISTEN connection in both supervision modes, and a
// database that refuses NOTIFY. These tests own their PostgreSQL cluster when
// they stop it.
import { describe, expect, it } from 'vitest';
import { freePort } from '../src/embedded.js';
import { createLogger } from '../src/log.js';
import { start } from '../src/server.js';
import { connect } from './harness/client.js';
import { createTestDatabase, ownCluster } from './harness/db.js';
import { LISTEN_CHANNEL, startPgws, testConfig } from './harness/pgws.js';
import { token } from './harness/tokens.js';

describe('start-up', () => {
  it('tries PGWS_RETRIES times with backoff, then fails with the database error', async () => {
    const port = await freePort();
    const lines: string[] = [];
    const log = createLogger('info', { write: (line: string) => void lines.push(line) });
    const started = Date.now();
    const attempt = start(testConfig(`postgres://nobody:pw@127.0.0.1:${port}/none`, { retries: 2 }), { log });
    await expect(attempt).rejects.toThrow(/after 2 attempt\(s\).*ECONNREFUSED/);
    // One wait of 1 s between the two attempts.
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    const warnings = lines.map((l) => JSON.parse(l) as { msg: string; attempt?: number }).filter((l) => l.msg === 'database not reachable yet');
    expect(warnings.map((w) => w.attempt)).toEqual([1]);
    expect(lines.join('\n')).not.toContain(':pw@');
  });
});

describe('listener supervision', () => {
  it('with PGWS_CHECK_LISTENER_INTERVAL, re-LISTENs after the backend is killed and sockets stay open', async () => {
    const db = await createTestDatabase();
    const srv = await startPgws(db.uri, { checkListenerInterval: 500 });
    const reader = await connect(`${srv.url}/chat/${await token({ mode: 'r' })}`);
    const oldPid = srv.server.listenerPid();
    expect(oldPid).toBeTypeOf('number');
    const lost = srv.waitFor('listener-lost');
    const ready = srv.waitFor('listener-ready');
    await db.sql`SELECT pg_terminate_backend(${oldPid ?? 0})`;
    await lost;
    const [newPid] = await ready;
    expect(newPid).not.toBe(oldPid);
    await db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${JSON.stringify({ channel: 'chat', payload: 'after' })})`;
    expect(await reader.nextJson()).toEqual({ channel: 'chat', payload: 'after' });
    expect(srv.logs.some((l) => l.msg?.startsWith('listener re-connected') && typeof l.blindMs === 'number')).toBe(true);
  });

  it('without it, a killed listener is fatal so a supervisor can restart pgws', async () => {
    const db = await createTestDatabase();
    const srv = await startPgws(db.uri, { checkListenerInterval: 0 });
    const fatal = srv.waitFor('fatal');
    await db.sql`SELECT pg_terminate_backend(${srv.server.listenerPid() ?? 0})`;
    const [error] = await fatal;
    expect(error.message).toMatch(/listener lost/);
    expect(srv.logs.some((l) => l.level === 60 && String(l.msg).includes('PGWS_CHECK_LISTENER_INTERVAL'))).toBe(true);
  });
});

describe('database outage', () => {
  it('closes a writer with 1011 when NOTIFY fails, then works again once the database is back', async () => {
    const cluster = await ownCluster();
    const srv = await startPgws(cluster.uri, { checkListenerInterval: 200 });
    const writer = await connect(`${srv.url}/chat/${await token({ mode: 'w' })}`);
    const reader = await connect(`${srv.url}/chat/${await token({ mode: 'r' })}`);
    const lost = srv.waitFor('listener-lost');
    await cluster.pause();
    await lost;
    writer.send('during the outage');
    const closed = await writer.closed;
    expect(closed.code).toBe(1011);
    expect(closed.reason).toMatch(/not delivered/);
    expect(srv.logs.some((l) => l.msg?.startsWith('NOTIFY failed'))).toBe(true);

    const ready = srv.waitFor('listener-ready');
    await cluster.start();
    await ready;
    const again = await connect(`${srv.url}/chat/${await token({ mode: 'w' })}`);
    again.send('after the outage');
    expect(await reader.nextJson()).toMatchObject({ payload: 'after the outage' });
  });
});
