// What only a transport decides, checked on each (this file runs once per vitest project):
// wss://, keep-alive pings, and a reader that stops reading. Both engines must behave the
// same way; where one cannot (uws TLS on a build without it) it must refuse clearly.
import https from 'node:https';
import type { Socket } from 'node:net';
import type WebSocket from 'ws';
import { beforeAll, describe, expect, it } from 'vitest';
import { TransportUnavailableError } from '../src/transport/select.js';
import { loadUws } from '../src/transport/uws-loader.js';
import { connect, handshake, type TestClient } from './harness/client.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { LISTEN_CHANNEL, startPgws, TRANSPORT } from './harness/pgws.js';
import { hasOpenssl, makeCertificate, type TestCertificate } from './harness/tls.js';
import { token } from './harness/tokens.js';
import { within } from './harness/within.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

const notify = (channel: string, payload: string): Promise<unknown> =>
  db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${JSON.stringify({ channel, payload })})`;

/** Resolves when `count` events have fired, rejects after `ms` (a deadline, not a sleep). */
function events(ws: WebSocket, event: 'ping', count: number, ms: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let seen = 0;
    const timer = setTimeout(() => reject(new Error(`${seen} of ${count} ${event} events within ${ms} ms`)), ms);
    ws.on(event, () => {
      seen += 1;
      if (seen === count) {
        clearTimeout(timer);
        resolve(seen);
      }
    });
  });
}


describe.runIf(hasOpenssl())('wss:// with a self-signed certificate', () => {
  // The Node-20 uWebSockets.js build on these machines has no TLS: there, uws must refuse.
  const tlsHere = TRANSPORT !== 'uws' || loadUws().supportsTls;
  let cert: TestCertificate;

  beforeAll(() => {
    cert = makeCertificate();
  });

  it.runIf(!tlsHere)('uws on a build without TLS refuses to start instead of serving plain ws', async () => {
    await expect(startPgws(db.uri, { certificateFile: cert.certFile, keyFile: cert.keyFile })).rejects.toThrow(
      TransportUnavailableError,
    );
  });

  describe.runIf(tlsHere)('served', () => {
    let url: string;
    let port: number;

    beforeAll(async () => {
      const srv = await startPgws(db.uri, { certificateFile: cert.certFile, keyFile: cert.keyFile });
      expect(srv.server.transport).toBe(TRANSPORT);
      url = srv.url;
      port = srv.port;
    });

    it('relays both ways over wss:// for a client that trusts the certificate', async () => {
      expect(url).toMatch(/^wss:\/\//);
      const reader = await connect(`${url}/secure/${await token({ mode: 'r' })}`, { ca: cert.pem });
      const writer = await connect(`${url}/secure/${await token({ mode: 'w' })}`, { ca: cert.pem });
      await notify('secure', 'from the database');
      expect(await reader.nextJson()).toEqual({ channel: 'secure', payload: 'from the database' });
      writer.send('from a socket');
      expect(await reader.nextJson()).toMatchObject({ event: 'WebsocketMessage', channel: 'secure', payload: 'from a socket' });
    });

    it('refuses a bad token over wss:// with the status and reason', async () => {
      const result = await handshake(`${url}/secure/not-a-token`, { ca: cert.pem });
      expect(result).toMatchObject({ ok: false, status: 401, body: expect.stringMatching(/Malformed token/) });
    });

    it('is really TLS: a client that does not trust the certificate is refused', async () => {
      await expect(handshake(`${url}/secure/${await token({ mode: 'r' })}`)).rejects.toThrow(/self.signed/i);
    });

    it('answers plain HTTPS on the same port', async () => {
      const body = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        https
          .get({ host: '127.0.0.1', port, path: '/', ca: cert.pem }, (res) => {
            let text = '';
            res.on('data', (chunk: Buffer) => (text += chunk.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
          })
          .on('error', reject);
      });
      expect(body.status).toBe(200);
      expect(body.text).toContain('pgws');
    });
  });
});

describe('keep-alive', () => {
  // uws needs a multiple of 4, at least 8: 8 s = a ping after 4 s of silence, 4 s to answer it.
  const IDLE_TIMEOUT_SECONDS = 8;

  it.concurrent('pings an idle socket, which stays open well past the idle timeout', async ({ expect }) => {
    const srv = await startPgws(db.uri, {}, { idleTimeoutSeconds: IDLE_TIMEOUT_SECONDS });
    const idle = await connect(`${srv.url}/idle/${await token({ mode: 'r' })}`);
    const started = Date.now();
    // Three pings answered: at least 12 s of silence from the client's side, longer than the timeout.
    await events(idle.ws, 'ping', 3, 25_000);
    expect(Date.now() - started).toBeGreaterThan(IDLE_TIMEOUT_SECONDS * 1000);
    expect(idle.ws.readyState).toBe(idle.ws.OPEN);
    await notify('idle', 'still here');
    expect(await idle.nextJson()).toEqual({ channel: 'idle', payload: 'still here' });
  });

  it.concurrent('cuts a socket that does not answer pings (1006, no close frame)', async ({ expect }) => {
    const srv = await startPgws(db.uri, {}, { idleTimeoutSeconds: IDLE_TIMEOUT_SECONDS });
    const mute = await connect(`${srv.url}/mute/${await token({ mode: 'r' })}`, { autoPong: false });
    const pinged = events(mute.ws, 'ping', 1, 15_000);
    const serverClosed = srv.waitForLog((l) => l.msg === 'socket closed');
    const closed = await within(mute.closed, 25_000, 'close of a socket that never answers');
    await pinged;
    expect(closed.code).toBe(1006);
    expect((await within(serverClosed, 5000, 'the server side of the close')).code).toBe(1006);
    expect(srv.server.socketCount()).toBe(0);
  });
});

describe('a reader that stops reading', () => {
  const MESSAGES = 3000;
  /** About 7 KB each, 21 MB in all: far past the 1 MiB queue limit plus what the kernel buffers. */
  const PADDING = 'x'.repeat(7000);
  const BATCH = 100;

  it('is closed with 1008 at the default limit while a fast reader on the same channel gets everything', async () => {
    const srv = await startPgws(db.uri);
    const slow = await connect(`${srv.url}/flood/${await token({ mode: 'r' })}`);
    const fast = await connect(`${srv.url}/flood/${await token({ mode: 'r' })}`);
    let slowReceived = 0;
    slow.ws.on('message', () => (slowReceived += 1));
    const tcp = (slow.ws as unknown as { _socket: Socket })._socket;
    tcp.pause();

    const serverClosed = srv.waitForLog((l) => l.msg === 'slow reader; closing it');
    // In batches, as many writers would send them: the fast reader shares this process's event
    // loop with the server, and one 21 MB burst would leave it no turn to read (either engine
    // then cuts it too, which is right for a reader that cannot keep up).
    for (let first = 1; first <= MESSAGES; first += BATCH) {
      await db.sql`
        SELECT pg_notify(${LISTEN_CHANNEL}, json_build_object('channel', 'flood', 'payload', i || ${PADDING})::text)
        FROM generate_series(${first}::int, ${first + BATCH - 1}::int) AS i`;
    }

    await within(serverClosed, 20_000, 'the server closing the slow reader');

    await expectAll(fast, MESSAGES);

    // Its close frame waits behind what it has not read: it arrives once the reader reads again.
    tcp.resume();
    const closed = await within(slow.closed, 10_000, 'the slow reader seeing its close');
    expect(closed.code).toBe(1008);
    expect(closed.reason).toMatch(/^Slow reader: \d+ bytes waiting, the limit is 1048576$/);
    expect(slowReceived).toBeGreaterThan(0);
    expect(slowReceived).toBeLessThan(MESSAGES);
  });

  async function expectAll(client: TestClient, count: number): Promise<void> {
    for (let i = 1; i <= count; i++) {
      const { payload } = (await client.nextJson(10_000)) as { payload: string };
      if (!payload.startsWith(`${i}x`)) throw new Error(`message ${i} out of order: ${payload.slice(0, 12)}...`);
    }
  }
});
