// Malformed traffic (issue 4, item 8), property-based with fast-check: random
// paths, tokens, headers and hand-made WebSocket frames (text, binary, invalid
// UTF-8, fragmented, oversized, bad opcodes, unmasked) over raw TCP at a running
// server. It must not crash, must not keep a socket once the peer is gone, and
// must keep serving a well-behaved client throughout.
import net from 'node:net';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { connect, type TestClient } from './harness/client.js';
import { createTestDatabase } from './harness/db.js';
import { startPgws, type TestServer } from './harness/pgws.js';
import { token, unsignedToken } from './harness/tokens.js';
import { until } from './harness/within.js';

let srv: TestServer;
let good: TestClient;
let validToken: string;
let baseline: number;
let accessDb: string;

beforeAll(async () => {
  const db = await createTestDatabase();
  accessDb = db.uri;
  srv = await startPgws(db.uri, { logLevel: 'silent', maxMessageSize: 2000 });
  good = await connect(`${srv.url}/good/${await token({ mode: 'rw', channel: 'good' })}`);
  validToken = await token({ mode: 'rw' });
  baseline = srv.server.socketCount();
});

/** The well-behaved client still gets its own frame back (skipping anything else on its channel). */
async function stillServed(marker: string): Promise<void> {
  good.send(marker);
  for (;;) {
    const env = JSON.parse(await good.next(5000)) as { payload?: string };
    if (env.payload === marker) return;
  }
}

interface FrameSpec {
  readonly fin: boolean;
  readonly rsv: number;
  readonly opcode: number;
  readonly payload: Uint8Array;
  readonly masked: boolean;
  /** Claims a length other than the real one (e.g. 2^40): the frame lies. */
  readonly claimedLength: number | undefined;
}

/** RFC 6455 framing by hand, so frames can be wrong in every way a library would refuse. */
function encodeFrame(f: FrameSpec): Buffer {
  const length = f.claimedLength ?? f.payload.length;
  const head: number[] = [(f.fin ? 0x80 : 0) | ((f.rsv & 7) << 4) | (f.opcode & 0xf)];
  const maskBit = f.masked ? 0x80 : 0;
  if (length < 126) head.push(maskBit | length);
  else if (length < 65536) head.push(maskBit | 126, length >> 8, length & 0xff);
  else {
    head.push(maskBit | 127);
    const big = Buffer.alloc(8);
    big.writeBigUInt64BE(BigInt(length));
    head.push(...big);
  }
  const mask = [0x12, 0x34, 0x56, 0x78];
  const body = Buffer.from(f.payload.map((b, i) => (f.masked ? b ^ (mask[i % 4] ?? 0) : b)));
  return Buffer.concat([Buffer.from(head), f.masked ? Buffer.from(mask) : Buffer.alloc(0), body]);
}

const payloadArb = fc.oneof(
  fc.string({ maxLength: 200 }).map((s) => new Uint8Array(Buffer.from(s, 'utf8'))),
  fc.uint8Array({ maxLength: 300 }), // mostly invalid UTF-8
  fc.constantFrom(new Uint8Array([0xc3, 0x28]), new Uint8Array([0xed, 0xa0, 0x80]), new Uint8Array([0xf8, 0x88, 0x80, 0x80, 0x80])),
  fc.integer({ min: 1990, max: 2100 }).map((n) => new Uint8Array(n).fill(0x61)), // around the size limit
);

const frameArb: fc.Arbitrary<FrameSpec> = fc.record({
  fin: fc.boolean(),
  rsv: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 7 })),
  opcode: fc.oneof(fc.constantFrom(0, 1, 2, 8, 9, 10), fc.integer({ min: 0, max: 15 })),
  payload: payloadArb,
  masked: fc.oneof(fc.constant(true), fc.boolean()),
  claimedLength: fc.option(fc.constantFrom(0, 125, 126, 65535, 65536, 2 ** 31, 2 ** 40), { freq: 8 }),
});

/** A path as a client might send it, well-formed or not. */
const pathArb = fc.oneof(
  fc.constant(() => `/chat/${validToken}`),
  fc.tuple(fc.string({ maxLength: 40 }), fc.string({ maxLength: 200 })).map(([a, b]) => () => `/${a}/${b}`),
  fc.webPath().map((p) => () => p || '/'),
  fc.string({ maxLength: 300 }).map((s) => () => `/${encodeURIComponent(s)}/${validToken}`),
  fc.constantFrom('/', '//', '/../..', '/%', '/%zz/x', '/a/b/c/d', `/${'x'.repeat(5000)}`).map((p) => () => p),
  fc.record({ mode: fc.oneof(fc.constantFrom('r', 'w', 'rw'), fc.string()), channel: fc.string({ maxLength: 20 }) }).map((claims) => () => `/${encodeURIComponent(claims.channel) || 'c'}/${unsignedToken(claims)}`),
  fc.integer({ min: 0, max: 200 }).map((cut) => () => `/chat/${validToken.slice(0, cut)}`),
);

const headerArb = fc.array(
  fc.tuple(fc.stringMatching(/^[A-Za-z-]{1,20}$/), fc.string({ maxLength: 80 }).map((v) => v.replace(/[\r\n]/g, ' '))),
  { maxLength: 5 },
);

/**
 * One raw connection: an upgrade request by hand, then frames. Resolves with the
 * HTTP status line's code (undefined if the server closed without one).
 */
function rawSession(
  path: string,
  headers: readonly (readonly [string, string])[],
  frames: readonly FrameSpec[],
  upgrade: boolean,
  port = srv.port,
): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let answered = false;
    let status: number | undefined;
    const finish = (): void => {
      socket.destroy();
      resolve(status);
    };
    const giveUp = setTimeout(finish, 300);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(giveUp);
      resolve(status);
    });
    socket.on('connect', () => {
      const lines = [`GET ${path} HTTP/1.1`, 'Host: 127.0.0.1'];
      if (upgrade) {
        lines.push('Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13');
      }
      for (const [name, value] of headers) lines.push(`${name}: ${value}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    });
    socket.on('data', (chunk: Buffer) => {
      if (answered) return;
      answered = true;
      status = Number(/^HTTP\/1\.1 (\d{3})/.exec(chunk.toString('latin1'))?.[1]) || undefined;
      if (status === 101) {
        for (const f of frames) socket.write(encodeFrame(f));
        // Give the server a moment to answer the frames, then leave abruptly or politely.
        setTimeout(finish, 20);
      } else {
        finish();
      }
    });
  });
}

describe('fuzz', () => {
  it('random paths, tokens and headers: every upgrade answered, server alive', async () => {
    const statuses = new Set<number | undefined>();
    await fc.assert(
      fc.asyncProperty(pathArb, headerArb, fc.boolean(), async (path, headers, upgrade) => {
        statuses.add(await rawSession(path(), headers, [], upgrade));
      }),
      { numRuns: 150, seed: 4 },
    );
    // The inputs reached every kind of answer, or they tested nothing.
    for (const status of [101, 200, 400, 401]) expect(statuses).toContain(status);
    await stillServed('after paths');
  });

  it('random frames on an open socket: server alive, good client served, no leaked sockets', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(frameArb, { minLength: 1, maxLength: 6 }), async (frames) => {
        expect(await rawSession(`/fuzz/${validToken}`, [], frames, true)).toBe(101);
        if (++run % 25 === 0) await stillServed(`during frames ${run}`);
      }),
      { numRuns: 200, seed: 8 },
    );
    await stillServed('after frames');
    await until(() => srv.server.socketCount() === baseline, 5000, `socket count back to ${baseline}`);
    expect(srv.server.socketCount()).toBe(baseline);
  });

  it('random token sources (path, query, Authorization, cookie, subprotocols, Origin): never a socket without the one valid token from an allowed origin', async () => {
    // PROTOCOL.md §8. A server that reads a cookie and checks origins; tokens drawn from one
    // valid token and several bad ones, put in any mix of places.
    const access = await startPgws(accessDb, { logLevel: 'silent', jwtCookie: 'pgws_token', allowedOrigins: ['https://app.example.com'] });
    const valid = await token({ mode: 'rw' });
    const [signedWrong, wrongMode] = [await token({ mode: 'rw' }, 'another-secret-that-is-long-enough-for-hs256'), await token({ mode: 'admin' })];
    const tokenArb = fc.oneof(
      fc.constant(valid),
      fc.constantFrom(signedWrong, wrongMode, unsignedToken({ mode: 'rw' }), valid.slice(0, -3), ''),
      fc.stringMatching(/^[A-Za-z0-9._-]{0,60}$/),
    );
    const optional = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { nil: undefined });
    const requestArb = fc.record({
      path: fc.oneof(fc.constantFrom('/', '/chat', '/a/b/c', '/%zz'), tokenArb.map((t) => `/chat/${t}`), tokenArb.map((t) => `/${t}`)),
      query: optional(fc.oneof(tokenArb.map((t) => `access_token=${t}`), fc.constantFrom('echo=false', 'echo=x', 'access_token=%zz', 'a=1&&b'), tokenArb.map((t) => `access_token=${t}&access_token=${t}`))),
      authorization: optional(fc.oneof(tokenArb.map((t) => `Bearer ${t}`), fc.constantFrom('Basic dXNlcjpwYXNz', 'Bearer', 'bearer  '), tokenArb.map((t) => `bEaReR ${t}`))),
      cookie: optional(fc.oneof(tokenArb.map((t) => `pgws_token=${t}`), tokenArb.map((t) => `a=1; pgws_token=${t}; b=2`), fc.constantFrom('pgws_token', '=;;=', 'other=x'))),
      protocols: optional(fc.oneof(tokenArb.map((t) => `pgws.bearer.${t}, pgws.v1`), tokenArb.map((t) => `pgws.bearer.${t}`), fc.constantFrom('pgws.v1', 'pgws.v2', 'x, y', ',,', 'pgws.bearer.'))),
      origin: optional(fc.constantFrom('https://app.example.com', 'https://evil.example', 'null', 'https://app.example.com:444')),
    });
    const statuses = new Set<number | undefined>();
    await fc.assert(
      fc.asyncProperty(requestArb, async (req) => {
        const headers: [string, string][] = [];
        if (req.authorization !== undefined) headers.push(['Authorization', req.authorization]);
        if (req.cookie !== undefined) headers.push(['Cookie', req.cookie]);
        if (req.protocols !== undefined) headers.push(['Sec-WebSocket-Protocol', req.protocols]);
        if (req.origin !== undefined) headers.push(['Origin', req.origin]);
        const target = req.query === undefined ? req.path : `${req.path}?${req.query}`;
        const status = await rawSession(target, headers, [], true, access.port);
        statuses.add(status);
        if (status !== 101) return;
        // Accepted: the valid token was in the request, and the page (if any) was allowed.
        const everything = [target, ...headers.map(([, value]) => value)].join('\n');
        expect(everything).toContain(valid);
        expect(req.origin === undefined || req.origin === 'https://app.example.com').toBe(true);
      }),
      { numRuns: 400, seed: 20261203 },
    );
    for (const status of [101, 400, 401, 403]) expect(statuses).toContain(status);
    await until(() => access.server.socketCount() === 0, 5000, 'fuzzed sockets to be gone');
    await access.stop();
    await stillServed('after token sources');
  });
});
