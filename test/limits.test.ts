// Limits on readers and input (issue 4, items 5-6): slow readers, frame size,
// connection count, handshake timeout, per-socket message rate.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { createTransport } from '../src/transport/select.js';
import { createUwsTransport } from '../src/transport/uws.js';
import type { TransportHandlers } from '../src/transport/types.js';
import { connect, handshake } from './harness/client.js';
import { createTestDatabase } from './harness/db.js';
import { watchChannel } from './harness/db-watch.js';
import { LISTEN_CHANNEL, startPgws, TRANSPORT } from './harness/pgws.js';
import { track } from './harness/leftovers.js';
import { token } from './harness/tokens.js';
import { until, within } from './harness/within.js';

describe('slow readers', () => {
  it('closes a reader that stops reading with 1008 and a reason; a fast reader on the same channel gets everything', async () => {
    const db = await createTestDatabase();
    const LIMIT = 64 * 1024;
    const srv = await startPgws(db.uri, { maxBackpressure: LIMIT, logLevel: 'info' });
    const slow = await connect(`${srv.url}/firehose/${await token({ mode: 'r' })}`);
    slow.ws.pause(); // stops reading its TCP socket: the server's buffer for it grows
    const fast = await connect(`${srv.url}/firehose/${await token({ mode: 'r' })}`);
    const COUNT = 2000;
    // ~8 MB, more than loopback kernel buffers hold for a socket that never read.
    for (let start = 0; start < COUNT; start += 500) {
      await db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, json_build_object('channel', 'firehose', 'payload', repeat('x', 4000) || i)::text)
        FROM generate_series(${start}::int, ${start + 499}::int) AS i`;
    }
    for (let i = 0; i < COUNT; i++) {
      const got = JSON.parse(await fast.next(10_000)) as { payload: string };
      expect(got.payload.endsWith(String(i))).toBe(true);
    }
    await until(() => srv.server.metrics.snapshot().slowReadersClosed >= 1, 2000, 'slow reader closed');
    expect(fast.ws.readyState).toBe(fast.ws.OPEN);
    slow.ws.resume();
    const closed = await within(slow.closed, 10_000, 'slow reader close frame');
    expect(closed.code).toBe(1008);
    expect(closed.reason).toMatch(/^Slow reader: \d+ bytes waiting, the limit is 65536$/);
    expect(srv.server.metrics.snapshot().slowReadersClosed).toBe(1);
  });
});

describe('input limits', () => {
  it('PGWS_MAX_MESSAGE_SIZE: a frame over it closes with 1009; one at it is relayed', async () => {
    const db = await createTestDatabase();
    const srv = await startPgws(db.uri, { maxMessageSize: 100 });
    const ok = await connect(`${srv.url}/size/${await token({ mode: 'rw' })}`);
    ok.send('a'.repeat(100));
    expect(await ok.nextJson()).toMatchObject({ payload: 'a'.repeat(100) });
    const big = await connect(`${srv.url}/size/${await token({ mode: 'w' })}`);
    big.send('b'.repeat(101));
    expect(await big.closed).toEqual({ code: 1009, reason: 'Message too big: 101 bytes, the limit is 100' });
    await ok.expectNoMessage(200);
  });

  it('PGWS_MAX_CONNECTIONS: over it, upgrades get 503 and open sockets keep working', async () => {
    const db = await createTestDatabase();
    const srv = await startPgws(db.uri, { maxConnections: 3 });
    const jwt = await token({ mode: 'rw' });
    const open = [await connect(`${srv.url}/full/${jwt}`), await connect(`${srv.url}/full/${jwt}`), await connect(`${srv.url}/full/${jwt}`)];
    const refused = await handshake(`${srv.url}/full/${jwt}`);
    expect(refused).toEqual({ ok: false, status: 503, body: 'Too many connections\n' });
    expect(srv.server.metrics.snapshot().connectionsRefused).toBe(1);
    open[0]?.send('still served');
    for (const c of open) expect(await c.nextJson()).toMatchObject({ payload: 'still served' });
    await open[0]?.close();
    await until(() => srv.server.socketCount() === 2, 2000, 'socket count back to 2');
    const again = await connect(`${srv.url}/full/${jwt}`);
    again.send('room again');
    expect(await again.nextJson()).toMatchObject({ payload: 'room again' });
  });

  it('PGWS_MAX_MESSAGES_PER_SECOND: a socket over it is closed with 1008; the frames before it are delivered', async () => {
    const db = await createTestDatabase();
    const srv = await startPgws(db.uri, { maxMessagesPerSecond: 5 });
    const watch = await watchChannel(db.sql, LISTEN_CHANNEL);
    const abuser = await connect(`${srv.url}/rate/${await token({ mode: 'w' })}`);
    for (let i = 0; i < 20; i++) abuser.send(`m${i}`);
    expect(await abuser.closed).toEqual({ code: 1008, reason: 'Rate limit: more than 5 messages per second' });
    const got: string[] = [];
    for (let i = 0; i < 5; i++) got.push((JSON.parse(await watch.next()) as { payload: string }).payload);
    expect(got).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    await expect(watch.next(300)).rejects.toThrow();
    expect(srv.server.metrics.snapshot().rateLimited).toBe(1);
  });

  it('PGWS_MAX_MESSAGES_PER_SECOND: a socket at the rate keeps being served', async () => {
    const db = await createTestDatabase();
    const srv = await startPgws(db.uri, { maxMessagesPerSecond: 20 });
    const polite = await connect(`${srv.url}/polite/${await token({ mode: 'rw' })}`);
    for (let i = 0; i < 30; i++) {
      polite.send(`p${i}`);
      expect(await polite.nextJson()).toMatchObject({ payload: `p${i}` });
      await new Promise((resolve) => setTimeout(resolve, 60)); // pacing below 20/s, not a wait
    }
  });
});

describe('handshakes that do not finish', () => {
  /** A transport whose upgrade decisions never come: only the timeout can answer. */
  async function stuckTransport(options: { handshakeTimeoutMs: number; maxConnections: number }) {
    const refused: string[] = [];
    const handlers: TransportHandlers<null> = {
      upgrade: () => new Promise(() => undefined),
      open: () => undefined,
      message: () => undefined,
      close: () => undefined,
      http: async () => ({ status: 200, headers: {}, body: 'ok' }),
      refused: (why) => void refused.push(why),
    };
    const transport = createUwsTransport(
      { host: '127.0.0.1', port: 0, maxMessageBytes: 1000, maxBackpressureBytes: 65536, idleTimeoutSeconds: 32, ...options },
      handlers,
    );
    const port = await transport.listen();
    track(() => transport.shutdown(1001, 'test over'));
    return { port, refused };
  }

  it('PGWS_HANDSHAKE_TIMEOUT: an upgrade not decided in time gets 503, and its slot is freed', async () => {
    const { port, refused } = await stuckTransport({ handshakeTimeoutMs: 200, maxConnections: 1 });
    const first = await within(handshake(`ws://127.0.0.1:${port}/a/b`), 3000, 'first answer');
    expect(first).toEqual({ ok: false, status: 503, body: 'Handshake timed out\n' });
    // With maxConnections 1, a second upgrade would get "Too many connections" had the slot leaked.
    const second = await within(handshake(`ws://127.0.0.1:${port}/a/b`), 3000, 'second answer');
    expect(second).toEqual({ ok: false, status: 503, body: 'Handshake timed out\n' });
    expect(refused).toEqual(['handshake-timeout', 'handshake-timeout']);
  });

  it('a request that never completes is dropped by the engine (its own HTTP timeout, about 10 s)', async () => {
    const { port } = await stuckTransport({ handshakeTimeoutMs: 200, maxConnections: 1 });
    const socket = net.connect(port, '127.0.0.1');
    track(() => socket.destroy());
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.write('GET /chat/token HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n'); // headers never end
    const started = Date.now();
    await within(new Promise<void>((resolve) => socket.once('close', () => resolve())), 20_000, 'half-open socket closed');
    expect(Date.now() - started).toBeLessThan(15_000);
  }, 25_000);
});

describe('an upgrade handler that fails', () => {
  it('gets 500 "Internal error" whether it throws at once or rejects later, and the server keeps serving', async () => {
    const decided: string[] = [];
    // Breaks the handler contract on purpose: the transport must not die of it.
    const handlers: TransportHandlers<null> = {
      upgrade: (req) => {
        decided.push(req.path);
        if (req.path.endsWith('/at-once')) throw new Error('thrown inside the upgrade callback');
        return Promise.reject(new Error('rejected later'));
      },
      open: () => undefined,
      message: () => undefined,
      close: () => undefined,
      http: async () => ({ status: 200, headers: {}, body: 'ok' }),
    };
    const transport = createTransport(
      TRANSPORT === 'ws' ? 'ws' : 'uws',
      { host: '127.0.0.1', port: 0, maxMessageBytes: 1000, maxBackpressureBytes: 65536, idleTimeoutSeconds: 32, maxConnections: 10, handshakeTimeoutMs: 5000 },
      handlers,
    );
    const port = await transport.listen();
    track(() => transport.shutdown(1001, 'test over'));
    const internalError = { ok: false, status: 500, body: 'Internal error\n' };
    expect(await within(handshake(`ws://127.0.0.1:${port}/c/at-once`), 3000, 'answer to a throw')).toEqual(internalError);
    expect(await within(handshake(`ws://127.0.0.1:${port}/c/later`), 3000, 'answer to a rejection')).toEqual(internalError);
    expect(await within(handshake(`ws://127.0.0.1:${port}/c/at-once`), 3000, 'answer after both')).toEqual(internalError);
    expect(decided).toEqual(['/c/at-once', '/c/later', '/c/at-once']);
  });
});
