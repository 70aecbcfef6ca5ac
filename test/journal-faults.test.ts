// The journal closes the blind windows (PROTOCOL.md §10): a client resuming with `since` misses
// nothing after a pgws process is SIGKILLed and started again, or after PostgreSQL restarts
// under a running pgws; and the client library (pgws/client) resumes from its last offset by
// itself. Real processes, a real cluster this file owns (it is restarted), raw and library clients.
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { connect as connectClient } from '../client/src/index.js';
import { freePort } from '../src/embedded.js';
import { logMsg, runPgws } from './harness/child.js';
import { ownCluster, type Sql } from './harness/db.js';
import { installJournal } from './harness/journal.js';
import { track } from './harness/leftovers.js';
import { LISTEN_CHANNEL, SECRET, startPgws } from './harness/pgws.js';
import { token } from './harness/tokens.js';
import { connectV2, type Frame, type V2Client } from './harness/v2.js';
import { eventually, until, within } from './harness/within.js';

async function send(sql: Sql, target: string, payload: string): Promise<string> {
  const [row] = await sql<{ id: string }[]>`SELECT pgws.send(${target}, ${payload})::text AS id`;
  return row?.id as string;
}

/** The offsets of a channel's journal rows after `since`, in order. */
async function offsetsAfter(sql: Sql, target: string, since: string): Promise<string[]> {
  const rows = await sql<{ id: string }[]>`SELECT id::text AS id FROM pgws.journal WHERE channel = ${target} AND journal.id > ${since}::bigint ORDER BY journal.id`;
  return rows.map((r) => r.id);
}

async function messages(client: V2Client, n: number): Promise<Frame[]> {
  const out: Frame[] = [];
  while (out.length < n) {
    const frame = await client.next(10_000);
    if (frame.type === 'message') out.push(frame);
  }
  return out;
}

describe('resuming with since after faults', () => {
  it('a pgws process SIGKILLed and started again: a client resuming with since gets what was sent meanwhile, once, in order', async () => {
    const cluster = await ownCluster();
    await installJournal(cluster.uri);
    const port = await freePort();
    const args = ['--db-uri', cluster.uri, '--jwt-secret', SECRET, '--host', '127.0.0.1', '--port', String(port), '--journal', 'on'];
    const first = runPgws(args);
    await first.waitForLine(logMsg('pgws ready'));
    const reader = await token({ mode: 'r' });
    const before = await connectV2(`ws://127.0.0.1:${port}/`, reader);
    await before.request({ type: 'subscribe', channel: 'kill' });
    await send(cluster.sql, 'kill', 'before');
    const [seen] = await messages(before, 1);
    const since = seen?.offset as string;

    first.proc.kill('SIGKILL');
    await within(first.exited, 5000, 'the first pgws gone');
    for (const text of ['while down 1', 'while down 2', 'while down 3']) await send(cluster.sql, 'kill', text);
    const second = runPgws(args);
    await second.waitForLine(logMsg('pgws ready'));

    const after = await connectV2(`ws://127.0.0.1:${port}/`, reader);
    expect(await after.request({ type: 'subscribe', channel: 'kill', since })).toMatchObject({ type: 'subscribed', recovered: true });
    await send(cluster.sql, 'kill', 'live');
    const frames = await messages(after, 4);
    expect(frames.map((f) => (f.data as { payload: string }).payload)).toEqual(['while down 1', 'while down 2', 'while down 3', 'live']);
    expect(frames.map((f) => f.offset)).toEqual(await offsetsAfter(cluster.sql, 'kill', since));
    await after.expectNothing(300);
    second.proc.kill('SIGTERM');
    await within(second.exited, 5000, 'the second pgws stopped');
  });

  it('PostgreSQL restarted under a running pgws: what was committed while the listener was away is replayed to a client resuming with since', async () => {
    const cluster = await ownCluster();
    await installJournal(cluster.uri);
    const srv = await startPgws(cluster.uri, { journal: true, checkListenerInterval: 200 });
    const reader = await token({ mode: 'r' });
    const live = await connectV2(`${srv.url}/`, reader);
    await live.request({ type: 'subscribe', channel: 'restart' });
    await send(cluster.sql, 'restart', 'before');
    const [seen] = await messages(live, 1);
    const since = seen?.offset as string;

    const lost = srv.waitFor('listener-lost');
    await cluster.pause();
    await within(lost, 5000, 'listener-lost');
    const ready = srv.waitFor('listener-ready');
    await cluster.start();
    // Sent as soon as the database is back: most, or all, before pgws listens again.
    const blind: string[] = [];
    for (let i = 0; i < 5; i++) {
      await eventually(async () => send(cluster.sql, 'restart', `after restart ${i}`).then(() => true, () => undefined), 10_000, 'a send after the restart');
      blind.push(`after restart ${i}`);
    }
    await within(ready, 15_000, 'listener-ready');

    const resumed = await connectV2(`${srv.url}/`, reader);
    expect(await resumed.request({ type: 'subscribe', channel: 'restart', since })).toMatchObject({ type: 'subscribed', recovered: true });
    const frames = await messages(resumed, blind.length);
    expect(frames.map((f) => (f.data as { payload: string }).payload)).toEqual(blind);
    expect(frames.map((f) => f.offset)).toEqual(await offsetsAfter(cluster.sql, 'restart', since));
    await srv.stop();
  });

  it('the client library resumes from its last offset after a reconnect: recovered true, the missed messages once, in order', async () => {
    const cluster = await ownCluster();
    await installJournal(cluster.uri);
    const port = await freePort();
    const first = await startPgws(cluster.uri, { journal: true, port });
    const client = connectClient(`ws://127.0.0.1:${port}/`, {
      WebSocket: WebSocket as unknown as NonNullable<Parameters<typeof connectClient>[1]>['WebSocket'],
      token: await token({ mode: 'r' }),
      reconnect: { initialDelayMs: 50, maxDelayMs: 250 },
    });
    track(() => client.close());
    const got: { payload: string; offset: string | undefined }[] = [];
    const resubscribed: boolean[] = [];
    client.on('resubscribed', ({ recovered }) => resubscribed.push(recovered));
    const sub = client.subscribe('resume', {
      onMessage: (data, meta) => got.push({ payload: (data as { payload: string }).payload, offset: meta.offset }),
    });
    await within(sub.ready, 5000, 'subscribed');
    await send(cluster.sql, 'resume', 'one');
    await until(() => got.length === 1, 5000, 'the first message');

    await first.stop();
    await until(() => client.state === 'reconnecting', 5000, 'reconnecting');
    for (const text of ['missed a', 'missed b']) await send(cluster.sql, 'resume', text);
    const second = await startPgws(cluster.uri, { journal: true, port });
    await until(() => resubscribed.length === 1, 10_000, 'resubscribed');
    expect(resubscribed).toEqual([true]);
    await send(cluster.sql, 'resume', 'live');
    await until(() => got.length === 4, 10_000, 'the missed and live messages');
    expect(got.map((m) => m.payload)).toEqual(['one', 'missed a', 'missed b', 'live']);
    expect(got.map((m) => m.offset)).toEqual(await offsetsAfter(cluster.sql, 'resume', '0'));
    await client.close();
    await second.stop();
  });
});
