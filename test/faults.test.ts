// Database faults, caused for real (issue 4, items 1-3): PostgreSQL restarts,
// a killed or stalled LISTEN backend, a whole server stalled, NOTIFY failing
// while the database is down, and a stalled database filling a writer's queue.
// Each test owns its PostgreSQL cluster.
import { describe, expect, it } from 'vitest';
import { runPgws, logMsg } from './harness/child.js';
import { connect } from './harness/client.js';
import { ownCluster } from './harness/db.js';
import { watchChannel } from './harness/db-watch.js';
import { LISTEN_CHANNEL, SECRET, startPgws } from './harness/pgws.js';
import { clusterPids, stall } from './harness/stall.js';
import { token } from './harness/tokens.js';
import { connectV2 } from './harness/v2.js';
import { until, within } from './harness/within.js';
import { freePort } from '../src/embedded.js';

const notifyChat = (sql: { unsafe: (q: string, p: string[]) => Promise<unknown> }, payload: string): Promise<unknown> =>
  sql.unsafe('SELECT pg_notify($1, $2)', [LISTEN_CHANNEL, JSON.stringify({ channel: 'chat', payload })]);

describe('PostgreSQL restarts', () => {
  it('with PGWS_CHECK_LISTENER_INTERVAL: sockets stay open, the listener re-LISTENs, blind time is logged and counted', async () => {
    const cluster = await ownCluster();
    const srv = await startPgws(cluster.uri, { checkListenerInterval: 200 });
    const reader = await connect(`${srv.url}/chat/${await token({ mode: 'r' })}`);
    const lost = srv.waitFor('listener-lost');
    await cluster.pause();
    await within(lost, 5000, 'listener-lost');
    const ready = srv.waitFor('listener-ready');
    await cluster.start();
    await within(ready, 15_000, 'listener-ready after the restart');

    await notifyChat(cluster.sql, 'after the restart');
    expect(await reader.nextJson()).toEqual({ channel: 'chat', payload: 'after the restart' });
    expect(reader.ws.readyState).toBe(reader.ws.OPEN);
    const line = srv.logs.find((l) => l.msg?.startsWith('listener re-connected'));
    expect(line?.blindMs).toBeGreaterThan(0);
    const m = srv.server.metrics.snapshot();
    expect(m).toMatchObject({ listenerLost: 1, listenerRecovered: 1, listenerBlindMsLast: line?.blindMs });
  });

  it('without it: the process exits 1 promptly with one clear line', async () => {
    const cluster = await ownCluster();
    const child = runPgws(['--db-uri', cluster.uri, '--jwt-secret', SECRET, '--host', '127.0.0.1', '--port', String(await freePort())]);
    await child.waitForLine(logMsg('pgws ready'));
    const stopped = Date.now();
    await cluster.pause();
    const { code } = await within(child.exited, 10_000, 'pgws exit');
    expect(code).toBe(1);
    expect(Date.now() - stopped).toBeLessThan(8000);
    const fatal = child.stdout.filter((l) => l.includes('"level":60'));
    expect(fatal).toHaveLength(1);
    expect(fatal[0]).toContain('listener lost and PGWS_CHECK_LISTENER_INTERVAL is not set');
  });
});

describe('a stalled LISTEN connection (no FIN)', () => {
  const INTERVAL = 300;

  it('is noticed within the check interval when its backend is SIGSTOPped, and replaced', async () => {
    const cluster = await ownCluster();
    const srv = await startPgws(cluster.uri, { checkListenerInterval: INTERVAL });
    const reader = await connect(`${srv.url}/chat/${await token({ mode: 'r' })}`);
    const oldPid = srv.server.listenerPid() ?? 0;
    const lost = srv.waitFor('listener-lost');
    const ready = srv.waitFor('listener-ready');
    const stalledAt = Date.now();
    const stalled = stall([oldPid]);
    const [reason] = await within(lost, 5000, 'listener-lost');
    // One interval until the check runs, one for its query to time out.
    expect(Date.now() - stalledAt).toBeLessThan(2 * INTERVAL + 500);
    expect(reason).toMatch(/stopped answering/);
    const [newPid] = await within(ready, 10_000, 'listener-ready');
    expect(newPid).not.toBe(oldPid);
    await notifyChat(cluster.sql, 'while the old backend is frozen');
    expect(await reader.nextJson()).toMatchObject({ payload: 'while the old backend is frozen' });
    stalled.resume();
  });

  it('recovers once a whole SIGSTOPped server gets SIGCONT, sockets open throughout', async () => {
    const cluster = await ownCluster();
    const srv = await startPgws(cluster.uri, { checkListenerInterval: INTERVAL });
    const reader = await connect(`${srv.url}/chat/${await token({ mode: 'r' })}`);
    const lost = srv.waitFor('listener-lost');
    const stalledAt = Date.now();
    const stalled = stall(clusterPids(cluster.serverPid() ?? 0));
    await within(lost, 5000, 'listener-lost');
    expect(Date.now() - stalledAt).toBeLessThan(2 * INTERVAL + 500);
    const ready = srv.waitFor('listener-ready');
    stalled.resume();
    await within(ready, 15_000, 'listener-ready after SIGCONT');
    await notifyChat(cluster.sql, 'after SIGCONT');
    expect(await reader.nextJson()).toMatchObject({ payload: 'after SIGCONT' });
    expect(reader.ws.readyState).toBe(reader.ws.OPEN);
  });
});

describe('NOTIFY while the database is down', () => {
  it('closes the writer with 1011, logs and counts it, sends nothing of the frame, and later frames go through', async () => {
    const cluster = await ownCluster();
    const srv = await startPgws(cluster.uri, { checkListenerInterval: 200 });
    const writer = await connect(`${srv.url}/${await token({ mode: 'w', channels: ['chan-a', 'chan-b'] })}`);
    const readerB = await connect(`${srv.url}/chan-b/${await token({ mode: 'r' })}`);
    const lost = srv.waitFor('listener-lost');
    await cluster.pause();
    await within(lost, 5000, 'listener-lost');
    writer.send('during the outage');
    const closed = await within(writer.closed, 15_000, 'writer close');
    expect(closed).toEqual({ code: 1011, reason: 'Database error: message not delivered' });
    expect(srv.logs.some((l) => l.msg?.startsWith('NOTIFY failed'))).toBe(true);
    expect(srv.server.metrics.snapshot()).toMatchObject({ framesFailed: 1, framesNotified: 0 });
    // The server counts a close when its side of the socket closes, which on ws comes
    // a moment after the client has seen the close frame.
    await until(() => srv.server.metrics.snapshot().closes['1011'] === 1, 5000, 'the 1011 close counted');

    const ready = srv.waitFor('listener-ready');
    await cluster.start();
    await within(ready, 15_000, 'listener-ready');
    const again = await connect(`${srv.url}/${await token({ mode: 'w', channels: ['chan-a', 'chan-b'] })}`);
    again.send('after the outage');
    // The first thing reader B sees is the new frame: the failed one never went half-way.
    expect(await readerB.nextJson()).toMatchObject({ channel: 'chan-b', payload: 'after the outage' });
    // Readers can see a NOTIFY before the statement that sent it has returned to pgws.
    await until(() => srv.server.metrics.snapshot().framesNotified === 1, 5000, 'the frame counted as committed');
  });
});

describe('a stalled database and a fast writer', () => {
  it('holds the writer back instead of closing it: past its queue limit nothing is refused, and after SIGCONT every frame goes through in order', async () => {
    const cluster = await ownCluster();
    const srv = await startPgws(cluster.uri, { maxQueuedMessages: 8 });
    const watch = await watchChannel(cluster.sql, LISTEN_CHANNEL);
    const writer = await connect(`${srv.url}/queue/${await token({ mode: 'w' })}`);
    const stalled = stall(clusterPids(cluster.serverPid() ?? 0));
    const sent = Array.from({ length: 30 }, (_, i) => `m${i}`);
    for (const m of sent) writer.send(m);
    // Frames 9 to 30 are held (ws also stops reading from the socket) while the first 8 wait.
    await until(() => srv.server.metrics.snapshot().queuedFrames === 8, 5000, 'the queue at its limit');
    await writer.expectNoMessage(300);
    stalled.resume();
    const got: string[] = [];
    for (let i = 0; i < sent.length; i++) got.push((JSON.parse(await watch.next(10_000)) as { payload: string }).payload);
    expect(got).toEqual(sent);
    expect(writer.ws.readyState).toBe(writer.ws.OPEN);
    await until(() => srv.server.metrics.snapshot().framesNotified === 30, 5000, 'all 30 counted as committed');
    expect(srv.server.metrics.snapshot().framesRefusedQueueFull).toBe(0);
  });
});

describe('a v2 publish while the database is unreachable (PROTOCOL.md §9)', () => {
  it('is answered db_error within 10 s when PostgreSQL is down, the socket stays open, and publishes go through once it is back', async () => {
    const cluster = await ownCluster();
    const srv = await startPgws(cluster.uri, { checkListenerInterval: 200 });
    const client = await connectV2(`${srv.url}/`, await token({ mode: 'rw' }));
    expect(await client.request({ type: 'subscribe', channel: 'chat' })).toMatchObject({ type: 'subscribed' });
    const lost = srv.waitFor('listener-lost');
    await cluster.pause();
    await within(lost, 5000, 'listener-lost');
    const asked = Date.now();
    const answer = await client.request({ type: 'publish', id: 'down', channel: 'chat', payload: 'during the outage' }, 10_000);
    expect(answer).toMatchObject({ type: 'error', id: 'down', code: 'db_error', message: 'database error: the message was not delivered' });
    expect(Date.now() - asked).toBeLessThan(10_000);
    expect(client.ws.readyState).toBe(client.ws.OPEN);

    const ready = srv.waitFor('listener-ready');
    await cluster.start();
    await within(ready, 15_000, 'listener-ready');
    expect(await client.request({ type: 'publish', id: 'up', channel: 'chat', payload: 'after' }, 10_000)).toEqual({ type: 'published', id: 'up' });
    // The first message is the one after the outage: the failed one never went out.
    expect(await client.next()).toMatchObject({ type: 'message', data: { payload: 'after' } });
  });

  it('is answered db_error when the database stalls past the NOTIFY timeout, saying it may still be delivered; the socket stays open', async () => {
    const cluster = await ownCluster();
    const srv = await startPgws(cluster.uri, {}, { notifyTimeoutMs: 1000 });
    const client = await connectV2(`${srv.url}/`, await token({ mode: 'rw' }));
    const stalled = stall(clusterPids(cluster.serverPid() ?? 0));
    const answer = await client.request({ type: 'publish', id: 1, channel: 'chat', payload: 'stalled' }, 10_000);
    expect(answer).toMatchObject({ type: 'error', id: 1, code: 'db_error', message: expect.stringContaining('may still be delivered') });
    stalled.resume();
    expect(await client.request({ type: 'ping', id: 2 }, 10_000)).toEqual({ type: 'pong', id: 2 });
    expect(client.ws.readyState).toBe(client.ws.OPEN);
  });

  it('a publish waiting behind a stalled batch is answered within 2 x the NOTIFY timeout, as never sent, not after that batch and then its own', async () => {
    const cluster = await ownCluster();
    // One connection: a second batch can only wait for the first.
    const srv = await startPgws(cluster.uri, { poolSize: 1 }, { notifyTimeoutMs: 1000 });
    const first = await connectV2(`${srv.url}/`, await token({ mode: 'rw' }));
    const behind = await Promise.all([1, 2, 3].map(async () => connectV2(`${srv.url}/`, await token({ mode: 'rw' }))));
    const stalled = stall(clusterPids(cluster.serverPid() ?? 0));
    const stuck = first.request({ type: 'publish', id: 'first', channel: 'chat', payload: 'in flight' }, 10_000);
    // Answered after the publish was handed to the batcher: its batch is in flight by now.
    expect(await first.request({ type: 'ping', id: 'p' })).toEqual({ type: 'pong', id: 'p' });
    const asked = Date.now();
    const answers = await Promise.all(behind.map((c, i) => c.request({ type: 'publish', id: i, channel: 'chat', payload: 'waiting' }, 10_000)));
    const waited = Date.now() - asked;
    for (const [i, answer] of answers.entries()) {
      expect(answer).toEqual({ type: 'error', id: i, code: 'db_error', message: 'database error: the message was not delivered' });
    }
    expect(waited).toBeLessThan(2 * 1000);
    expect(await stuck).toMatchObject({ type: 'error', id: 'first', code: 'db_error', message: expect.stringContaining('may still be delivered') });
    // The one sent and the three never sent.
    expect(srv.server.metrics.snapshot()).toMatchObject({ framesFailed: 4, framesNotified: 0 });
    stalled.resume();
    expect(await behind[0]?.request({ type: 'publish', id: 'after', channel: 'chat', payload: 'after' }, 10_000)).toEqual({ type: 'published', id: 'after' });
  });
});
