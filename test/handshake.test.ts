// Opening a socket (PROTOCOL.md §1 and §6, close code 3001), end to end: real pgws,
// real PostgreSQL, real WebSocket clients. Every rejection is checked four ways: the
// upgrade is refused with the right status and reason, no socket opens, nothing reaches
// the database, and the rejection is logged without the token.
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { connect, handshake, type TestClient } from './harness/client.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { watchChannel } from './harness/db-watch.js';
import { LISTEN_CHANNEL, startPgws, type LogLine, type TestServer } from './harness/pgws.js';
import { token, unsignedToken } from './harness/tokens.js';
import { within } from './harness/within.js';

const META_CHANNEL = 'meta';
const WRONG_SECRET = 'another-secret-that-is-long-enough-for-hs256';

/**
 * A server with a meta channel on a database of its own: an accepted socket on it WOULD
 * produce a ConnectionOpen NOTIFY, so a quiet watch on its listen channel proves a
 * rejection reached nothing. Its sockets are only ever opened through expectAcceptedAndDrained.
 */
interface Guarded {
  readonly db: TestDatabase;
  readonly srv: TestServer;
}

async function startGuarded(overrides: Parameters<typeof startPgws>[1] = {}): Promise<Guarded> {
  const own = await createTestDatabase();
  return { db: own, srv: await startPgws(own.uri, { metaChannel: META_CHANNEL, ...overrides }) };
}

/** Sockets accepted here stay open until the file ends: no meta channel, no stray events. */
let db: TestDatabase;
let srv: TestServer;
/** Default keys, meta channel on: where rejections of the default configuration are checked. */
let guarded: Guarded;

beforeAll(async () => {
  db = await createTestDatabase();
  srv = await startPgws(db.uri);
  guarded = await startGuarded();
});

const nowSeconds = (): number => Math.floor(Date.now() / 1000);


/** Routes a notification to `channel` the way database code does: through the listen channel. */
async function notifyChannel(sql: TestDatabase['sql'], channel: string, payload: string): Promise<string> {
  const text = JSON.stringify({ channel, payload });
  await sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${text})`;
  return text;
}

/**
 * Proves which channels a reader socket is open on: a notification to a channel it must
 * not have goes out first, then one to each expected channel; the socket must receive
 * exactly the expected ones, in order, and nothing else.
 */
async function expectChannels(client: TestClient, expected: readonly string[], notExpected: readonly string[]): Promise<void> {
  for (const channel of notExpected) await notifyChannel(db.sql, channel, `must not arrive on ${channel}`);
  const sent: string[] = [];
  for (const channel of expected) sent.push(await notifyChannel(db.sql, channel, `for ${channel}`));
  const got: string[] = [];
  for (let i = 0; i < sent.length; i++) got.push(await client.next());
  expect(got).toEqual(sent);
  await client.expectNoMessage(300);
}

describe('URL forms', () => {
  it('opens /<channel>/<jwt> on that channel', async () => {
    const client = await connect(`${srv.url}/chat/${await token({ mode: 'r' })}`);
    await expectChannels(client, ['chat'], ['not-chat']);
  });

  it('opens /<jwt> on every channel the token lists', async () => {
    const client = await connect(`${srv.url}/${await token({ mode: 'r', channels: ['one', 'two'] })}`);
    await expectChannels(client, ['one', 'two'], ['three']);
  });

  it('percent-decodes the channel segment (/another%20test/<jwt>)', async () => {
    const client = await connect(`${srv.url}/another%20test/${await token({ mode: 'r' })}`);
    await expectChannels(client, ['another test'], ['another%20test', 'another']);
  });

  it('matches a percent-decoded channel against the token channel claim', async () => {
    const client = await connect(`${srv.url}/another%20test/${await token({ mode: 'r', channel: 'another test' })}`);
    await expectChannels(client, ['another test'], ['another%20test']);
  });

  it('ignores a trailing slash', async () => {
    const client = await connect(`${srv.url}/trail/${await token({ mode: 'r' })}/`);
    await expectChannels(client, ['trail'], ['trail-other']);
  });
});

describe('claims table (PROTOCOL.md §1)', () => {
  type Outcome = { accepted: readonly string[]; notReceived: readonly string[] } | { rejected: 403 };
  type Row = [label: string, requestChannel: string | undefined, claims: JWTPayload, outcome: Outcome];

  const rows: Row[] = [
    // /<channel>/<jwt>, allowed list empty: the requested channel, whatever it is.
    ['/<channel>/<jwt>, no channel claims', 'free', { mode: 'r' }, { accepted: ['free'], notReceived: ['other'] }],
    ['/<channel>/<jwt>, empty channels array', 'free2', { mode: 'r', channels: [] }, { accepted: ['free2'], notReceived: ['other'] }],
    // /<channel>/<jwt>, allowed list non-empty: only the requested channel, if listed.
    ['/<channel>/<jwt>, channel claim matches', 'a', { mode: 'r', channel: 'a' }, { accepted: ['a'], notReceived: ['b'] }],
    ['/<channel>/<jwt>, channels claim contains it', 'b', { mode: 'r', channels: ['a', 'b'] }, { accepted: ['b'], notReceived: ['a'] }],
    [
      '/<channel>/<jwt>, in channels but not channel',
      'b',
      { mode: 'r', channel: 'a', channels: ['b', 'c'] },
      { accepted: ['b'], notReceived: ['a', 'c'] },
    ],
    ['/<channel>/<jwt>, channel claim differs', 'x', { mode: 'r', channel: 'a' }, { rejected: 403 }],
    ['/<channel>/<jwt>, not in channels', 'x', { mode: 'r', channels: ['a', 'b'] }, { rejected: 403 }],
    ['/<channel>/<jwt>, not in channel nor channels', 'x', { mode: 'r', channel: 'a', channels: ['b'] }, { rejected: 403 }],
    // /<jwt>, allowed list non-empty: the whole list, channel first, duplicates removed.
    ['/<jwt>, channel claim only', undefined, { mode: 'r', channel: 'solo' }, { accepted: ['solo'], notReceived: ['other'] }],
    ['/<jwt>, channels claim only', undefined, { mode: 'r', channels: ['c1', 'c2'] }, { accepted: ['c1', 'c2'], notReceived: ['c3'] }],
    [
      '/<jwt>, channel and channels with a duplicate',
      undefined,
      { mode: 'r', channel: 'd1', channels: ['d2', 'd1', 'd3'] },
      { accepted: ['d1', 'd2', 'd3'], notReceived: ['d4'] },
    ],
    // /<jwt>, allowed list empty: nothing to open.
    ['/<jwt>, no channel claims', undefined, { mode: 'r' }, { rejected: 403 }],
    ['/<jwt>, empty channels array', undefined, { mode: 'r', channels: [] }, { rejected: 403 }],
  ];

  it.each(rows)('%s', async (_label, requestChannel, claims, outcome) => {
    const jwt = await token(claims);
    const path = requestChannel === undefined ? `/${jwt}` : `/${encodeURIComponent(requestChannel)}/${jwt}`;
    if ('rejected' in outcome) {
      await expectRejectedEverywhere(guarded, path, jwt, outcome.rejected, /No allowed channels/);
      return;
    }
    const result = await handshake(`${srv.url}${path}`);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    await expectChannels(result.client, outcome.accepted, outcome.notReceived);
  });
});

describe('mode claim', () => {
  it.each(['r', 'w', 'rw'])('accepts mode %s', async (mode) => {
    const result = await handshake(`${srv.url}/modes/${await token({ mode })}`);
    expect(result.ok).toBe(true);
  });

  it.each<[string, unknown]>([
    ['an unknown letter', 'x'],
    ['upper case', 'RW'],
    ['"wr"', 'wr'],
    ['the empty string', ''],
    ['a number', 1],
  ])('rejects %s with 401', async (_label, mode) => {
    const jwt = await token({ mode });
    await expectRejectedEverywhere(guarded, `/modes/${jwt}`, jwt, 401, /Invalid mode/);
  });
});

describe('rejections: refused before the upgrade, nothing reaches the database, logged without the token', () => {
  it('control: an accepted socket on this server does produce a ConnectionOpen NOTIFY', async () => {
    await expectAcceptedAndDrained(guarded, `/control/${await token({ mode: 'r' })}`, 'control');
  });

  type Rejection = [label: string, makePath: () => Promise<{ path: string; jwt: string }>, status: number, reason: RegExp];
  const withChannel = (channel: string, jwt: string): { path: string; jwt: string } => ({ path: `/${channel}/${jwt}`, jwt });

  const rejections: Rejection[] = [
    ['an expired token', async () => withChannel('chat', await token({ mode: 'rw', exp: nowSeconds() - 10 })), 401, /Token expired/],
    ['a wrong signature', async () => withChannel('chat', await token({ mode: 'rw' }, WRONG_SECRET)), 401, /signature/i],
    [
      'a forged signature (payload swapped after signing)',
      async () => {
        const [header, , signature] = (await token({ mode: 'r' })).split('.');
        const payload = Buffer.from(JSON.stringify({ mode: 'rw' })).toString('base64url');
        return withChannel('chat', `${header}.${payload}.${signature}`);
      },
      401,
      /signature/i,
    ],
    ['alg none', async () => withChannel('chat', unsignedToken({ mode: 'rw' })), 401, /algorithm/i],
    ['a malformed token "abc"', async () => withChannel('chat', 'abc'), 401, /Malformed token/],
    ['a malformed token "a.b.c"', async () => withChannel('chat', 'a.b.c'), 401, /Malformed token/],
    ['a token without mode', async () => withChannel('chat', await token({ channel: 'chat' })), 401, /Missing mode/],
    ['an invalid mode', async () => withChannel('chat', await token({ mode: 'admin' })), 401, /Invalid mode/],
    ['an empty token via path /', async () => ({ path: '/', jwt: '' }), 401, /Missing mode/],
    ['an empty token via /<channel>/', async () => ({ path: '/chat//', jwt: '' }), 401, /Missing mode/],
    [
      'a channel the token does not allow',
      async () => withChannel('wrong', await token({ mode: 'rw', channel: 'right' })),
      403,
      /No allowed channels/,
    ],
    [
      '/<jwt> without channel claims',
      async () => {
        const jwt = await token({ mode: 'rw' });
        return { path: `/${jwt}`, jwt };
      },
      403,
      /No allowed channels/,
    ],
    [
      'swapped segments (/<jwt>/<channel>): the token must not be logged as a channel',
      async () => {
        const jwt = await token({ mode: 'rw', channel: 'chat' });
        return { path: `/${jwt}/chat`, jwt };
      },
      401,
      /Malformed token/,
    ],
    [
      'three path segments',
      async () => {
        const jwt = await token({ mode: 'rw' });
        return { path: `/a/b/${jwt}`, jwt };
      },
      400,
      /Bad request/,
    ],
    [
      'an empty channel segment (//<jwt>)',
      async () => {
        const jwt = await token({ mode: 'rw' });
        return { path: `//${jwt}`, jwt };
      },
      400,
      /empty channel/,
    ],
    [
      'a malformed percent escape in the channel',
      async () => withChannel('chat%zz', await token({ mode: 'rw' })),
      400,
      /Malformed path/,
    ],
    ['nbf in the future', async () => withChannel('chat', await token({ mode: 'rw', nbf: nowSeconds() + 3600 })), 401, /not yet valid/i],
  ];

  it.each(rejections)('%s', async (_label, makePath, status, reason) => {
    const { path, jwt } = await makePath();
    await expectRejectedEverywhere(guarded, path, jwt, status, reason);
  });
});

/**
 * Opens a socket on a guarded server, sees its ConnectionOpen reach the database, closes it
 * and drains its ConnectionClose, so nothing of it can leak into a later "nothing reached
 * the database" check.
 */
async function expectAcceptedAndDrained({ db: database, srv: server }: Guarded, path: string, channels: string): Promise<void> {
  const watch = await watchChannel(database.sql, LISTEN_CHANNEL);
  const client = await connect(`${server.url}${path}`);
  expect(JSON.parse(await watch.next())).toMatchObject({ event: 'ConnectionOpen', channel: META_CHANNEL, payload: channels });
  await client.close();
  expect(JSON.parse(await watch.next())).toMatchObject({ event: 'ConnectionClose', channel: META_CHANNEL, payload: channels });
}

/** The four checks every rejection must pass. */
async function expectRejectedEverywhere(
  { db: database, srv: server }: Guarded,
  path: string,
  jwt: string,
  status: number,
  reason: RegExp,
): Promise<void> {
  const watch = await watchChannel(database.sql, LISTEN_CHANNEL);
  const logsBefore = server.logs.length;
  const result = await handshake(`${server.url}${path}`);

  // 1. No socket: the upgrade itself was answered with an error status and the reason.
  expect(result.ok).toBe(false);
  if (result.ok) return;
  expect(result.status).toBe(status);
  expect(result.body).toMatch(reason);
  if (jwt !== '') expect(result.body).not.toContain(jwt);
  expect(server.server.socketCount()).toBe(0);

  // 2. Nothing reached the database (an accepted socket would have produced ConnectionOpen when a meta channel is set).
  await expect(watch.next(300)).rejects.toThrow(/no NOTIFY/);

  // 3. Logged, with the status and the reason.
  const isNew = (line: LogLine): boolean => server.logs.indexOf(line) >= logsBefore;
  const line = await within(
    server.waitForLog((l) => isNew(l) && l.msg === 'handshake rejected'),
    5000,
    'handshake rejected log line',
  );
  expect(line.status).toBe(status);
  expect(String(line.reason)).toMatch(reason);

  // 4. The token is in no log line at all.
  if (jwt !== '') expect(server.rawLogs.join('\n')).not.toContain(jwt);
}

describe('keys', () => {
  let rsa: { privateKey: CryptoKey; publicJwk: JWK };

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true });
    rsa = { privateKey: pair.privateKey, publicJwk: await exportJWK(pair.publicKey) };
  });

  const signWith = (claims: JWTPayload, alg: string, key: CryptoKey, kid?: string): Promise<string> =>
    new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT', ...(kid === undefined ? {} : { kid }) }).sign(key);

  describe('a single RSA JWK', () => {
    let jwkServer: Guarded;

    beforeAll(async () => {
      jwkServer = await startGuarded({ jwtSecret: JSON.stringify(rsa.publicJwk) });
    });

    it('accepts an RS256 token signed by its private key', async () => {
      await expectAcceptedAndDrained(jwkServer, `/rsa/${await signWith({ mode: 'r' }, 'RS256', rsa.privateKey)}`, 'rsa');
    });

    it('rejects an HS256 token signed with the JWK JSON text as HMAC secret (algorithm confusion)', async () => {
      const forged = await token({ mode: 'rw' }, JSON.stringify(rsa.publicJwk), 'HS256');
      await expectRejectedEverywhere(jwkServer, `/rsa/${forged}`, forged, 401, /algorithm/i);
    });

    it('rejects an HS256 token signed with the usual test secret', async () => {
      const hs = await token({ mode: 'rw' });
      await expectRejectedEverywhere(jwkServer, `/rsa/${hs}`, hs, 401, /algorithm/i);
    });

    it('rejects an RS256 token signed by another key', async () => {
      const stranger = await generateKeyPair('RS256');
      const jwt = await signWith({ mode: 'rw' }, 'RS256', stranger.privateKey);
      await expectRejectedEverywhere(jwkServer, `/rsa/${jwt}`, jwt, 401, /signature/i);
    });
  });

  it('a base64 secret (jwtSecretIsBase64) verifies tokens signed with the decoded bytes, not the text', async () => {
    const raw = 'raw-secret-bytes>>>???-long-enough-for-hs256';
    const encoded = Buffer.from(raw).toString('base64');
    expect(encoded).toMatch(/[+/]/); // exercises the standard alphabet's special characters
    const b64 = await startGuarded({ jwtSecret: encoded, jwtSecretIsBase64: true });
    await expectAcceptedAndDrained(b64, `/b64/${await token({ mode: 'r' }, raw)}`, 'b64');
    const signedWithText = await token({ mode: 'r' }, encoded);
    await expectRejectedEverywhere(b64, `/b64/${signedWithText}`, signedWithText, 401, /signature/i);
  });

  it('a base64url secret (URL-safe alphabet, no padding) works too', async () => {
    const raw = 'raw-secret-bytes>>>???-long-enough-for-hs256';
    const encoded = Buffer.from(raw).toString('base64url');
    const b64Srv = await startPgws(db.uri, { jwtSecret: encoded, jwtSecretIsBase64: true });
    expect((await handshake(`${b64Srv.url}/b64/${await token({ mode: 'r' }, raw)}`)).ok).toBe(true);
  });

  describe('a JWK Set with two keys', () => {
    let other: { privateKey: CryptoKey; publicJwk: JWK };
    let jwks: Guarded;

    beforeAll(async () => {
      const pair = await generateKeyPair('RS256', { extractable: true });
      other = { privateKey: pair.privateKey, publicJwk: await exportJWK(pair.publicKey) };
      const set = { keys: [{ ...rsa.publicJwk, kid: 'k1' }, { ...other.publicJwk, kid: 'k2' }] };
      jwks = await startGuarded({ jwtSecret: JSON.stringify(set) });
    });

    it.each<[string, () => CryptoKey]>([
      ['k1', () => rsa.privateKey],
      ['k2', () => other.privateKey],
    ])('accepts a token whose kid %s names the key that signed it', async (kid, key) => {
      await expectAcceptedAndDrained(jwks, `/jwks/${await signWith({ mode: 'r' }, 'RS256', key(), kid)}`, 'jwks');
    });

    it('picks by kid: a token signed by k1 but labelled k2 is rejected', async () => {
      const jwt = await signWith({ mode: 'r' }, 'RS256', rsa.privateKey, 'k2');
      await expectRejectedEverywhere(jwks, `/jwks/${jwt}`, jwt, 401, /signature/i);
    });

    it('rejects an unknown kid', async () => {
      const jwt = await signWith({ mode: 'r' }, 'RS256', rsa.privateKey, 'k3');
      await expectRejectedEverywhere(jwks, `/jwks/${jwt}`, jwt, 401, /kid/);
    });

    it('rejects alg none even with a known kid', async () => {
      const jwt = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT', kid: 'k1' })).toString('base64url')}.${Buffer.from(
        JSON.stringify({ mode: 'rw' }),
      ).toString('base64url')}.`;
      await expectRejectedEverywhere(jwks, `/jwks/${jwt}`, jwt, 401, /algorithm/i);
    });
  });
});

describe('expiry while open', () => {
  it('closes a socket with 3001 "JWT expired" when its exp passes', async () => {
    const exp = nowSeconds() + 2;
    const client = await connect(`${srv.url}/expiring/${await token({ mode: 'r', exp })}`);
    const closed = await within(client.closed, 6000, 'close on expiry');
    expect(closed).toEqual({ code: 3001, reason: 'JWT expired' });
    // Not early: the server closed it at or after exp (whole seconds, so allow the sub-second part).
    expect(Date.now() / 1000).toBeGreaterThanOrEqual(exp - 1);
  });

  it('leaves a socket without exp open', async () => {
    const client = await connect(`${srv.url}/forever/${await token({ mode: 'r' })}`);
    const expiring = await connect(`${srv.url}/forever/${await token({ mode: 'r', exp: nowSeconds() + 1 })}`);
    expect((await within(expiring.closed, 5000, 'close on expiry')).code).toBe(3001);
    // The socket without exp is still open and still receives.
    await expectChannels(client, ['forever'], []);
  });
});
