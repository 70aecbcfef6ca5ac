// Access (PROTOCOL.md §8) end to end, on both transports: real pgws, real PostgreSQL, real
// WebSocket clients. Token sources and their conflicts, the selected subprotocol, origins,
// keys from a JWK Set URL (a local HTTP server), audience and issuer, claims shaped like
// identity providers', echo control, and log scans for every token of the file.
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handshake, type TestClient } from './harness/client.js';
import { cleanEnv, logMsg, runPgws } from './harness/child.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { track } from './harness/leftovers.js';
import { LISTEN_CHANNEL, startPgws, type TestServer } from './harness/pgws.js';
import { token } from './harness/tokens.js';
import { within } from './harness/within.js';

let db: TestDatabase;
/** Every token this file sends, by any source: none may appear in any server's log. */
const sentTokens = new Set<string>();
const servers: TestServer[] = [];

async function server(overrides: Parameters<typeof startPgws>[1] = {}): Promise<TestServer> {
  const srv = await startPgws(db.uri, overrides);
  servers.push(srv);
  return srv;
}

async function jwt(claims: JWTPayload): Promise<string> {
  const text = await token(claims);
  sentTokens.add(text);
  return text;
}

/** A notification for `channel`, sent the way database code does; returns its text. */
async function notify(channel: string, payload: string): Promise<string> {
  const text = JSON.stringify({ channel, payload });
  await db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${text})`;
  return text;
}

/** The socket is open on `channel`: a notification sent now reaches it. */
async function expectReceives(client: TestClient, channel: string): Promise<void> {
  const text = await notify(channel, `to ${channel} ${Math.random()}`);
  expect(await client.next()).toBe(text);
}

/** Opens a socket (offering `protocols`) and returns it with the subprotocol the server's 101 selected ('' for none). */
async function open(url: string, options: WebSocket.ClientOptions = {}, protocols: string[] = []): Promise<{ client: TestClient; selected: string }> {
  const result = await handshake(url, options, protocols);
  if (!result.ok) throw new Error(`handshake rejected: ${result.status} ${result.body.trim()}`);
  return { client: result.client, selected: result.client.ws.protocol };
}

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(() => {
  // The log scan: at debug level, for every server of the file, after every test ran.
  const all = servers.map((srv) => srv.rawLogs.join('\n')).join('\n');
  expect(all.length).toBeGreaterThan(0);
  for (const text of sentTokens) expect(all, 'a token reached a log line').not.toContain(text);
});

describe('token sources', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await server({ jwtCookie: 'pgws_token', allowedOrigins: ['https://app.example.com'] });
  });

  it('path, as in postgres-websockets', async () => {
    const { client } = await open(`${srv.url}/chat/${await jwt({ mode: 'r' })}`);
    await expectReceives(client, 'chat');
  });

  it('subprotocol pgws.bearer.<jwt> beside pgws.v1: the server selects pgws.v1 and never echoes the bearer', async () => {
    const bearer = await jwt({ mode: 'r' });
    // ws (the client) checks that the 101 selects one of the offered entries: this checks which.
    const { client, selected } = await open(`${srv.url}/chat`, {}, [`pgws.bearer.${bearer}`, 'pgws.v1']);
    expect(selected).toBe('pgws.v1');
    await expectReceives(client, 'chat');
  });

  it('Authorization: Bearer', async () => {
    const { client } = await open(`${srv.url}/chat`, { headers: { Authorization: `Bearer ${await jwt({ mode: 'r' })}` } });
    await expectReceives(client, 'chat');
  });

  it('the cookie named by PGWS_JWT_COOKIE', async () => {
    const { client } = await open(`${srv.url}/chat`, { headers: { Cookie: `theme=dark; pgws_token=${await jwt({ mode: 'r' })}` } });
    await expectReceives(client, 'chat');
  });

  it('?access_token=', async () => {
    const { client } = await open(`${srv.url}/chat?access_token=${await jwt({ mode: 'r' })}`);
    await expectReceives(client, 'chat');
  });

  it('with the token elsewhere, / opens every channel the token lists', async () => {
    const { client } = await open(`${srv.url}/`, { headers: { Authorization: `Bearer ${await jwt({ mode: 'r', channels: ['a', 'b'] })}` } });
    await expectReceives(client, 'a');
    await expectReceives(client, 'b');
  });

  it('with the token elsewhere, /<channel> is still checked against the token\'s channels (403)', async () => {
    const result = await handshake(`${srv.url}/other`, { headers: { Authorization: `Bearer ${await jwt({ mode: 'r', channel: 'chat' })}` } });
    expect(result).toMatchObject({ ok: false, status: 403, body: 'No allowed channels\n' });
  });

  it('a token from a header is checked like one in the path (401 with the reason)', async () => {
    const expired = await jwt({ mode: 'r', exp: Math.floor(Date.now() / 1000) - 10 });
    const result = await handshake(`${srv.url}/chat`, { headers: { Authorization: `Bearer ${expired}` } });
    expect(result).toMatchObject({ ok: false, status: 401, body: 'Token expired\n' });
  });

  it('a client offering its own subprotocol (no pgws one) still gets it selected, as before', async () => {
    const { selected } = await open(`${srv.url}/chat/${await jwt({ mode: 'r' })}`, {}, ['chat-app']);
    expect(selected).toBe('chat-app');
  });

  type Conflict = [label: string, build: (a: string, b: string) => { path: string; protocols?: string[]; headers?: Record<string, string> }];
  const conflicts: Conflict[] = [
    ['path and Authorization', (a, b) => ({ path: `/chat/${a}`, headers: { Authorization: `Bearer ${b}` } })],
    ['path and ?access_token=', (a, b) => ({ path: `/chat/${a}?access_token=${b}` })],
    ['path and the bearer subprotocol', (a, b) => ({ path: `/chat/${a}`, protocols: [`pgws.bearer.${b}`, 'pgws.v1'] })],
    ['path and the cookie', (a, b) => ({ path: `/chat/${a}`, headers: { Cookie: `pgws_token=${b}` } })],
    ['Authorization and the cookie', (a, b) => ({ path: '/chat', headers: { Authorization: `Bearer ${a}`, Cookie: `pgws_token=${b}` } })],
    ['the bearer subprotocol and ?access_token=', (a, b) => ({ path: `/chat?access_token=${b}`, protocols: [`pgws.bearer.${a}`, 'pgws.v1'] })],
  ];
  it.each(conflicts)('refuses %s with 400 "More than one token", nothing opened, nothing logged of either token', async (_label, build) => {
    const [a, b] = [await jwt({ mode: 'r', n: 1 }), await jwt({ mode: 'r', n: 2 })];
    const { path, protocols, headers } = build(a, b);
    const openBefore = srv.server.socketCount();
    const result = await handshake(`${srv.url}${path}`, headers === undefined ? {} : { headers }, protocols ?? []);
    expect(result).toMatchObject({ ok: false, status: 400, body: 'More than one token\n' });
    expect(srv.server.socketCount()).toBe(openBefore);
    const line = await within(srv.waitForLog((l) => l.msg === 'handshake rejected' && l.reason === 'More than one token'), 5000, 'rejection log line');
    expect(JSON.stringify(line)).not.toContain(a);
  });

  it('refuses a bearer subprotocol offered without pgws.v1 (400)', async () => {
    const result = await handshake(`${srv.url}/chat`, {}, [`pgws.bearer.${await jwt({ mode: 'r' })}`]);
    expect(result).toMatchObject({ ok: false, status: 400 });
    if (!result.ok) expect(result.body).toMatch(/needs pgws\.v1 or pgws\.v2/);
  });

  it('refuses a malformed subprotocol list with the same 400 on both transports (ws would refuse it only after the decision)', async () => {
    const path = `/chat/${await jwt({ mode: 'r' })}`;
    const raw = await rawUpgrade(srv.port, path, 'pgws.v1, pgws.v1');
    expect(raw).toMatch(/^HTTP\/1\.1 400 /);
    expect(raw).toContain('Bad request: malformed Sec-WebSocket-Protocol header');
  });

  it('refuses a pgws.v2 upgrade whose path names a channel with 400 (v2 names channels in its requests)', async () => {
    const token = await jwt({ mode: 'r' });
    for (const [path, protocols] of [
      [`/chat/${token}`, ['pgws.v2']],
      ['/chat', ['pgws.v2', `pgws.bearer.${token}`]],
    ] as const) {
      const result = await handshake(`${srv.url}${path}`, {}, protocols);
      expect(result).toMatchObject({ ok: false, status: 400 });
      if (!result.ok) expect(result.body).toContain('a pgws.v2 socket opens on /');
    }
  });
});

describe('origins', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await server({ allowedOrigins: ['https://app.example.com', 'https://*.example.org', 'http://localhost:8080'] });
  });

  it.each(['https://app.example.com', 'https://eu.example.org', 'http://localhost:8080'])('accepts a browser upgrade from %s', async (origin) => {
    const { client } = await open(`${srv.url}/chat/${await jwt({ mode: 'r' })}`, { origin });
    await expectReceives(client, 'chat');
  });

  it('accepts a request without Origin (not a browser)', async () => {
    const { client } = await open(`${srv.url}/chat/${await jwt({ mode: 'r' })}`);
    await expectReceives(client, 'chat');
  });

  it.each(['https://evil.example', 'http://app.example.com', 'https://app.example.com:8443', 'https://example.org', 'null'])(
    'refuses %s with 403 "Origin not allowed", before looking at the token',
    async (origin) => {
      const result = await handshake(`${srv.url}/chat/${await jwt({ mode: 'r' })}`, { origin });
      expect(result).toMatchObject({ ok: false, status: 403, body: 'Origin not allowed\n' });
      // Even a bad token gets the origin's answer: another site learns nothing about tokens.
      expect(await handshake(`${srv.url}/chat/not-a-token`, { origin })).toMatchObject({ ok: false, status: 403 });
    },
  );
});

describe('claims: audience, issuer, identity-provider shapes', () => {
  it('refuses a wrong or missing audience with 401 "Token audience not allowed", accepts one of the list (string or array)', async () => {
    const srv = await server({ jwtAudience: ['api', 'realtime'] });
    expect(await handshake(`${srv.url}/chat/${await jwt({ mode: 'r', aud: 'other' })}`)).toMatchObject({ status: 401, body: 'Token audience not allowed\n' });
    expect(await handshake(`${srv.url}/chat/${await jwt({ mode: 'r' })}`)).toMatchObject({ status: 401, body: 'Token audience not allowed\n' });
    await open(`${srv.url}/chat/${await jwt({ mode: 'r', aud: 'realtime' })}`);
    await open(`${srv.url}/chat/${await jwt({ mode: 'r', aud: ['x', 'api'] })}`);
  });

  it('refuses a wrong or missing issuer with 401 "Token issuer not allowed"', async () => {
    const srv = await server({ jwtIssuer: ['https://idp.example.com/'] });
    expect(await handshake(`${srv.url}/chat/${await jwt({ mode: 'r', iss: 'https://evil.example/' })}`)).toMatchObject({
      status: 401,
      body: 'Token issuer not allowed\n',
    });
    expect(await handshake(`${srv.url}/chat/${await jwt({ mode: 'r' })}`)).toMatchObject({ status: 401, body: 'Token issuer not allowed\n' });
    await open(`${srv.url}/chat/${await jwt({ mode: 'r', iss: 'https://idp.example.com/' })}`);
  });

  // The README's configurations, with tokens shaped as each provider issues them.
  it('Supabase: mode and channels in app_metadata, aud "authenticated"', async () => {
    const srv = await server({
      modeClaim: 'app_metadata.pgws.mode',
      channelsClaim: 'app_metadata.pgws.channels',
      jwtAudience: ['authenticated'],
      jwtIssuer: ['https://abcd.supabase.co/auth/v1'],
    });
    const supabase = await jwt({
      iss: 'https://abcd.supabase.co/auth/v1',
      sub: '2f1e5c3a-1111-4e5e-9d7a-000000000001',
      aud: 'authenticated',
      role: 'authenticated',
      email: 'ada@example.com',
      app_metadata: { provider: 'email', pgws: { mode: 'rw', channels: ['room:1', 'room:2'] } },
      user_metadata: {},
    });
    const { client } = await open(`${srv.url}/`, { headers: { Authorization: `Bearer ${supabase}` } });
    await expectReceives(client, 'room:1');
    await expectReceives(client, 'room:2');
    // The envelope still carries the whole payload as claims.
    const watcher = await open(`${srv.url}/room:1/${supabase}`);
    watcher.client.send('hi');
    const envelope = JSON.parse(await watcher.client.next()) as { claims: Record<string, unknown> };
    expect(envelope.claims).toMatchObject({ sub: '2f1e5c3a-1111-4e5e-9d7a-000000000001', app_metadata: { pgws: { mode: 'rw' } } });
  });

  it('Auth0: URL-namespaced custom claims (read as one claim name), PGWS_DEFAULT_MODE for users without a mode', async () => {
    const srv = await server({
      modeClaim: 'https://pgws.example.com/mode',
      channelsClaim: 'https://pgws.example.com/channels',
      defaultMode: 'r',
      jwtAudience: ['https://api.example.com'],
      jwtIssuer: ['https://example.eu.auth0.com/'],
    });
    const writer = await jwt({
      iss: 'https://example.eu.auth0.com/',
      sub: 'auth0|64f0',
      aud: ['https://api.example.com', 'https://example.eu.auth0.com/userinfo'],
      'https://pgws.example.com/mode': 'rw',
      'https://pgws.example.com/channels': ['orders'],
    });
    const { client } = await open(`${srv.url}/`, { headers: { Authorization: `Bearer ${writer}` } });
    client.send('from auth0 user');
    expect(JSON.parse(await client.next())).toMatchObject({ event: 'WebsocketMessage', channel: 'orders', payload: 'from auth0 user' });
    const reader = await jwt({ iss: 'https://example.eu.auth0.com/', sub: 'auth0|64f1', aud: 'https://api.example.com', 'https://pgws.example.com/channels': ['orders'] });
    const { client: readerSocket } = await open(`${srv.url}/orders`, { headers: { Authorization: `Bearer ${reader}` } });
    await expectReceives(readerSocket, 'orders');
    // Mode r by default: its frames are not relayed (PROTOCOL.md §3), so it sees nothing of its own.
    readerSocket.send('ignored');
    await readerSocket.expectNoMessage(300);
  });

  it('Keycloak: a mode in a custom attribute claim, channels from a mapper, azp-style audience', async () => {
    const srv = await server({
      modeClaim: 'pgws.mode',
      channelsClaim: 'pgws.channels',
      jwtAudience: ['pgws'],
      jwtIssuer: ['https://sso.example.com/realms/demo'],
    });
    const keycloak = await jwt({
      iss: 'https://sso.example.com/realms/demo',
      aud: ['pgws', 'account'],
      azp: 'web',
      preferred_username: 'ada',
      realm_access: { roles: ['default-roles-demo'] },
      pgws: { mode: 'r', channels: ['alerts'] },
    });
    const { client } = await open(`${srv.url}/?access_token=${keycloak}`);
    await expectReceives(client, 'alerts');
  });

  it.each<[string, JWTPayload]>([
    ['an invalid mode at the mapped path', { app: { mode: 'admin' } }],
    ['a mode of the wrong type', { app: { mode: ['rw'] } }],
    ['a null mode', { app: { mode: null } }],
  ])('refuses %s even with PGWS_DEFAULT_MODE (401 Invalid mode)', async (_label, claims) => {
    const srv = await server({ modeClaim: 'app.mode', defaultMode: 'rw' });
    expect(await handshake(`${srv.url}/chat/${await jwt(claims)}`)).toMatchObject({ status: 401, body: 'Invalid mode: expected "r", "w" or "rw"\n' });
  });

  it('reads only the mapped path: a top-level mode does not count when PGWS_MODE_CLAIM points elsewhere', async () => {
    const srv = await server({ modeClaim: 'app.mode' });
    expect(await handshake(`${srv.url}/chat/${await jwt({ mode: 'rw' })}`)).toMatchObject({ status: 401, body: 'Missing mode\n' });
  });
});

describe('echo control', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await server();
  });

  it('a socket with ?echo=false does not get what its own frames caused, but does get another socket\'s identical text', async () => {
    const shared = await jwt({ mode: 'rw', channel: 'echo' });
    const { client: quiet } = await open(`${srv.url}/echo/${shared}?echo=false`);
    const { client: loud } = await open(`${srv.url}/echo/${shared}`);
    quiet.send('same text');
    // The loud socket gets the quiet one's envelope (and so that frame certainly went round).
    const quietEnvelope = await loud.next();
    expect(JSON.parse(quietEnvelope)).toMatchObject({ payload: 'same text' });
    loud.send('same text');
    const loudEnvelope = await loud.next();
    expect(loudEnvelope).not.toBe(quietEnvelope);
    // The quiet socket's first message is the loud socket's envelope, never its own...
    expect(await quiet.next()).toBe(loudEnvelope);
    // ...and then the SQL notification: nothing else came in between.
    const notification = await notify('echo', 'from SQL');
    expect(await quiet.next()).toBe(notification);
  });

  it('a socket with echo on gets each of its own frames back, also equal frames sent in one burst', async () => {
    // Equal frames, each with its own stamp: none is taken for another (echo on), none lost.
    const { client } = await open(`${srv.url}/burst/${await jwt({ mode: 'rw' })}`);
    for (let i = 0; i < 50; i += 1) client.send('same');
    for (let i = 0; i < 50; i += 1) expect(JSON.parse(await client.next())).toMatchObject({ payload: 'same' });
    await client.expectNoMessage(200);
  });

  it('refuses ?echo= with another value (400)', async () => {
    expect(await handshake(`${srv.url}/echo/${await jwt({ mode: 'rw' })}?echo=maybe`)).toMatchObject({ ok: false, status: 400 });
  });
});

describe('keys from a JWK Set URL', () => {
  interface Provider {
    readonly url: string;
    keys: JWK[];
    up: boolean;
    requests: number;
    close(): Promise<void>;
  }

  async function provider(keys: JWK[]): Promise<Provider> {
    const state = { keys, up: true, requests: 0 };
    const srv = http.createServer((_req, res) => {
      state.requests += 1;
      if (!state.up) {
        res.writeHead(503).end('down');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: state.keys }));
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const close = (): Promise<void> => new Promise((resolve) => srv.close(() => resolve()));
    track(close);
    const { port } = srv.address() as AddressInfo;
    return Object.assign(state, { url: `http://127.0.0.1:${port}/.well-known/jwks.json`, close });
  }

  async function keyPair(alg: 'RS256' | 'ES256', kid: string): Promise<{ privateKey: CryptoKey; jwk: JWK; sign: (claims: JWTPayload) => Promise<string> }> {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
    const sign = async (claims: JWTPayload): Promise<string> => {
      const text = await new SignJWT(claims).setProtectedHeader({ alg, kid, typ: 'JWT' }).sign(privateKey);
      sentTokens.add(text);
      return text;
    };
    return { privateKey, jwk, sign };
  }

  it('accepts RS256 and ES256 tokens, follows a rotation to a new kid without a restart, and keeps the cached keys while the URL is down', async () => {
    const rsa = await keyPair('RS256', 'rsa-1');
    const ec = await keyPair('ES256', 'ec-1');
    const idp = await provider([rsa.jwk, ec.jwk]);
    const srv = await server({ jwtSecret: undefined, jwksUrl: idp.url });

    await expectReceives((await open(`${srv.url}/chat/${await rsa.sign({ mode: 'r' })}`)).client, 'chat');
    await expectReceives((await open(`${srv.url}/chat`, { headers: { Authorization: `Bearer ${await ec.sign({ mode: 'r' })}` } })).client, 'chat');

    // Rotation: the provider publishes a new key; a token with its kid is accepted at once.
    const next = await keyPair('ES256', 'ec-2');
    idp.keys = [next.jwk, rsa.jwk];
    await expectReceives((await open(`${srv.url}/chat/${await next.sign({ mode: 'r' })}`)).client, 'chat');

    // The provider goes down: keys already fetched keep working.
    idp.up = false;
    await expectReceives((await open(`${srv.url}/chat/${await rsa.sign({ mode: 'r', n: 2 })}`)).client, 'chat');
    // A kid nobody published is refused, and does not take the server down.
    const stranger = await keyPair('RS256', 'unknown');
    expect(await handshake(`${srv.url}/chat/${await stranger.sign({ mode: 'r' })}`)).toMatchObject({ ok: false, status: 401 });
  });

  it('with PGWS_JWT_SECRET too: tokens without a kid use the secret', async () => {
    const rsa = await keyPair('RS256', 'rsa-1');
    const idp = await provider([rsa.jwk]);
    const srv = await server({ jwksUrl: idp.url });
    await open(`${srv.url}/chat/${await jwt({ mode: 'r' })}`);
    await open(`${srv.url}/chat/${await rsa.sign({ mode: 'r' })}`);
  });

  it('exits non-zero after PGWS_RETRIES attempts when the URL cannot be reached at start', async () => {
    const idp = await provider([]);
    await idp.close();
    const child = runPgws([], cleanEnv({ PGWS_DB_URI: db.uri, PGWS_JWKS_URL: `${idp.url}?key=hidden-api-key`, PGWS_RETRIES: '2', PGWS_PORT: '0' }));
    const { code } = await within(child.exited, 20_000, 'pgws to exit');
    expect(code).not.toBe(0);
    const output = [...child.stdout, ...child.stderr].join('\n');
    expect(output).toMatch(/JWK Set/);
    expect(output).not.toContain('hidden-api-key');
    expect(child.stdout.some(logMsg('pgws ready'))).toBe(false);
  });
});

/** One upgrade by hand (the ws client refuses to send a malformed subprotocol list); the answer's text. */
function rawUpgrade(port: number, path: string, protocols: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      if (answer.includes('\r\n\r\n') && /\n\n?$|Bad request[^\n]*\n/.test(answer)) socket.destroy();
    });
    socket.on('close', () => resolve(answer));
    socket.on('connect', () =>
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${protocols}\r\n\r\n`,
      ),
    );
  });
}
