// Writers that send as fast as their sockets accept, with no window of their own (issue 11,
// part 1): flow control slows them down instead of closing them. What reached PostgreSQL is
// checked by a raw LISTEN, frame by frame and in each socket's order.
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { describe, expect, inject, it } from 'vitest';
import { freePort } from '../src/embedded.js';
import { cleanEnv, logMsg, runPgws } from './harness/child.js';
import { connect, type Closed, type TestClient } from './harness/client.js';
import { createTestDatabase, ownCluster, type Sql } from './harness/db.js';
import { watchChannel } from './harness/db-watch.js';
import { LISTEN_CHANNEL, SECRET, startPgws } from './harness/pgws.js';
import { clusterPids, stall } from './harness/stall.js';
import { token } from './harness/tokens.js';
import { eventually, until, within } from './harness/within.js';

/** The client's own TCP socket, to wait for it to drain as a well-behaved client library does. */
function tcpOf(client: TestClient): Socket {
  return (client.ws as unknown as { _socket: Socket })._socket;
}

/**
 * Sends every text in a plain loop, as fast as the socket takes them: it waits only when its
 * own socket's buffer is full (TCP backpressure), never for an answer. Stops at a close.
 */
async function flood(client: TestClient, texts: readonly string[]): Promise<void> {
  const tcp = tcpOf(client);
  for (const text of texts) {
    if (client.ws.readyState !== WebSocket.OPEN) return;
    client.ws.send(text);
    if (tcp.writableNeedDrain) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          tcp.off('drain', done);
          tcp.off('close', done);
          resolve();
        };
        tcp.on('drain', done);
        tcp.on('close', done);
      });
    }
  }
}

interface Envelope {
  readonly channel: string;
  readonly payload: string;
}

/** Per writer (by channel `<prefix><w>`), the payloads a LISTEN saw, in the order it saw them. */
function byWriter(seen: readonly string[], prefix: string): Map<number, string[]> {
  const by = new Map<number, string[]>();
  for (const text of seen) {
    const env = JSON.parse(text) as Envelope;
    const w = Number(env.channel.slice(prefix.length));
    let list = by.get(w);
    if (list === undefined) by.set(w, (list = []));
    list.push(env.payload);
  }
  return by;
}

const sentBy = (w: number, n: number): string[] => Array.from({ length: n }, (_, j) => `w${w}-${j}`);

/** Peak resident memory of a process (Linux), in MiB. */
function peakRssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmHWM:'));
  return Number(/(\d+)/.exec(line ?? '')?.[1] ?? NaN) / 1024;
}

const transport = inject('transport');

describe('a flood with no window: 100k frames from 50 sockets', () => {
  it('reaches the database whole and in each socket\'s order, with no socket closed and memory bounded', async () => {
    const WRITERS = 50;
    const FRAMES = 2000;
    const db = await createTestDatabase();
    const port = await freePort();
    const adminPort = await freePort();
    const child = runPgws(
      ['--db-uri', db.uri, '--jwt-secret', SECRET, '--host', '127.0.0.1', '--port', String(port), '--admin-port', String(adminPort)],
      cleanEnv(),
    );
    await child.waitForLine(logMsg('pgws ready'));
    const pid = child.proc.pid ?? 0;
    const watch = await watchChannel(db.sql, LISTEN_CHANNEL, (p) => p.includes('"channel":"flood-'));
    const writers: TestClient[] = [];
    for (let w = 0; w < WRITERS; w++) writers.push(await connect(`ws://127.0.0.1:${port}/flood-${w}/${await token({ mode: 'w' })}`));
    const closes: (Closed | undefined)[] = writers.map(() => undefined);
    writers.forEach((c, w) => void c.closed.then((closed) => (closes[w] = closed)));

    const started = Date.now();
    await Promise.all(writers.map((c, w) => flood(c, sentBy(w, FRAMES))));
    await until(() => watch.seen.length >= WRITERS * FRAMES, 90_000, 'every frame seen by the LISTEN client');
    const seconds = (Date.now() - started) / 1000;

    const by = byWriter(watch.seen, 'flood-');
    for (let w = 0; w < WRITERS; w++) expect(by.get(w), `writer ${w}`).toEqual(sentBy(w, FRAMES));
    expect(watch.seen).toHaveLength(WRITERS * FRAMES);
    expect(closes.filter((c) => c !== undefined)).toEqual([]);

    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const value = (series: string): number => Number(new RegExp(`^${series} (\\S+)$`, 'm').exec(metrics)?.[1]);
    const peak = peakRssMiB(pid);
    const report = {
      transport,
      frames: WRITERS * FRAMES,
      seconds: Number(seconds.toFixed(1)),
      framesPerSecond: Math.round((WRITERS * FRAMES) / seconds),
      pauses: value('pgws_flow_pauses_total'),
      queuedFramesPeak: value('pgws_queued_frames_peak'),
      peakRssMiB: Math.round(peak),
    };
    console.log(`flood: ${JSON.stringify(report)}`);
    expect(value('pgws_queue_full_closes_total')).toBe(0);
    // Memory stayed bounded: the queue by its limit, the process well under what 100k held frames would need.
    expect(report.queuedFramesPeak).toBeLessThanOrEqual(WRITERS * 256 * 2);
    expect(peak).toBeLessThan(256);
    // Where the engine can stop reading, it did: that is what slowed the writers down.
    if (transport === 'ws') expect(report.pauses).toBeGreaterThan(0);
    await Promise.all(writers.map((c) => c.close()));
    child.proc.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);
  }, 120_000);
});

describe('a flood across a PostgreSQL restart', () => {
  /**
   * A LISTEN cannot witness a restart: what commits just before the stop may never reach it.
   * So pgws's own statement is made to leave a trace that commits with it: an audit.pg_notify
   * earlier on the search_path than pg_catalog records each payload in a table, then NOTIFYs.
   */
  async function auditNotifies(sql: Sql): Promise<() => Promise<string[]>> {
    await sql.unsafe(`
      CREATE SCHEMA audit;
      CREATE TABLE audit.notified (id bigserial PRIMARY KEY, payload text NOT NULL);
      CREATE FUNCTION audit.pg_notify(channel text, payload text) RETURNS void LANGUAGE sql AS $$
        INSERT INTO audit.notified (payload) VALUES (payload);
        SELECT pg_catalog.pg_notify(channel, payload);
      $$;
      ALTER DATABASE postgres SET search_path = audit, pg_catalog, public;
    `);
    return async () => (await sql<{ payload: string }[]>`SELECT payload FROM audit.notified ORDER BY id`).map((r) => r.payload);
  }

  it('each frame reaches the database or its writer is told 1011: a prefix per writer, never a gap in silence', async () => {
    const WRITERS = 20;
    const FRAMES = 5000;
    const cluster = await ownCluster();
    const committed = await auditNotifies(cluster.sql);
    const srv = await startPgws(cluster.uri, { checkListenerInterval: 200, poolSize: 4, logLevel: 'warn' });
    const writers: TestClient[] = [];
    for (let w = 0; w < WRITERS; w++) writers.push(await connect(`${srv.url}/restart-${w}/${await token({ mode: 'w' })}`));
    const closes: (Closed | undefined)[] = writers.map(() => undefined);
    writers.forEach((c, w) => void c.closed.then((closed) => (closes[w] = closed)));

    const flooding = Promise.all(writers.map((c, w) => flood(c, sentBy(w, FRAMES))));
    // Mid-flood: every writer still has frames to send when the database goes away.
    await until(() => srv.server.metrics.snapshot().framesNotified >= 2000, 30_000, 'the flood under way');
    await cluster.pause();
    await cluster.start();
    await within(flooding, 60_000, 'the writers done or closed');
    // Every writer ends closed (1011) or with all its frames committed.
    const done = async (): Promise<Map<number, string[]> | undefined> => {
      const by = byWriter(await committed(), 'restart-');
      return closes.every((c, w) => c !== undefined || (by.get(w)?.length ?? 0) === FRAMES) ? by : undefined;
    };
    const by = await eventually(done, 60_000, 'each writer complete or closed');

    let delivered = 0;
    for (let w = 0; w < WRITERS; w++) {
      const got = by.get(w) ?? [];
      delivered += got.length;
      expect(got, `writer ${w}: what reached the database is a prefix of what it sent`).toEqual(sentBy(w, FRAMES).slice(0, got.length));
      if (got.length < FRAMES) expect(closes[w], `writer ${w} lost frames without being told`).toMatchObject({ code: 1011 });
    }
    console.log(`flood across a restart (${transport}): ${delivered} of ${WRITERS * FRAMES} frames committed, ${closes.filter((c) => c?.code === 1011).length} writers told 1011`);
    expect(delivered).toBeGreaterThan(0);

    // pgws came back: a new writer's frame goes through.
    await eventually(
      async () => {
        const client = await connect(`${srv.url}/restart-again/${await token({ mode: 'w' })}`);
        client.send('after the restart');
        const seen = await eventually(async () => ((await committed()).some((p) => p.includes('"restart-again"')) ? true : undefined), 3000, 'committed').catch(() => undefined);
        await client.close();
        return seen;
      },
      30_000,
      'a frame through pgws after the restart',
    );
  }, 180_000);
});

describe('pausing a socket while the database is stalled', () => {
  it('ws stops reading (TCP holds the client back), never idles it out, and delivers everything after; uws, which cannot stop reading, holds up to its limit and then closes 1013', async () => {
    const IDLE_SECONDS = 8;
    const cluster = await ownCluster();
    // The NOTIFY timeout must outlast the stall, which outlasts the idle timeout.
    const srv = await startPgws(cluster.uri, { maxQueuedMessages: 16 }, { idleTimeoutSeconds: IDLE_SECONDS, notifyTimeoutMs: 60_000 });
    const watch = await watchChannel(cluster.sql, LISTEN_CHANNEL, (p) => p.includes('"channel":"paused"'));
    const writer = await connect(`${srv.url}/paused/${await token({ mode: 'w' })}`);
    // 20 MB: more than the kernel's buffers on both sides hold, so TCP must stop the client.
    const texts = Array.from({ length: 20_000 }, (_, i) => `${i}:${'x'.repeat(1000)}`);
    const stalled = stall(clusterPids(cluster.serverPid() ?? 0));
    const flooding = flood(writer, texts);

    if (srv.server.transport === 'ws') {
      await until(() => srv.server.metrics.snapshot().pauses >= 1, 5000, 'reading paused');
      await until(() => writer.ws.bufferedAmount > 0 || tcpOf(writer).writableNeedDrain, 10_000, 'the client held back by TCP');
      // Longer than the idle timeout, with pgws the side that is not reading.
      await new Promise((resolve) => setTimeout(resolve, (IDLE_SECONDS + 2) * 1000));
      expect(writer.ws.readyState).toBe(WebSocket.OPEN);
      stalled.resume();
      await within(flooding, 60_000, 'the client done sending');
      await until(() => watch.seen.length >= texts.length, 60_000, 'every frame seen');
      expect(watch.seen.map((p) => (JSON.parse(p) as Envelope).payload)).toEqual(texts);
      expect(writer.ws.readyState).toBe(WebSocket.OPEN);
    } else {
      const closed = await within(writer.closed, 30_000, 'the writer closed once over the hold limit');
      expect(closed.code).toBe(1013);
      expect(closed.reason).toMatch(/^Too many messages waiting for the database \(\d+ held\): later ones were not delivered$/);
      stalled.resume();
      await within(flooding, 10_000, 'the client stopped at the close');
      // What was taken before the limit still goes out, in order: a prefix.
      await eventually(async () => (watch.seen.length > 0 && srv.server.metrics.snapshot().queuedFrames === 0 ? true : undefined), 30_000, 'the held frames out');
      const got = watch.seen.map((p) => (JSON.parse(p) as Envelope).payload);
      expect(got).toEqual(texts.slice(0, got.length));
      expect(srv.server.metrics.snapshot().framesRefusedQueueFull).toBe(1);
    }
  }, 120_000);
});
