// Protocol v2 (PROTOCOL.md §9) end to end, on both transports: real pgws, real PostgreSQL, raw
// WebSocket frames (test/harness/v2.ts speaks them by hand). Every request and answer, every
// error code, filters, shared subscriptions, echo, refresh, expiry, the not-JSON rule, and v1
// and v2 sockets side by side on one server and one LISTEN. Database outages: faults.test.ts.
import { randomUUID } from 'node:crypto';
import type { JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, handshake } from './harness/client.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { watchChannel } from './harness/db-watch.js';
import { LISTEN_CHANNEL, startPgws, type TestServer } from './harness/pgws.js';
import { token } from './harness/tokens.js';
import { connectV2, openV2, type V2Client } from './harness/v2.js';
import { eventually, until, within } from './harness/within.js';

let db: TestDatabase;
let srv: TestServer;
const sentTokens = new Set<string>();

async function jwt(claims: JWTPayload): Promise<string> {
  const text = await token(claims);
  sentTokens.add(text);
  return text;
}

/** A v2 socket on `/` with its token in a pgws.bearer subprotocol. */
async function v2(claims: JWTPayload, server: TestServer = srv): Promise<V2Client> {
  return connectV2(`${server.url}/`, await jwt(claims));
}

/** A notification for `channel` as database code sends it; returns its text. */
async function notify(channel: string, payload: unknown): Promise<string> {
  const text = JSON.stringify({ channel, payload });
  await db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${text})`;
  return text;
}

async function subscribe(client: V2Client, channel: string, extra: Record<string, unknown> = {}): Promise<string> {
  const answer = await client.request({ type: 'subscribe', channel, ...extra });
  expect(answer).toMatchObject({ type: 'subscribed', channel });
  return answer.sub as string;
}

/** A fresh channel name per test, so notifications of one test never reach another's sockets. */
const fresh = (): string => `c-${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  db = await createTestDatabase();
  srv = await startPgws(db.uri, { maxSubscriptions: 5 });
});

afterAll(() => {
  // No token of this file may reach a log line, at debug level.
  for (const line of srv.rawLogs) for (const t of sentTokens) expect(line).not.toContain(t);
});

describe('opening a v2 socket', () => {
  it('selects pgws.v2 for a bearer subprotocol on / and for a token in the path /<jwt>', async () => {
    const bearer = await v2({ mode: 'r' });
    expect(bearer.ws.protocol).toBe('pgws.v2');
    const inPath = await connectV2(`${srv.url}/${await jwt({ mode: 'r' })}`);
    expect(inPath.ws.protocol).toBe('pgws.v2');
    expect(await inPath.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
  });

  it('is never refused for its channels: a token that lists none opens (v1 /<jwt> would be 403)', async () => {
    const none = await jwt({ mode: 'r' });
    const v1 = await handshake(`${srv.url}/${none}`);
    expect(v1).toMatchObject({ ok: false, status: 403 });
    const client = await connectV2(`${srv.url}/`, none);
    await subscribe(client, 'anything');
  });

  it('still refuses a bad token before the upgrade (401)', async () => {
    const result = await openV2(`${srv.url}/`, 'not.a.token');
    expect(result).toMatchObject({ ok: false, status: 401 });
  });
});

describe('subscribe, message, unsubscribe', () => {
  it('answers subscribed with the id, channel, a sub and offset null, then sends message frames that splice the notification in verbatim', async () => {
    const channel = fresh();
    const client = await v2({ mode: 'r' });
    const answer = await client.request({ type: 'subscribe', id: 'first', channel });
    expect(answer).toEqual({ type: 'subscribed', id: 'first', channel, sub: expect.any(String), offset: null });
    const sub = answer.sub as string;
    const text = await notify(channel, { price: 12.5, note: 'héllo "quoted"' });
    const frame = await client.next();
    expect(frame).toEqual({ type: 'message', sub, channel, data: JSON.parse(text) });
    // Verbatim: the notification's own text sits inside the frame.
    expect(client.texts.at(-1)).toBe(`{"type":"message","sub":${JSON.stringify(sub)},"channel":${JSON.stringify(channel)},"data":${text}}`);
  });

  it('carries a notification that is not JSON as a JSON string (routed to the listen channel, as in v1)', async () => {
    const client = await v2({ mode: 'r' });
    await subscribe(client, LISTEN_CHANNEL);
    const text = `plain text ${randomUUID()}`;
    await db.sql`SELECT pg_notify(${LISTEN_CHANNEL}, ${text})`;
    let frame = await client.next();
    // Other files' notifications do not reach this database; this file's JSON ones carry a channel.
    while (frame.data !== text) frame = await client.next();
    expect(frame).toMatchObject({ type: 'message', channel: LISTEN_CHANNEL, data: text });
  });

  it('echoes numeric and string ids by value, and leaves id out of a success answer to a request without one', async () => {
    const client = await v2({ mode: 'r' });
    expect(await client.request({ type: 'ping', id: 7 })).toEqual({ type: 'pong', id: 7 });
    expect(await client.request({ type: 'ping', id: 'abc' })).toEqual({ type: 'pong', id: 'abc' });
    client.sendRaw('{"type":"ping"}');
    expect(await client.next()).toEqual({ type: 'pong' });
  });

  it('answers since with recovered false and offset null while there is no journal (live messages only)', async () => {
    const client = await v2({ mode: 'r' });
    const channel = fresh();
    const answer = await client.request({ type: 'subscribe', channel, since: '41' });
    expect(answer).toMatchObject({ type: 'subscribed', channel, offset: null, recovered: false });
    await notify(channel, 'live');
    expect(await client.next()).toMatchObject({ type: 'message', sub: answer.sub, data: { payload: 'live' } });
  });

  it('unsubscribe ends the stream; an unknown sub is not_subscribed', async () => {
    const channel = fresh();
    const client = await v2({ mode: 'r' });
    const sub = await subscribe(client, channel);
    expect(await client.request({ type: 'unsubscribe', id: 2, sub })).toEqual({ type: 'unsubscribed', id: 2, sub });
    await notify(channel, 'after');
    await client.expectNothing();
    expect(await client.request({ type: 'unsubscribe', id: 3, sub })).toMatchObject({ type: 'error', id: 3, code: 'not_subscribed' });
  });

  it('one socket holds many subscriptions and gets one frame per matching subscription', async () => {
    const a = fresh();
    const b = fresh();
    const client = await v2({ mode: 'r' });
    const subA = await subscribe(client, a);
    const subB = await subscribe(client, b);
    const subA7 = await subscribe(client, a, { filter: { 'payload.room': 7 } });
    await notify(b, { room: 1 });
    expect(await client.next()).toMatchObject({ sub: subB, channel: b });
    await notify(a, { room: 7 });
    const two = [await client.next(), await client.next()];
    expect(two.map((f) => f.sub).sort()).toEqual([subA, subA7].sort());
    await client.expectNothing();
  });

  it('refuses a subscription over PGWS_MAX_SUBSCRIPTIONS with too_many_subscriptions; the socket stays open and the same triple again is no new one', async () => {
    const client = await v2({ mode: 'r' });
    const subs: string[] = [];
    for (let i = 0; i < 5; i++) subs.push(await subscribe(client, `many-${i}`));
    // The same triple again: the same sub, not a sixth subscription.
    expect(await client.request({ type: 'subscribe', channel: 'many-0' })).toMatchObject({ type: 'subscribed', sub: subs[0] });
    expect(await client.request({ type: 'subscribe', id: 9, channel: 'many-5' })).toMatchObject({
      type: 'error',
      id: 9,
      code: 'too_many_subscriptions',
      message: 'at most 5 subscriptions per socket',
    });
    await client.request({ type: 'unsubscribe', sub: subs[0] });
    await subscribe(client, 'many-5');
  });
});

describe('filters', () => {
  it('delivers exactly the notifications a filter matches, in order, to every socket that shares it, with the same frame text', async () => {
    const channel = fresh();
    const filter = { 'payload.room': 7, 'payload.status': { in: ['open', 'held'] }, 'payload.price': { gte: 10, lt: 100 }, 'payload.tag': { ne: 'spam' } };
    // The same filter written differently: members and list in another order.
    const rewritten = { 'payload.tag': { ne: 'spam' }, 'payload.price': { lt: 100, gte: 10 }, 'payload.status': { in: ['held', 'open'] }, 'payload.room': 7 };
    const one = await v2({ mode: 'r' });
    const two = await v2({ mode: 'r' });
    const everything = await v2({ mode: 'r' });
    const subOne = await subscribe(one, channel, { filter });
    const subTwo = await subscribe(two, channel, { filter: rewritten });
    expect(subTwo).toBe(subOne);
    const subAll = await subscribe(everything, channel);
    expect(subAll).not.toBe(subOne);

    const payloads = [
      { room: 7, status: 'open', price: 10, tag: 'x' },
      { room: 7, status: 'open', price: 100 },
      { room: 8, status: 'open', price: 50 },
      { room: 7, status: 'closed', price: 50 },
      { room: 7, status: 'held', price: 99.5, tag: 'spam' },
      { room: 7, status: 'held', price: 99.5, tag: 'ok' },
      // ne needs the field: a missing tag does not match.
      { room: 7, status: 'held', price: 50 },
      'not an object',
    ];
    for (const payload of payloads) await notify(channel, payload);
    const matching = [payloads[0], payloads[5]];
    for (const client of [one, two]) {
      for (const payload of matching) expect((await client.next()).data).toEqual({ channel, payload });
      await client.expectNothing();
    }
    for (const payload of payloads) expect((await everything.next()).data).toEqual({ channel, payload });
    const frameTexts = (client: V2Client): string[] => client.texts.filter((t) => t.startsWith('{"type":"message"'));
    expect(frameTexts(one)).toEqual(frameTexts(two));
  });

  it('matches exists and a notification that is not an object only with the empty filter', async () => {
    const channel = fresh();
    const client = await v2({ mode: 'r' });
    const has = await subscribe(client, channel, { filter: { 'payload.owner': { exists: true } } });
    const lacks = await subscribe(client, channel, { filter: { 'payload.owner': { exists: false } } });
    await notify(channel, { owner: null });
    expect(await client.next()).toMatchObject({ sub: has });
    await notify(channel, { other: 1 });
    expect(await client.next()).toMatchObject({ sub: lacks });
    await notify(channel, 'a string payload runs through a non-object');
    expect(await client.next()).toMatchObject({ sub: lacks });
    await client.expectNothing();
  });

  it.each([
    ['not an object', [1, 2]],
    ['an unknown operator', { 'payload.a': { like: 'x%' } }],
    ['more than 20 conditions', Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`payload.f${i}`, i]))],
    ['over 4096 bytes', { 'payload.a': { in: Array.from({ length: 400 }, (_, i) => `value-${i}`) } }],
  ])('refuses a filter that is %s with bad_request; the socket stays open', async (_what, filter) => {
    const client = await v2({ mode: 'r' });
    const answer = await client.request({ type: 'subscribe', id: 'f', channel: 'chat', filter });
    expect(answer).toMatchObject({ type: 'error', id: 'f', code: 'bad_request', message: expect.any(String) });
    expect(await client.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
  });
});

describe('publish', () => {
  it('NOTIFYs the v1 envelope with the JSON payload as given, answers published after commit, and subscribers get it', async () => {
    const channel = fresh();
    const writer = await v2({ mode: 'rw', channels: [channel], sub: 'writer-1' });
    const reader = await v2({ mode: 'r' });
    const sub = await subscribe(reader, channel);
    const watch = await watchChannel(db.sql, LISTEN_CHANNEL, (p) => p.includes(channel));
    const payload = { text: 'hi', n: [1, 2.5, null], nested: { ok: true } };
    const answer = await writer.request({ type: 'publish', id: 'p1', channel, payload });
    expect(answer).toEqual({ type: 'published', id: 'p1' });
    const envelope = JSON.parse(await watch.next()) as Record<string, unknown>;
    expect(envelope).toMatchObject({ event: 'WebsocketMessage', channel, payload, claims: { mode: 'rw', sub: 'writer-1', message_delivered_at: expect.any(Number) } });
    const frame = await reader.next();
    expect(frame).toMatchObject({ type: 'message', sub, channel, data: envelope });
  });

  it('reaches v1 sockets of the channel too, with the envelope text as v1 sockets always get it', async () => {
    const channel = fresh();
    const v1 = await connect(`${srv.url}/${channel}/${await jwt({ mode: 'r' })}`);
    const writer = await v2({ mode: 'w' });
    await writer.request({ type: 'publish', channel, payload: 'a string stays a string' });
    expect(JSON.parse(await v1.next())).toMatchObject({ event: 'WebsocketMessage', channel, payload: 'a string stays a string' });
  });

  it('refuses an envelope over the NOTIFY limit with payload_too_large, sends nothing, and keeps the socket open', async () => {
    const channel = fresh();
    const writer = await v2({ mode: 'rw' });
    await subscribe(writer, channel);
    const answer = await writer.request({ type: 'publish', id: 1, channel, payload: 'x'.repeat(7900) });
    expect(answer).toMatchObject({ type: 'error', id: 1, code: 'payload_too_large', message: expect.stringContaining('the limit is 7999') });
    await writer.request({ type: 'publish', id: 2, channel, payload: 'small' });
    expect(await writer.next()).toMatchObject({ type: 'message', data: { payload: 'small' } });
  });

  it('with echo false, a subscription skips what this socket published and still gets what others publish', async () => {
    const channel = fresh();
    const self = await v2({ mode: 'rw' });
    const other = await v2({ mode: 'rw' });
    const quiet = await subscribe(self, channel, { echo: false });
    const loud = await subscribe(other, channel);
    await self.request({ type: 'publish', channel, payload: 'mine' });
    expect(await other.next()).toMatchObject({ sub: loud, data: { payload: 'mine' } });
    await other.request({ type: 'publish', channel, payload: 'theirs' });
    expect(await self.next()).toMatchObject({ sub: quiet, data: { payload: 'theirs' } });
    expect(await other.next()).toMatchObject({ sub: loud, data: { payload: 'theirs' } });
    await self.expectNothing();
    // Echo on (the default) for the same socket: its own publish comes back.
    const own = await subscribe(self, channel);
    await self.request({ type: 'publish', channel, payload: 'mine again' });
    expect(await self.next()).toMatchObject({ sub: own, data: { payload: 'mine again' } });
    await self.expectNothing();
  });
});

describe('forbidden', () => {
  it.each([
    ['subscribe to a channel the token does not list', { mode: 'r', channels: ['allowed'] }, { type: 'subscribe', channel: 'other' }],
    ['subscribe with mode w', { mode: 'w' }, { type: 'subscribe', channel: 'allowed' }],
    ['publish to a channel the token does not list', { mode: 'rw', channel: 'allowed' }, { type: 'publish', channel: 'other', payload: 1 }],
    ['publish with mode r', { mode: 'r' }, { type: 'publish', channel: 'allowed', payload: 1 }],
  ])('refuses to %s with forbidden; the socket stays open', async (_what, claims, request) => {
    const client = await v2(claims);
    expect(await client.request({ ...request, id: 'x' })).toMatchObject({ type: 'error', id: 'x', code: 'forbidden' });
    expect(await client.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
  });

  it('allows the channel claim and the channels claim alike', async () => {
    const client = await v2({ mode: 'rw', channel: 'one', channels: ['two'] });
    await subscribe(client, 'one');
    await subscribe(client, 'two');
    expect(await client.request({ type: 'publish', channel: 'two', payload: null })).toMatchObject({ type: 'published' });
  });
});

describe('bad requests', () => {
  it.each([
    ['not JSON', 'hello', null],
    ['not an object', '[1,2]', null],
    ['an unknown type', '{"type":"subcribe","id":4}', 4],
    ['a subscribe without channel', '{"type":"subscribe","id":5}', 5],
    ['a publish without payload', '{"type":"publish","id":6,"channel":"chat"}', 6],
    ['a bad since', '{"type":"subscribe","id":7,"channel":"chat","since":"-1"}', 7],
  ])('answers %s with bad_request and the id it could read; the socket stays open', async (_what, text, id) => {
    const client = await v2({ mode: 'rw' });
    client.sendRaw(text);
    expect(await client.next()).toMatchObject({ type: 'error', id, code: 'bad_request', message: expect.any(String) });
    expect(await client.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
  });

  it('answers call with not_found (calls are not enabled)', async () => {
    const client = await v2({ mode: 'rw' });
    expect(await client.request({ type: 'call', id: 5, fn: 'anything', args: {} })).toMatchObject({ type: 'error', id: 5, code: 'not_found' });
  });

  it('closes 1008 after more than 10 frames in a row that are not JSON; a JSON frame between resets the count', async () => {
    const client = await v2({ mode: 'r' });
    for (let i = 0; i < 10; i++) client.sendRaw('nope');
    for (let i = 0; i < 10; i++) expect(await client.next()).toMatchObject({ code: 'bad_request' });
    expect(await client.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
    for (let i = 0; i < 11; i++) client.sendRaw('nope');
    const closed = await within(client.closed, 5000, 'close');
    expect(closed).toEqual({ code: 1008, reason: 'More than 10 frames in a row that are not JSON' });
  });
});

describe('refresh and expiry', () => {
  it('swaps the token: refreshed carries the new exp, and subscriptions the new token does not allow end with a reason', async () => {
    const client = await v2({ mode: 'r', channels: ['keep', 'drop'] });
    const keep = await subscribe(client, 'keep');
    const drop = await subscribe(client, 'drop');
    const exp = Math.floor(Date.now() / 1000) + 3600;
    const answer = await client.request({ type: 'refresh', id: 'r', token: await jwt({ mode: 'r', channels: ['keep'], exp }) });
    expect(answer).toEqual({ type: 'refreshed', id: 'r', exp });
    expect(await client.next()).toEqual({ type: 'unsubscribed', sub: drop, reason: 'not allowed by the new token' });
    await notify('drop', 'gone');
    await notify('keep', 'kept');
    expect(await client.next()).toMatchObject({ sub: keep, data: { payload: 'kept' } });
    await client.expectNothing();
    expect(await client.request({ type: 'subscribe', id: 'x', channel: 'drop' })).toMatchObject({ code: 'forbidden' });
  });

  it('ends every subscription when the new token\'s mode is w, and allows publishing then', async () => {
    const client = await v2({ mode: 'r' });
    const a = await subscribe(client, fresh());
    const b = await subscribe(client, fresh(), { filter: { 'payload.k': 1 } });
    expect(await client.request({ type: 'refresh', token: await jwt({ mode: 'w' }) })).toMatchObject({ type: 'refreshed', exp: null });
    const ended = [await client.next(), await client.next()];
    expect(ended.map((f) => f.sub).sort()).toEqual([a, b].sort());
    for (const frame of ended) expect(frame).toMatchObject({ type: 'unsubscribed', reason: 'not allowed by the new token' });
    expect(await client.request({ type: 'publish', channel: fresh(), payload: 1 })).toMatchObject({ type: 'published' });
  });

  it('refuses a bad token with invalid_token and keeps the old one and its subscriptions', async () => {
    const channel = fresh();
    const client = await v2({ mode: 'r' });
    const sub = await subscribe(client, channel);
    const expired = await jwt({ mode: 'r', exp: Math.floor(Date.now() / 1000) - 10 });
    expect(await client.request({ type: 'refresh', id: 1, token: expired })).toMatchObject({ type: 'error', id: 1, code: 'invalid_token', message: expect.stringContaining('Token expired') });
    expect(await client.request({ type: 'refresh', id: 2, token: 'garbage' })).toMatchObject({ type: 'error', id: 2, code: 'invalid_token' });
    await notify(channel, 'still here');
    expect(await client.next()).toMatchObject({ sub, data: { payload: 'still here' } });
  });

  it('closes 3001 when the token expires, and a refresh before then moves the deadline', async () => {
    const soon = Math.floor(Date.now() / 1000) + 2;
    const expiring = await v2({ mode: 'r', exp: soon });
    const refreshed = await v2({ mode: 'r', exp: soon });
    expect(await refreshed.request({ type: 'refresh', token: await jwt({ mode: 'r', exp: soon + 600 }) })).toMatchObject({ type: 'refreshed', exp: soon + 600 });
    const closed = await within(expiring.closed, 5000, 'the expiring socket closed');
    expect(closed).toEqual({ code: 3001, reason: 'JWT expired' });
    // The old deadline has passed: the refreshed socket is open and answers.
    await until(() => Date.now() > (soon + 1) * 1000, 5000, 'past the old exp');
    expect(await refreshed.request({ type: 'ping' })).toMatchObject({ type: 'pong' });
  });
});

describe('v1 and v2 on one server', () => {
  it('share the LISTEN: one notification reaches a v1 socket as its text and a v2 socket as a message frame', async () => {
    const channel = fresh();
    const v1 = await connect(`${srv.url}/${channel}/${await jwt({ mode: 'r' })}`);
    const client = await v2({ mode: 'r' });
    const sub = await subscribe(client, channel);
    const text = await notify(channel, 'both');
    expect(await v1.next()).toBe(text);
    expect(await client.next()).toMatchObject({ sub, data: JSON.parse(text) });
  });

  it('a v1 channel named like a v2 topic never receives v2 frames (topics cannot collide)', async () => {
    const channel = fresh();
    const client = await v2({ mode: 'r' });
    const sub = await subscribe(client, channel);
    // U+0002 followed by the sub id: what the v2 subscription's engine topic is made of.
    const lookalike = `\u0002${sub}`;
    const v1 = await connect(`${srv.url}/${encodeURIComponent(lookalike)}/${await jwt({ mode: 'r' })}`);
    const text = await notify(channel, 'for v2 only');
    expect(await client.next()).toMatchObject({ sub, data: JSON.parse(text) });
    await v1.expectNoMessage();
    const own = await notify(lookalike, 'for the lookalike');
    expect(await v1.next()).toBe(own);
    await client.expectNothing();
  });

  it('counts subscriptions for /metrics: distinct ones and held ones, back down when sockets close', async () => {
    const gauge = async (name: string): Promise<number> => {
      const text = await srv.server.metrics.registry.getSingleMetricAsString(name);
      return Number(/ (\d+)$/m.exec(text)?.[1]);
    };
    const before = { distinct: await gauge('pgws_v2_subscriptions'), held: await gauge('pgws_v2_subscriptions_held') };
    const channel = fresh();
    const a = await v2({ mode: 'r' });
    const b = await v2({ mode: 'r' });
    await subscribe(a, channel);
    await subscribe(b, channel);
    await subscribe(b, channel, { filter: { 'payload.x': 1 } });
    expect(await gauge('pgws_v2_subscriptions')).toBe(before.distinct + 2);
    expect(await gauge('pgws_v2_subscriptions_held')).toBe(before.held + 3);
    await a.close();
    await b.close();
    await eventually(async () => ((await gauge('pgws_v2_subscriptions_held')) === before.held ? true : undefined), 5000, 'held back down');
    expect(await gauge('pgws_v2_subscriptions')).toBe(before.distinct);
  });

  it('releases a closed socket\'s subscriptions: the next subscriber of the triple gets a new sub', async () => {
    const channel = fresh();
    const first = await v2({ mode: 'r' });
    const sub = await subscribe(first, channel);
    const open = srv.server.socketCount();
    await first.close();
    await until(() => srv.server.socketCount() === open - 1, 5000, 'the server saw the close');
    const second = await v2({ mode: 'r' });
    expect(await subscribe(second, channel)).not.toBe(sub);
  });
});
