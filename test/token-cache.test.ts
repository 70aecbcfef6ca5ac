// The cache of verified tokens end to end: a client that reconnects with the RS256 token it
// already had (a network blip) gets its socket back and its messages flow; a tampered
// token is refused even right after the real one was verified. Real pgws, real PostgreSQL.
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { connect, handshake } from './harness/client.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { LISTEN_CHANNEL, startPgws, type TestServer } from './harness/pgws.js';

let db: TestDatabase;
let srv: TestServer;
let privateKey: CryptoKey;
let otherKey: CryptoKey;

beforeAll(async () => {
  const pair = await generateKeyPair('RS256');
  privateKey = pair.privateKey;
  otherKey = (await generateKeyPair('RS256')).privateKey;
  db = await createTestDatabase();
  srv = await startPgws(db.uri, { jwtSecret: JSON.stringify(await exportJWK(pair.publicKey)) });
});

const sign = (claims: Record<string, unknown>, key: CryptoKey = privateKey): Promise<string> =>
  new SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: 'JWT' }).setExpirationTime('5m').sign(key);

async function roundTrip(url: string, text: string): Promise<void> {
  const client = await connect(url);
  const message = JSON.stringify({ channel: 'chat', payload: text });
  await db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${message})`;
  expect(await client.next()).toBe(message);
  await client.close();
}

describe('reconnecting with a token pgws already verified', () => {
  it('opens the socket again, as often as the client comes back', async () => {
    const url = `${srv.url}/chat/${await sign({ mode: 'r', channel: 'chat' })}`;
    for (let attempt = 0; attempt < 3; attempt++) await roundTrip(url, `attempt ${attempt}`);
  });

  it('refuses a tampered copy of a token it has just accepted', async () => {
    const token = await sign({ mode: 'r', channel: 'chat' });
    await roundTrip(`${srv.url}/chat/${token}`, 'the real one');
    const widened = await sign({ mode: 'rw', channels: ['chat', 'admin'] }, otherKey);
    const [header, payload] = widened.split('.') as [string, string];
    // A wider payload under the real token's signature.
    const tampered = `${header}.${payload}.${token.slice(token.lastIndexOf('.') + 1)}`;
    for (const url of [`${srv.url}/chat/${tampered}`, `${srv.url}/admin/${tampered}`, `${srv.url}/chat/${widened}`]) {
      const result = await handshake(url);
      expect(result).toMatchObject({ ok: false, status: 401 });
      if (!result.ok) expect(result.body).toContain('Invalid token signature');
    }
    // And the real token still works afterwards.
    await roundTrip(`${srv.url}/chat/${token}`, 'still the real one');
  });

  it('still applies the channel rules to a cached token', async () => {
    const token = await sign({ mode: 'r', channel: 'chat' });
    await roundTrip(`${srv.url}/chat/${token}`, 'first');
    const result = await handshake(`${srv.url}/admin/${token}`);
    expect(result).toMatchObject({ ok: false, status: 403 });
  });
});
