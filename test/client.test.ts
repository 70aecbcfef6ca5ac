// The client library pgws/client (client/src/index.ts) against a real pgws speaking protocol v2
// (PROTOCOL.md §9, §10) and a real PostgreSQL, on both transports. The client runs as an
// application runs it, in Node 20 with the `ws` package's WebSocket passed in; a thin subclass
// of that WebSocket records the frames going each way (and, where a test says so, swallows
// frames of one type so that a request stays unanswered: the client's own socket, not the
// database, is what is tampered with).
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  connect,
  PgwsError,
  type ClientEvents,
  type ClientState,
  type ConnectOptions,
  type Filter,
  type Json,
  type MessageMeta,
  type PgwsClient,
  type WebSocketConstructor,
} from '../client/src/index.js';
import { freePort } from '../src/embedded.js';
import type { Config } from '../src/types.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { logMsg, runPgws } from './harness/child.js';
import { track } from './harness/leftovers.js';
import { LISTEN_CHANNEL, SECRET, startPgws, type TestServer } from './harness/pgws.js';
import { token } from './harness/tokens.js';
import { until, within } from './harness/within.js';

/** Deadline of one wait for an event, in ms. */
const WAIT_MS = 5_000;
/** Fast reconnects, so the tests that stop a server wait little. */
const QUICK = { initialDelayMs: 50, maxDelayMs: 250 } as const;

let db: TestDatabase;
let srv: TestServer;

beforeAll(async () => {
  db = await createTestDatabase();
  srv = await startPgws(db.uri);
});

afterAll(() => {
  // No token of this file reaches a log line.
  const all = srv.rawLogs.join('\n');
  for (const jwt of sentTokens) expect(all, 'a token in a log line').not.toContain(jwt);
});

const sentTokens = new Set<string>();
async function jwt(claims: Parameters<typeof token>[0], secret?: string): Promise<string> {
  const text = await token(claims, secret);
  sentTokens.add(text);
  return text;
}
const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/** Frames of the client's sockets, parsed, in order; `drop`: types of frames the client sends that never leave. */
interface Wire {
  readonly sent: Record<string, Json>[];
  readonly received: Record<string, Json>[];
  readonly sockets: WebSocket[];
  readonly drop: Set<string>;
}

function recordingWebSocket(wire: Wire): WebSocketConstructor {
  return class RecordingWebSocket extends WebSocket {
    constructor(url: string, protocols: string[]) {
      super(url, protocols);
      wire.sockets.push(this);
      this.on('message', (data: WebSocket.RawData) => {
        wire.received.push(JSON.parse(String(data)) as Record<string, Json>);
      });
    }

    override send(data: string): void {
      const frame = JSON.parse(data) as Record<string, Json>;
      wire.sent.push(frame);
      if (!wire.drop.has(String(frame.type))) super.send(data);
    }
  };
}

interface Watched {
  readonly client: PgwsClient;
  readonly wire: Wire;
  readonly states: ClientState[];
  readonly errors: PgwsError[];
  readonly unsubscribed: ClientEvents['unsubscribed'][];
  readonly resubscribed: ClientEvents['resubscribed'][];
}

/** A client on `server` (default: the file's), with everything it emits recorded; closed after the file. */
function open(options: ConnectOptions, server: TestServer = srv): Watched {
  const wire: Wire = { sent: [], received: [], sockets: [], drop: new Set() };
  const client = connect(`${server.url}/`, { WebSocket: recordingWebSocket(wire), ...options });
  track(() => client.close());
  const watched: Watched = { client, wire, states: [], errors: [], unsubscribed: [], resubscribed: [] };
  client.on('state', (s) => watched.states.push(s));
  client.on('error', (e) => watched.errors.push(e));
  client.on('unsubscribed', (e) => watched.unsubscribed.push(e));
  client.on('resubscribed', (e) => watched.resubscribed.push(e));
  return watched;
}

async function opened(options: ConnectOptions, server: TestServer = srv): Promise<Watched> {
  const watched = open(options, server);
  await until(() => watched.client.state === 'open', WAIT_MS, 'client open');
  return watched;
}

interface Inbox {
  readonly items: { readonly data: Json; readonly meta: MessageMeta }[];
  onMessage(data: Json, meta: MessageMeta): void;
  /** Waits until `n` messages arrived. */
  count(n: number, what: string): Promise<void>;
  readonly payloads: () => Json[];
}

function inbox(): Inbox {
  const items: { data: Json; meta: MessageMeta }[] = [];
  return {
    items,
    onMessage: (data, meta) => items.push({ data, meta }),
    count: (n, what) => until(() => items.length >= n, WAIT_MS, what),
    payloads: () => items.map(({ data }) => (typeof data === 'object' && data !== null && !Array.isArray(data) ? (data as { payload?: Json }).payload ?? null : null)),
  };
}

async function notify(channel: string, payload: Json): Promise<void> {
  await db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${JSON.stringify({ channel, payload })})`;
}

/** The PgwsError a promise rejects with (it must reject with one). */
async function rejection(promise: Promise<unknown>): Promise<PgwsError> {
  const outcome = await within(
    promise.then(
      () => undefined,
      (error: unknown) => error,
    ),
    WAIT_MS,
    'rejection',
  );
  if (outcome === undefined) throw new Error('expected a rejection, the promise resolved');
  expect(outcome).toBeInstanceOf(PgwsError);
  return outcome as PgwsError;
}

/** A pgws on a port known before it starts, so a second one can take the same port after it stops. */
async function serverOnFreePort(overrides: Partial<Config> = {}): Promise<TestServer> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return await startPgws(db.uri, { port, ...overrides });
    } catch (err) {
      if (attempt >= 3 || !String(err).includes('cannot listen')) throw err;
    }
  }
}

const framesOfType = (frames: readonly Record<string, Json>[], type: string): Record<string, Json>[] => frames.filter((f) => f.type === type);

describe('subscriptions', () => {
  it('subscribe: the socket offers pgws.v2 and the bearer, gets pgws.v2, and a pg_notify arrives with channel and sub', async () => {
    const { client, wire, states } = await opened({ token: await jwt({ mode: 'r', channels: ['chat'] }) });
    expect(wire.sockets[0]?.protocol).toBe('pgws.v2');
    const box = inbox();
    const sub = client.subscribe('chat', { onMessage: box.onMessage });
    expect(sub.state).toBe('subscribing');
    await within(sub.ready, WAIT_MS, 'subscribed');
    expect(sub.state).toBe('active');

    await notify('chat', { text: 'hello', n: 1 });
    await box.count(1, 'message');
    const [first] = box.items;
    expect(first?.data).toEqual({ channel: 'chat', payload: { text: 'hello', n: 1 } });
    const answer = framesOfType(wire.received, 'subscribed')[0];
    expect(first?.meta).toEqual({ channel: 'chat', sub: answer?.sub });
    expect(sub.offset, 'no journal: no offset').toBeUndefined();
    expect(framesOfType(wire.sent, 'subscribe')).toEqual([{ type: 'subscribe', id: expect.any(Number), channel: 'chat' }]);
    expect(states).toEqual(['open']);
  });

  it('a filter: only matching notifications reach the subscription', async () => {
    const { client } = await opened({ token: await jwt({ mode: 'r' }) });
    const room7 = inbox();
    const all = inbox();
    const filter: Filter = { 'payload.room': 7, 'payload.price': { gte: 10, lt: 100 } };
    const filtered = client.subscribe('rooms', { filter, onMessage: room7.onMessage });
    const control = client.subscribe('rooms', { onMessage: all.onMessage });
    await within(Promise.all([filtered.ready, control.ready]), WAIT_MS, 'subscribed');

    await notify('rooms', { room: 1, price: 50 });
    await notify('rooms', { room: 7, price: 5 });
    await notify('rooms', { room: 7, price: 50 });
    await all.count(3, 'the unfiltered subscription gets all three');
    await room7.count(1, 'the filtered subscription gets the match');
    // Frames of one socket arrive in order: a match of the first two would be here by now.
    expect(room7.payloads()).toEqual([{ room: 7, price: 50 }]);
    expect(all.payloads()).toEqual([
      { room: 1, price: 50 },
      { room: 7, price: 5 },
      { room: 7, price: 50 },
    ]);
  });

  it('two local subscriptions of one (channel, filter, echo) share the server sub: both get each message, the server is told only when the last one goes', async () => {
    const { client, wire } = await opened({ token: await jwt({ mode: 'r' }) });
    const a = inbox();
    const b = inbox();
    const control = inbox();
    const subA = client.subscribe('shared', { filter: { 'payload.k': 1 }, onMessage: a.onMessage });
    const subB = client.subscribe('shared', { filter: { 'payload.k': 1 }, onMessage: b.onMessage });
    const subControl = client.subscribe('shared', { onMessage: control.onMessage });
    await within(Promise.all([subA.ready, subB.ready, subControl.ready]), WAIT_MS, 'subscribed');
    const answers = framesOfType(wire.received, 'subscribed');
    expect(answers).toHaveLength(3);
    const [sa, sb, sc] = answers.map((f) => f.sub);
    expect(sa, 'one server sub for one triple').toBe(sb);
    expect(sc).not.toBe(sa);

    await notify('shared', { k: 1, n: 1 });
    await a.count(1, 'A');
    await b.count(1, 'B');
    expect(a.items[0]?.meta.sub).toBe(sa);

    await within(subA.unsubscribe(), WAIT_MS, 'A unsubscribed');
    expect(subA.state).toBe('ended');
    expect(framesOfType(wire.sent, 'unsubscribe'), 'B still uses the server sub').toEqual([]);
    await notify('shared', { k: 1, n: 2 });
    await b.count(2, 'B gets the second');
    await control.count(2, 'control gets the second');
    expect(a.items).toHaveLength(1);

    await within(subB.unsubscribe(), WAIT_MS, 'B unsubscribed');
    expect(framesOfType(wire.sent, 'unsubscribe')).toEqual([{ type: 'unsubscribe', id: expect.any(Number), sub: sa }]);
    const unsubscribedAt = wire.received.findIndex((f) => f.type === 'unsubscribed' && f.sub === sa);
    expect(unsubscribedAt, 'the server confirmed before unsubscribe() resolved').toBeGreaterThan(-1);

    await notify('shared', { k: 1, n: 3 });
    await control.count(3, 'control gets the third');
    expect(b.items).toHaveLength(2);
    expect(wire.received.slice(unsubscribedAt).filter((f) => f.type === 'message' && f.sub === sa), 'messages of the ended sub').toEqual([]);
  });

  it('unsubscribe stops delivery; a subscription ended before its answer rejects ready with closed', async () => {
    const { client, wire } = await opened({ token: await jwt({ mode: 'r' }) });
    const gone = inbox();
    const control = inbox();
    const sub = client.subscribe('leave', { onMessage: gone.onMessage });
    const subControl = client.subscribe('leave', { filter: { 'payload.keep': true }, onMessage: control.onMessage });
    await within(Promise.all([sub.ready, subControl.ready]), WAIT_MS, 'subscribed');
    await within(sub.unsubscribe(), WAIT_MS, 'unsubscribed');
    await notify('leave', { keep: true });
    await control.count(1, 'control');
    expect(gone.items).toEqual([]);

    const early = client.subscribe('leave', { onMessage: gone.onMessage });
    const done = early.unsubscribe();
    expect((await rejection(early.ready)).code).toBe('closed');
    await within(done, WAIT_MS, 'unsubscribe before the answer');
    // Its answer, come after, names a server sub nobody uses: the client unsubscribes it.
    await until(() => framesOfType(wire.sent, 'unsubscribe').length === 2, WAIT_MS, 'the unwanted sub released');
    await until(() => framesOfType(wire.received, 'unsubscribed').length === 2, WAIT_MS, 'released on the server');
    await notify('leave', { keep: true });
    await control.count(2, 'control');
    expect(gone.items).toEqual([]);
  });

  it('echo: false skips what this socket published; echo: true (the default) gets it', async () => {
    const { client } = await opened({ token: await jwt({ mode: 'rw' }) });
    const quiet = inbox();
    const loud = inbox();
    const subQuiet = client.subscribe('echo', { echo: false, onMessage: quiet.onMessage });
    const subLoud = client.subscribe('echo', { onMessage: loud.onMessage });
    await within(Promise.all([subQuiet.ready, subLoud.ready]), WAIT_MS, 'subscribed');
    await within(client.publish('echo', 'mine'), WAIT_MS, 'published');
    await notify('echo', 'from sql');
    await loud.count(2, 'echo true gets both');
    await quiet.count(1, 'echo false gets the notification from SQL');
    expect(quiet.payloads()).toEqual(['from sql']);
    expect(loud.payloads()).toEqual(['mine', 'from sql']);
  });
});

describe('requests', () => {
  it('publish resolves on published and the envelope reaches a subscriber, the payload JSON as given', async () => {
    const { client, wire } = await opened({ token: await jwt({ mode: 'rw', channels: ['chat'], user: 'ann' }) });
    const box = inbox();
    await within(client.subscribe('chat', { onMessage: box.onMessage }).ready, WAIT_MS, 'subscribed');
    const payload = { text: 'hi · ü', list: [1, null, true], nested: { a: 1.5 } };
    await within(client.publish('chat', payload), WAIT_MS, 'published');
    const publish = framesOfType(wire.sent, 'publish')[0];
    expect(publish).toEqual({ type: 'publish', id: expect.any(Number), channel: 'chat', payload });
    expect(wire.received).toContainEqual({ type: 'published', id: publish?.id });
    await box.count(1, 'own publish received');
    expect(box.items[0]?.data).toMatchObject({
      event: 'WebsocketMessage',
      channel: 'chat',
      payload,
      claims: { mode: 'rw', user: 'ann', message_delivered_at: expect.any(Number) },
    });
  });

  it('refusals reject with a PgwsError carrying the server code: forbidden, bad_request, not_found, payload_too_large', async () => {
    const { client, errors } = await opened({ token: await jwt({ mode: 'rw', channels: ['chat'], pad: 'p'.repeat(400) }) });
    expect((await rejection(client.subscribe('secret', { onMessage: () => undefined }).ready)).code).toBe('forbidden');
    expect((await rejection(client.publish('secret', 1))).code).toBe('forbidden');
    const badFilter = client.subscribe('chat', { filter: { 'a..b': 1 }, onMessage: () => undefined });
    const refused = await rejection(badFilter.ready);
    expect(refused.code).toBe('bad_request');
    expect(refused.message).not.toBe('');
    expect(badFilter.state).toBe('ended');
    expect((await rejection(client.call('anything', { a: 1 }))).code).toBe('not_found');
    // Under the frame limit (7999), over the NOTIFY limit once the envelope adds the claims.
    expect((await rejection(client.publish('chat', 'x'.repeat(7800)))).code).toBe('payload_too_large');

    const readOnly = await opened({ token: await jwt({ mode: 'r', channels: ['chat'] }) });
    expect((await rejection(readOnly.client.publish('chat', 'no'))).code).toBe('forbidden');
    // Refusals of requests are rejections, not error events; the sockets stayed open.
    expect(errors).toEqual([]);
    expect(client.state).toBe('open');
    expect(await within(client.ping(), WAIT_MS, 'ping')).toEqual(expect.any(Number));
  });

  it('too_many_subscriptions over maxSubscriptions; the refused one is ended, the others go on', async () => {
    const small = await startPgws(db.uri, { maxSubscriptions: 2 });
    const { client } = await opened({ token: await jwt({ mode: 'r' }) }, small);
    const box = inbox();
    const one = client.subscribe('a', { onMessage: box.onMessage });
    const two = client.subscribe('b', { onMessage: box.onMessage });
    await within(Promise.all([one.ready, two.ready]), WAIT_MS, 'two subscribed');
    const three = client.subscribe('c', { onMessage: box.onMessage });
    expect((await rejection(three.ready)).code).toBe('too_many_subscriptions');
    expect(three.state).toBe('ended');
    await within(one.unsubscribe(), WAIT_MS, 'one unsubscribed');
    const four = client.subscribe('c', { onMessage: box.onMessage });
    await within(four.ready, WAIT_MS, 'a place was free again');
  });

  it('a request without an answer rejects with timeout; ping resolves with the round trip', async () => {
    const { client, wire } = await opened({ token: await jwt({ mode: 'rw' }), requestTimeoutMs: 300, heartbeatIntervalMs: 0 });
    expect(await within(client.ping(), WAIT_MS, 'ping')).toBeGreaterThanOrEqual(0);
    wire.drop.add('publish');
    const timedOut = await rejection(client.publish('chat', 'lost'));
    expect(timedOut.code).toBe('timeout');
    expect(timedOut.message).toContain('may or may not have been delivered');
    expect(client.state).toBe('open');
  });

  it('a request in flight when the socket drops rejects with connection_lost and is not sent again', async () => {
    const own = await serverOnFreePort();
    const { client, wire } = await opened({ token: await jwt({ mode: 'rw' }), reconnect: QUICK }, own);
    wire.drop.add('publish');
    const pending = rejection(client.publish('chat', 'in flight'));
    await until(() => framesOfType(wire.sent, 'publish').length === 1, WAIT_MS, 'publish sent');
    await own.stop();
    const lost = await pending;
    expect(lost.code).toBe('connection_lost');
    expect(lost.message).toContain('may or may not have been delivered');
    wire.drop.clear();
    const again = await startPgws(db.uri, { port: own.port });
    await until(() => client.state === 'open', WAIT_MS, 'reopened');
    await within(client.ping(), WAIT_MS, 'ping on the new socket');
    expect(framesOfType(wire.sent, 'publish'), 'the publish was not retried').toHaveLength(1);
    await again.stop();
  });

  it('close(): requests waiting (queued or sent) reject with closed, no reconnect, later calls reject closed', async () => {
    const { client, wire, states } = await opened({ token: await jwt({ mode: 'rw' }), reconnect: QUICK });
    wire.drop.add('publish');
    const sent = rejection(client.publish('chat', 'never answered'));
    await until(() => framesOfType(wire.sent, 'publish').length === 1, WAIT_MS, 'publish sent');
    wire.drop.add('subscribe');
    const waiting = client.subscribe('chat', { onMessage: () => undefined });
    await within(client.close(), WAIT_MS, 'close');
    expect((await sent).code).toBe('closed');
    expect((await rejection(waiting.ready)).code).toBe('closed');
    expect(client.state).toBe('closed');
    expect(states).toEqual(['open', 'closed']);
    expect((await rejection(client.publish('chat', 'after'))).code).toBe('closed');
    expect((await rejection(client.subscribe('chat', { onMessage: () => undefined }).ready)).code).toBe('closed');
    await until(() => wire.sockets.every((ws) => ws.readyState === WebSocket.CLOSED), WAIT_MS, 'socket closed');
    expect(wire.sockets).toHaveLength(1);

    // Closed while still connecting: the queued request rejects, and no socket is ever opened.
    const early = open({ token: await jwt({ mode: 'rw' }) });
    const queued = rejection(early.client.publish('chat', 'queued'));
    await early.client.close();
    expect((await queued).code).toBe('closed');
    expect(early.wire.sockets).toHaveLength(0);
  });
});

describe('reconnect and tokens', () => {
  it('after the server stops, a new one on the same port: reconnect with backoff, resubscribe, messages flow, a publish made meanwhile is sent', async () => {
    const first = await serverOnFreePort();
    const watched = await opened({ token: await jwt({ mode: 'rw' }), reconnect: QUICK }, first);
    const { client, wire, states, resubscribed } = watched;
    const box = inbox();
    const sub = client.subscribe('live', { filter: { 'payload.n': { exists: true } }, onMessage: box.onMessage });
    await within(sub.ready, WAIT_MS, 'subscribed');
    await notify('live', { n: 1 });
    await box.count(1, 'before the restart');

    await first.stop();
    await until(() => client.state === 'reconnecting', WAIT_MS, 'reconnecting');
    const publishedMeanwhile = client.publish('live', { n: 2 });
    publishedMeanwhile.catch(() => undefined); // awaited below; this only keeps a failure from being "unhandled" first
    // Attempts fail while nothing listens: each one is an error event, the client keeps going.
    await until(() => watched.errors.some((e) => e.code === 'connect_failed'), WAIT_MS, 'a failed attempt reported');

    const second = await startPgws(db.uri, { port: first.port });
    await until(() => resubscribed.length === 1, WAIT_MS, 'resubscribed');
    expect(resubscribed[0]).toEqual({ channel: 'live', recovered: false, subscription: sub });
    await within(publishedMeanwhile, WAIT_MS, 'the publish queued while reconnecting');
    await box.count(2, 'the publish made while reconnecting');
    await notify('live', { n: 3 });
    await box.count(3, 'after the restart');
    expect(box.payloads()).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    expect(states).toEqual(['open', 'reconnecting', 'open']);
    // No offset was ever seen (no journal): the subscribe is sent again without `since`.
    const subscribes = framesOfType(wire.sent, 'subscribe');
    expect(subscribes).toHaveLength(2);
    expect(subscribes[1]).toEqual({ type: 'subscribe', id: expect.any(Number), channel: 'live', filter: { 'payload.n': { exists: true } } });
    expect(sub.state).toBe('active');
    await client.close();
    await second.stop();
  });

  it('after the pgws process is SIGKILLed (no close frame) and started again on the same port: reconnect, resubscribe, messages flow', async () => {
    const port = await freePort();
    const args = ['--db-uri', db.uri, '--jwt-secret', SECRET, '--host', '127.0.0.1', '--port', String(port)];
    const first = runPgws(args);
    await first.waitForLine(logMsg('pgws ready'));
    const url = `ws://127.0.0.1:${port}/`;
    const wire: Wire = { sent: [], received: [], sockets: [], drop: new Set() };
    const client = connect(url, { WebSocket: recordingWebSocket(wire), token: await jwt({ mode: 'r' }), reconnect: QUICK });
    track(() => client.close());
    const resubscribed: ClientEvents['resubscribed'][] = [];
    client.on('resubscribed', (e) => resubscribed.push(e));
    const box = inbox();
    const sub = client.subscribe('killed', { onMessage: box.onMessage });
    await within(sub.ready, WAIT_MS, 'subscribed');
    await notify('killed', 'before');
    await box.count(1, 'before the kill');

    first.proc.kill('SIGKILL');
    await within(first.exited, WAIT_MS, 'the first pgws gone');
    await until(() => client.state === 'reconnecting', WAIT_MS, 'reconnecting after a cut without a close frame');
    const second = runPgws(args);
    await second.waitForLine(logMsg('pgws ready'));
    await until(() => resubscribed.length === 1, WAIT_MS, 'resubscribed to the new process');
    await notify('killed', 'after');
    await box.count(2, 'after the restart');
    expect(box.payloads()).toEqual(['before', 'after']);
    await client.close();
    second.proc.kill('SIGTERM');
    await within(second.exited, WAIT_MS, 'the second pgws stopped');
  });

  it('a 401 handshake is an invalid_token error event with the status; a provider is asked again and the next token opens the socket', async () => {
    let calls = 0;
    const good = await jwt({ mode: 'r' });
    const bad = await jwt({ mode: 'r' }, `${SECRET}-not-this-one`);
    const watched = open({
      token: () => (++calls === 1 ? bad : good),
      reconnect: QUICK,
    });
    await until(() => watched.client.state === 'open', WAIT_MS, 'open with the second token');
    expect(calls).toBe(2);
    expect(watched.errors).toHaveLength(1);
    expect(watched.errors[0]).toMatchObject({ code: 'invalid_token', status: 401 });
    expect(watched.states).toEqual(['open']);

    // A fixed token that is refused: an error per attempt, retried with backoff until close().
    const fixed = open({ token: bad, reconnect: QUICK });
    await until(() => fixed.errors.length >= 2, WAIT_MS, 'two refused attempts');
    expect(fixed.errors.every((e) => e.code === 'invalid_token' && e.status === 401)).toBe(true);
    expect(fixed.client.state).toBe('connecting');
    await fixed.client.close();
    expect(fixed.client.state).toBe('closed');
  });

  it('a token provider refreshes the token before exp: the socket outlives the first token, no 3001', async () => {
    const calls: { at: number; exp: number }[] = [];
    const watched = await opened({
      token: async () => {
        const exp = nowSeconds() + 4;
        calls.push({ at: Date.now(), exp });
        return jwt({ mode: 'r', exp });
      },
      refreshBeforeExpirySeconds: 2,
      reconnect: QUICK,
    });
    const { client, wire, states } = watched;
    const box = inbox();
    await within(client.subscribe('fresh', { onMessage: box.onMessage }).ready, WAIT_MS, 'subscribed');
    const firstExp = calls[0]?.exp ?? 0;
    // An event, not a sleep: the provider is called again after the first token's exp.
    await until(() => calls.some((c) => c.at > firstExp * 1000), 10_000, 'a refresh after the first exp');
    await within(client.ping(), WAIT_MS, 'ping after the first exp');
    await notify('fresh', 'still here');
    await box.count(1, 'a message after the first exp');
    expect(wire.sockets, 'one socket all along').toHaveLength(1);
    expect(states).toEqual(['open']);
    const refreshes = framesOfType(wire.sent, 'refresh');
    expect(refreshes.length).toBeGreaterThanOrEqual(1);
    expect(framesOfType(wire.received, 'refreshed').length).toBeGreaterThanOrEqual(1);
    expect(framesOfType(wire.received, 'refreshed')[0]).toEqual({ type: 'refreshed', id: refreshes[0]?.id, exp: calls[1]?.exp });
    expect(watched.errors).toEqual([]);
  });

  it('a refresh whose new token no longer allows a channel: that subscription ends with an unsubscribed event, the others stay', async () => {
    let calls = 0;
    const watched = await opened({
      token: async () =>
        ++calls === 1 ? jwt({ mode: 'r', channels: ['kept', 'taken'], exp: nowSeconds() + 3 }) : jwt({ mode: 'r', channels: ['kept'], exp: nowSeconds() + 3600 }),
      refreshBeforeExpirySeconds: 2,
    });
    const { client } = watched;
    const kept = inbox();
    const taken = client.subscribe('taken', { onMessage: () => undefined });
    const keptSub = client.subscribe('kept', { onMessage: kept.onMessage });
    await within(Promise.all([taken.ready, keptSub.ready]), WAIT_MS, 'subscribed');
    await until(() => watched.unsubscribed.length === 1, 10_000, 'unsubscribed event');
    expect(watched.unsubscribed[0]).toEqual({ channel: 'taken', reason: 'not allowed by the new token', subscription: taken });
    expect(taken.state).toBe('ended');
    expect(keptSub.state).toBe('active');
    await notify('kept', 'still');
    await kept.count(1, 'kept subscription');
    expect(watched.states).toEqual(['open']);
  });

  it('a fixed token that expires: closed 3001, an expired error event, state closed, no reconnect', async () => {
    const watched = await opened({ token: await jwt({ mode: 'rw', exp: nowSeconds() + 2 }), reconnect: QUICK });
    const sub = watched.client.subscribe('x', { onMessage: () => undefined });
    await within(sub.ready, WAIT_MS, 'subscribed');
    await until(() => watched.client.state === 'closed', 5_000, 'closed at exp');
    expect(watched.errors.map((e) => e.code)).toEqual(['expired']);
    expect(watched.states).toEqual(['open', 'closed']);
    expect(sub.state).toBe('ended');
    expect(watched.wire.sockets).toHaveLength(1);
    expect((await rejection(watched.client.publish('x', 1))).code).toBe('closed');
  });

  it('closed 3001 with a provider: reconnect with a fresh token and resubscribe', async () => {
    let calls = 0;
    const watched = await opened({
      // First token: 2 s. Refreshes fail while the first socket lives; after the 3001 close the provider gives an hour.
      token: async () => {
        calls++;
        if (calls === 1) return jwt({ mode: 'r', exp: nowSeconds() + 2 });
        if (watched.client.state === 'open') throw new Error('identity provider unavailable');
        return jwt({ mode: 'r', exp: nowSeconds() + 3600 });
      },
      refreshBeforeExpirySeconds: 1,
      reconnect: QUICK,
    });
    const box = inbox();
    const sub = watched.client.subscribe('again', { onMessage: box.onMessage });
    await within(sub.ready, WAIT_MS, 'subscribed');
    await until(() => watched.resubscribed.length === 1, 10_000, 'resubscribed after 3001');
    expect(watched.states).toEqual(['open', 'reconnecting', 'open']);
    expect(watched.errors.length).toBeGreaterThanOrEqual(1);
    expect(watched.errors.every((e) => e.code === 'token_unavailable')).toBe(true);
    expect(watched.wire.sockets).toHaveLength(2);
    await notify('again', 'after');
    await box.count(1, 'message on the new socket');
  });
});
