// Fan-out of bursts (issue 11): what one event-loop tick publishes reaches every reader whole
// and in order, whatever the frame size (7-, 16- and 64-bit lengths) and however the readers'
// channels interleave. The ws transport frames each notification once and writes a tick's
// frames to each socket in one write; uws does its own batching. Runs on both transports.
import { beforeAll, describe, expect, it } from 'vitest';
import { createTransport } from '../src/transport/select.js';
import type { Transport, TransportHandlers, TransportSocket } from '../src/transport/types.js';
import { Close } from '../src/types.js';
import { connect, type TestClient } from './harness/client.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { LISTEN_CHANNEL, startPgws, TRANSPORT } from './harness/pgws.js';
import { track } from './harness/leftovers.js';
import { token } from './harness/tokens.js';
import { until } from './harness/within.js';

/** A transport with no auth: a socket on /<a>+<b>/... reads channels a and b. */
async function bareTransport(): Promise<{ transport: Transport<string[]>; port: number; opened: TransportSocket<string[]>[] }> {
  const opened: TransportSocket<string[]>[] = [];
  const handlers: TransportHandlers<string[]> = {
    upgrade: (req) => ({ accept: true, session: (req.path.split('/')[1] ?? '').split('+') }),
    open: (socket) => {
      for (const channel of socket.session) socket.subscribe(channel);
      opened.push(socket);
    },
    message: () => undefined,
    close: () => undefined,
    http: async () => ({ status: 404, headers: {}, body: 'no\n' }),
  };
  const transport = createTransport(
    TRANSPORT === 'ws' ? 'ws' : 'uws',
    { host: '127.0.0.1', port: 0, maxMessageBytes: 1000, maxBackpressureBytes: 16 * 1024 * 1024, idleTimeoutSeconds: 32 },
    handlers,
  );
  const port = await transport.listen();
  track(() => transport.shutdown(1001, 'test over'));
  return { transport, port, opened };
}

async function expectTexts(client: TestClient, texts: readonly string[]): Promise<void> {
  for (const [i, text] of texts.entries()) {
    const got = await client.next(10_000);
    if (got !== text) throw new Error(`frame ${i}: expected ${text.length} chars (${text.slice(0, 20)}...), got ${got.length} (${got.slice(0, 20)}...)`);
  }
  await client.expectNoMessage(100);
}

/** The text is PostgreSQL's (json_build_object spaces it out): compared as JSON. */
async function expectJson(client: TestClient, notes: readonly { channel: string; payload: string }[]): Promise<void> {
  for (const [i, note] of notes.entries()) {
    const got = await client.nextJson(10_000);
    if (got.channel !== note.channel || got.payload !== note.payload) {
      throw new Error(`notification ${i}: expected ${note.payload.slice(0, 12)}... on ${note.channel}, got ${String(got.payload).slice(0, 12)}... on ${String(got.channel)}`);
    }
  }
  await client.expectNoMessage(100);
}

describe('one tick of publishes', () => {
  it('reaches every reader whole and in order: 7-, 16- and 64-bit lengths, interleaved channels', async () => {
    const { transport, port, opened } = await bareTransport();
    const onA = [await connect(`ws://127.0.0.1:${port}/a/x`), await connect(`ws://127.0.0.1:${port}/a/x`)];
    const onBoth = await connect(`ws://127.0.0.1:${port}/a+b/x`);
    const onB = await connect(`ws://127.0.0.1:${port}/b/x`);
    await until(() => opened.length === 4, 2000, 'four sockets open');

    // Sizes around each length boundary of RFC 6455 §5.2; multi-byte UTF-8 in one of them.
    const sizes = [0, 1, 125, 126, 127, 200, 65_535, 65_536, 70_000, 5, 300_000, 2];
    const published: { channel: string; text: string }[] = [];
    for (const [i, size] of sizes.entries()) {
      // a, a, b, a, b, b, ...: runs of one channel and switches between them.
      const channel = i % 3 === 2 || i % 5 === 4 ? 'b' : 'a';
      const text = i === 3 ? 'é'.repeat(size / 2) : `${i}:`.padEnd(size, String.fromCharCode(97 + (i % 26))).slice(0, size);
      published.push({ channel, text });
    }
    // All in one synchronous run: one tick.
    for (const { channel, text } of published) expect(transport.publish(channel, text)).toBe(channel === 'a' ? 3 : 2);

    const on = (channel: string): string[] => published.filter((p) => p.channel === channel).map((p) => p.text);
    await Promise.all([
      ...onA.map((c) => expectTexts(c, on('a'))),
      expectTexts(onBoth, published.map((p) => p.text)),
      expectTexts(onB, on('b')),
    ]);
  });

  it('sends what the tick published to a socket before its close frame', async () => {
    const { transport, port, opened } = await bareTransport();
    const reader = await connect(`ws://127.0.0.1:${port}/c/x`);
    await until(() => opened.length === 1, 2000, 'socket open');
    const texts = ['one', 'two'.repeat(100), 'three'];
    for (const text of texts) transport.publish('c', text);
    opened[0]?.close(Close.GoingAway, 'bye');
    transport.publish('c', 'after the close');
    for (const text of texts) expect(await reader.next()).toBe(text);
    expect(await reader.closed).toEqual({ code: Close.GoingAway, reason: 'bye' });
  });
});

describe('a burst from PostgreSQL', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
  });

  it('1000 notifications in one statement reach 20 readers of one channel and a reader of two, in order', async () => {
    const srv = await startPgws(db.uri);
    const COUNT = 1000;
    const readers: TestClient[] = [];
    for (let i = 0; i < 20; i++) readers.push(await connect(`${srv.url}/burst-a/${await token({ mode: 'r' })}`));
    // No channel in the path: the socket reads every channel its token lists.
    const both = await connect(`${srv.url}/${await token({ mode: 'r', channels: ['burst-a', 'burst-b'] })}`);
    // Every third to the other channel; payloads from 1 to ~6000 bytes.
    await db.sql`
      SELECT pg_notify(${LISTEN_CHANNEL}, json_build_object(
        'channel', CASE WHEN i % 3 = 0 THEN 'burst-b' ELSE 'burst-a' END,
        'payload', i || ':' || repeat('x', (i * 37) % 6000))::text)
      FROM generate_series(1, ${COUNT}::int) AS i`;
    const expected = (i: number): { channel: string; payload: string } => ({
      channel: i % 3 === 0 ? 'burst-b' : 'burst-a',
      payload: `${i}:${'x'.repeat((i * 37) % 6000)}`,
    });
    const all = Array.from({ length: COUNT }, (_, k) => expected(k + 1));
    const onA = all.filter((n) => n.channel === 'burst-a');
    await Promise.all([...readers.map((r) => expectJson(r, onA)), expectJson(both, all)]);
  });
});
