// A JWK Set in PGWS_JWT_SECRET that holds symmetric (oct) keys beside an RSA key, end to
// end: postgres-websockets accepts such a set and picks the key by kid, so pgws must too
// (PROTOCOL.md §8, "Keys from a URL"). Real pgws, real PostgreSQL, real WebSocket clients.
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { connect, handshake } from './harness/client.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { LISTEN_CHANNEL, startPgws, type TestServer } from './harness/pgws.js';

const OCT_A = new TextEncoder().encode('first-oct-secret-that-is-long-enough');
const OCT_B = new TextEncoder().encode('second-oct-secret-that-is-long-enough');

let db: TestDatabase;
let srv: TestServer;
let rsaPrivate: CryptoKey;
let rsaPublicJwk: JWK;

beforeAll(async () => {
  const pair = await generateKeyPair('RS256');
  rsaPrivate = pair.privateKey;
  rsaPublicJwk = { ...(await exportJWK(pair.publicKey)), kid: 'rsa' };
  const set = {
    keys: [
      { kty: 'oct', kid: 'a', k: Buffer.from(OCT_A).toString('base64url') },
      rsaPublicJwk,
      { kty: 'oct', kid: 'b', alg: 'HS512', k: Buffer.from(OCT_B).toString('base64url') },
    ],
  };
  db = await createTestDatabase();
  srv = await startPgws(db.uri, { jwtSecret: JSON.stringify(set) });
});

async function sign(alg: string, key: CryptoKey | Uint8Array, kid?: string): Promise<string> {
  const header = { alg, typ: 'JWT', ...(kid === undefined ? {} : { kid }) };
  return new SignJWT({ mode: 'r', channel: 'chat' }).setProtectedHeader(header).setExpirationTime('5m').sign(key);
}

describe('JWK Set with oct keys (PGWS_JWT_SECRET)', () => {
  it.each<[string, () => Promise<string>]>([
    ['HS256 naming the first oct key', () => sign('HS256', OCT_A, 'a')],
    ['HS512 naming the second oct key', () => sign('HS512', OCT_B, 'b')],
    ['HS256 without a kid', () => sign('HS256', OCT_A)],
    ['RS256 naming the RSA key', () => sign('RS256', rsaPrivate, 'rsa')],
  ])('opens a socket for %s, which then receives notifications', async (_name, mint) => {
    const client = await connect(`${srv.url}/chat/${await mint()}`);
    const message = JSON.stringify({ channel: 'chat', payload: 'hello' });
    await db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${message})`;
    expect(await client.next()).toBe(message);
    await client.close();
  });

  it.each<[string, () => Promise<string>, string]>([
    ["a kid of no key", () => sign('HS256', OCT_A, 'zzz'), "No key matches the token's kid"],
    ["the other oct key's kid", () => sign('HS256', OCT_B, 'a'), 'Invalid token signature'],
    [
      "HS256 signed with the RSA public key's JWK bytes, naming it (algorithm confusion)",
      () => sign('HS256', new TextEncoder().encode(JSON.stringify(rsaPublicJwk)), 'rsa'),
      "No key matches the token's kid",
    ],
  ])('refuses %s with 401', async (_name, mint, reason) => {
    const result = await handshake(`${srv.url}/chat/${await mint()}`);
    expect(result).toMatchObject({ ok: false, status: 401 });
    if (!result.ok) expect(result.body).toContain(reason);
  });
});
