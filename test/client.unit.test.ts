// pgws/client (client/src/index.ts) without a server: the backoff formula, reading `exp` from a
// JWT, and the parts of the subscription bookkeeping that a real server cannot be made to show
// on demand (journal offsets and `since` while pgws has no journal, replays, answers that cross
// an unsubscribe). A scripted WebSocket stands in for the server: each test plays the server's
// frames by hand, in the order the protocol allows.
import { describe, expect, it } from 'vitest';
import { backoffDelay, connect, PgwsError, tokenExpiry, type Json, type PgwsClient, type WebSocketLike } from '../client/src/index.js';
import { token } from './harness/tokens.js';
import { until, within } from './harness/within.js';

const WAIT_MS = 2_000;

describe('backoffDelay', () => {
  it.each([
    // attempt, options, random, delay
    [0, {}, 0, 500],
    [0, {}, 1, 250],
    [1, {}, 0, 1000],
    [3, {}, 0, 4000],
    [10, {}, 0, 30_000],
    [10, {}, 1, 15_000],
    [2, { initialDelayMs: 100, factor: 3, jitter: 0 }, 0.7, 900],
    [5, { initialDelayMs: 100, maxDelayMs: 1000, jitter: 0.2 }, 0.5, 900],
    [60, {}, 0, 30_000],
  ])('attempt %i with %j and random %d waits %i ms', (attempt, options, random, delay) => {
    expect(backoffDelay(attempt, options, () => random)).toBe(delay);
  });
});

describe('tokenExpiry', () => {
  it('reads exp from a signed token, also with non-ASCII claims', async () => {
    expect(tokenExpiry(await token({ mode: 'r', exp: 1_900_000_000 }))).toBe(1_900_000_000);
    expect(tokenExpiry(await token({ mode: 'r', name: 'Zoë 東京 🙂', exp: 1_800_000_001 }))).toBe(1_800_000_001);
  });

  it.each([
    ['no exp', async () => token({ mode: 'r' })],
    ['exp not a number', async () => token({ mode: 'r', exp: '1900000000' as unknown as number })],
    ['not a JWT', async () => 'not-a-token'],
    ['payload not base64url', async () => 'a.b*c.d'],
    ['payload not JSON', async () => `x.${Buffer.from('not json').toString('base64url')}.y`],
    ['payload not UTF-8', async () => `x.${Buffer.from([0xff, 0xfe, 0x7b]).toString('base64url')}.y`],
    ['empty', async () => ''],
  ])('%s: undefined', async (_name, make) => {
    expect(tokenExpiry(await make())).toBeUndefined();
  });

  it('accepts padded base64url and the plain base64 alphabet', () => {
    const payload = Buffer.from(JSON.stringify({ exp: 42, x: '??>>' })).toString('base64');
    expect(payload).toMatch(/[+/=]/);
    expect(tokenExpiry(`h.${payload}.s`)).toBe(42);
  });
});

// ---- A scripted server

type Frame = Record<string, Json>;

class ScriptedSocket implements WebSocketLike {
  static all: ScriptedSocket[] = [];
  protocol = '';
  readonly sent: Frame[] = [];
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { readonly data: unknown }) => void) | null = null;
  onclose: ((event: { readonly code: number; readonly reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  closed = false;

  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {
    ScriptedSocket.all.push(this);
  }

  send(data: string): void {
    this.sent.push(JSON.parse(data) as Frame);
  }

  close(code = 1000, reason = ''): void {
    if (this.closed) return;
    this.closed = true;
    queueMicrotask(() => this.onclose?.({ code, reason }));
  }

  // The server's side
  accept(): void {
    this.protocol = 'pgws.v2';
    this.onopen?.({});
  }

  push(frame: Frame): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  drop(code = 1001, reason = 'server shutting down'): void {
    this.closed = true;
    this.onclose?.({ code, reason });
  }

  /** The last frame of `type` the client sent (waits for it). */
  async next(type: string, count = 1): Promise<Frame> {
    await until(() => this.sent.filter((f) => f.type === type).length >= count, WAIT_MS, `client sends ${type} #${count}`);
    return this.sent.filter((f) => f.type === type)[count - 1] as Frame;
  }
}

async function scripted(): Promise<{ client: PgwsClient; socket: () => ScriptedSocket; reopen: () => Promise<ScriptedSocket> }> {
  ScriptedSocket.all = [];
  const client = connect('ws://scripted/', {
    WebSocket: ScriptedSocket,
    token: 'header.e30.signature',
    reconnect: { initialDelayMs: 0, jitter: 0 },
    heartbeatIntervalMs: 0,
    requestTimeoutMs: 500,
  });
  const socket = (): ScriptedSocket => {
    const last = ScriptedSocket.all.at(-1);
    if (!last) throw new Error('no socket yet');
    return last;
  };
  await until(() => ScriptedSocket.all.length === 1, WAIT_MS, 'socket created');
  socket().accept();
  const reopen = async (): Promise<ScriptedSocket> => {
    const count = ScriptedSocket.all.length;
    socket().drop();
    await until(() => ScriptedSocket.all.length === count + 1, WAIT_MS, 'new socket');
    socket().accept();
    return socket();
  };
  return { client, socket, reopen };
}

describe('subscription bookkeeping against a scripted server', () => {
  it('offers pgws.v2 and the bearer, in that order', async () => {
    const { client, socket } = await scripted();
    expect(socket().protocols).toEqual(['pgws.v2', 'pgws.bearer.header.e30.signature']);
    expect(client.state).toBe('open');
    await client.close();
  });

  it('after a reconnect: one subscribe per former server sub, since = the last offset seen; replayed duplicates are not delivered twice', async () => {
    const { client, socket, reopen } = await scripted();
    const got: [string, Json, string | undefined][] = [];
    const a = client.subscribe('chat', { filter: { 'payload.r': 1 }, onMessage: (d, m) => got.push(['a', d, m.offset]) });
    const b = client.subscribe('chat', { filter: { 'payload.r': 1 }, onMessage: (d, m) => got.push(['b', d, m.offset]) });
    const first = await socket().next('subscribe', 1);
    const second = await socket().next('subscribe', 2);
    socket().push({ type: 'subscribed', id: first.id ?? null, channel: 'chat', sub: 's1', offset: '7' });
    socket().push({ type: 'subscribed', id: second.id ?? null, channel: 'chat', sub: 's1', offset: '7' });
    await within(Promise.all([a.ready, b.ready]), WAIT_MS, 'ready');
    expect(a.offset, 'from the subscribed answer').toBe('7');
    socket().push({ type: 'message', sub: 's1', channel: 'chat', data: { n: 8 }, offset: '8' });
    socket().push({ type: 'message', sub: 's1', channel: 'chat', data: { n: 9 }, offset: '9' });
    expect(got).toEqual([
      ['a', { n: 8 }, '8'],
      ['b', { n: 8 }, '8'],
      ['a', { n: 9 }, '9'],
      ['b', { n: 9 }, '9'],
    ]);
    expect(a.offset).toBe('9');

    const resubscribed: [string, boolean][] = [];
    client.on('resubscribed', (e) => resubscribed.push([e.channel, e.recovered]));
    const next = await reopen();
    const again = await next.next('subscribe');
    expect(again).toEqual({ type: 'subscribe', id: expect.any(Number), channel: 'chat', filter: { 'payload.r': 1 }, since: '9' });
    expect(next.sent.filter((f) => f.type === 'subscribe'), 'one frame for the two local subscriptions').toHaveLength(1);
    next.push({ type: 'subscribed', id: again.id ?? null, channel: 'chat', sub: 's4', offset: '12', recovered: true });
    expect(resubscribed).toEqual([
      ['chat', true],
      ['chat', true],
    ]);
    // The replay, with one message the subscriptions already had (a server may send the boundary again).
    for (const n of [9, 10, 11]) next.push({ type: 'message', sub: 's4', channel: 'chat', data: { n }, offset: String(n) });
    expect(got.slice(4)).toEqual([
      ['a', { n: 10 }, '10'],
      ['b', { n: 10 }, '10'],
      ['a', { n: 11 }, '11'],
      ['b', { n: 11 }, '11'],
    ]);
    await client.close();
  });

  it('recovered false resets the offset to the answer\'s; history_unavailable falls back to a subscribe without since', async () => {
    const { client, socket, reopen } = await scripted();
    const sub = client.subscribe('feed', { onMessage: () => undefined });
    const first = await socket().next('subscribe');
    socket().push({ type: 'subscribed', id: first.id ?? null, channel: 'feed', sub: 's1', offset: null });
    await within(sub.ready, WAIT_MS, 'ready');
    expect(sub.offset).toBeUndefined();
    socket().push({ type: 'message', sub: 's1', channel: 'feed', data: 1, offset: '3' });
    expect(sub.offset).toBe('3');

    let next = await reopen();
    let again = await next.next('subscribe');
    expect(again.since).toBe('3');
    next.push({ type: 'subscribed', id: again.id ?? null, channel: 'feed', sub: 's1', offset: '500', recovered: false });
    expect(sub.offset, 'newest offset: the app reloads its state').toBe('500');

    next = await reopen();
    again = await next.next('subscribe');
    expect(again.since).toBe('500');
    next.push({ type: 'error', id: again.id ?? null, code: 'history_unavailable', message: 'no history' });
    const plain = await next.next('subscribe', 2);
    expect(plain).toEqual({ type: 'subscribe', id: expect.any(Number), channel: 'feed' });
    const events: boolean[] = [];
    client.on('resubscribed', (e) => events.push(e.recovered));
    next.push({ type: 'subscribed', id: plain.id ?? null, channel: 'feed', sub: 's2', offset: '501' });
    expect(events).toEqual([false]);
    expect(sub.state).toBe('active');
    await client.close();
  });

  it('the last local subscription of a sub goes while another subscribe on that channel is unanswered: unsubscribe waits, and is not sent when the answer names the same sub', async () => {
    const { client, socket } = await scripted();
    const a = client.subscribe('room', { onMessage: () => undefined });
    const first = await socket().next('subscribe');
    socket().push({ type: 'subscribed', id: first.id ?? null, channel: 'room', sub: 's1', offset: null });
    await within(a.ready, WAIT_MS, 'a ready');

    const b = client.subscribe('room', { onMessage: () => undefined });
    const second = await socket().next('subscribe', 2);
    let unsubscribedA = false;
    const leaving = a.unsubscribe().then(() => (unsubscribedA = true));
    await Promise.resolve();
    expect(socket().sent.filter((f) => f.type === 'unsubscribe'), 'not while the subscribe of b is unanswered').toEqual([]);
    expect(unsubscribedA).toBe(false);
    socket().push({ type: 'subscribed', id: second.id ?? null, channel: 'room', sub: 's1', offset: null });
    await within(leaving, WAIT_MS, 'a unsubscribed once b holds the sub');
    await within(b.ready, WAIT_MS, 'b ready');
    expect(socket().sent.filter((f) => f.type === 'unsubscribe'), 'b uses s1: the server must keep it').toEqual([]);

    const gone = b.unsubscribe();
    const unsubscribe = await socket().next('unsubscribe');
    expect(unsubscribe).toEqual({ type: 'unsubscribe', id: expect.any(Number), sub: 's1' });
    socket().push({ type: 'unsubscribed', id: unsubscribe.id ?? null, sub: 's1' });
    await within(gone, WAIT_MS, 'b unsubscribed');
    await client.close();
  });

  it('a subscribe answered too late: ready rejects timeout, and the late sub is unsubscribed on the server', async () => {
    const { client, socket } = await scripted();
    const sub = client.subscribe('slow', { onMessage: () => undefined });
    const frame = await socket().next('subscribe');
    const error = await sub.ready.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(PgwsError);
    expect(error).toMatchObject({ code: 'timeout' });
    expect(sub.state).toBe('ended');
    socket().push({ type: 'subscribed', id: frame.id ?? null, channel: 'slow', sub: 's9', offset: null });
    expect(await socket().next('unsubscribe')).toEqual({ type: 'unsubscribe', id: expect.any(Number), sub: 's9' });
    await client.close();
  });

  it('a handshake error with no close event after it (Node 20\'s undici WebSocket): the attempt fails at once and the next one starts', async () => {
    ScriptedSocket.all = [];
    const client = connect('ws://scripted/', { WebSocket: ScriptedSocket, reconnect: { initialDelayMs: 0, jitter: 0 }, heartbeatIntervalMs: 0 });
    const errors: PgwsError[] = [];
    client.on('error', (e) => errors.push(e));
    await until(() => ScriptedSocket.all.length === 1, WAIT_MS, 'first socket');
    expect(ScriptedSocket.all[0]?.protocols, 'no token: pgws.v2 alone (a cookie may carry it)').toEqual(['pgws.v2']);
    ScriptedSocket.all[0]?.onerror?.({ message: 'Received network error or non-101 status code.' });
    await until(() => ScriptedSocket.all.length === 2, WAIT_MS, 'second attempt without waiting for a close');
    expect(errors.map((e) => e.code)).toEqual(['connect_failed']);
    expect(ScriptedSocket.all[0]?.closed, 'the failed socket was closed by the client').toBe(true);
    ScriptedSocket.all[1]?.onerror?.({ message: 'Unexpected server response: 401' });
    await until(() => errors.length === 2, WAIT_MS, 'second error');
    expect(errors[1]).toMatchObject({ code: 'invalid_token', status: 401 });
    expect(client.state).toBe('connecting');
    await client.close();
  });

  it('an error frame with id null is an error event; unknown frame types are ignored', async () => {
    const { client, socket } = await scripted();
    const errors: PgwsError[] = [];
    client.on('error', (e) => errors.push(e));
    socket().push({ type: 'error', id: null, code: 'bad_request', message: 'not JSON: a request is one JSON object' });
    socket().push({ type: 'something-new', id: 1 });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ name: 'PgwsError', code: 'bad_request', message: 'not JSON: a request is one JSON object' });
    expect(client.state).toBe('open');
    await client.close();
  });
});
