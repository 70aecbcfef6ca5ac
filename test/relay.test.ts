// Notifications to sockets and frames to NOTIFYs, end to end: real PostgreSQL,
// real pgws, real WebSocket clients.
import { beforeAll, describe, expect, it } from 'vitest';
import { connect } from './harness/client.js';
import { createTestDatabase, type TestDatabase } from './harness/db.js';
import { watchChannel } from './harness/db-watch.js';
import { LISTEN_CHANNEL, startPgws, type TestServer } from './harness/pgws.js';
import { token } from './harness/tokens.js';

let db: TestDatabase;
let srv: TestServer;

beforeAll(async () => {
  db = await createTestDatabase();
  srv = await startPgws(db.uri);
});

const notify = (payload: string, channel = LISTEN_CHANNEL): Promise<unknown> =>
  db.sql`SELECT pg_notify(${channel}, ${payload})`;

describe('database to sockets', () => {
  it('delivers a pg_notify JSON payload verbatim to readers of its channel', async () => {
    const reader = await connect(`${srv.url}/chat/${await token({ mode: 'r' })}`);
    const payload = JSON.stringify({ channel: 'chat', payload: 'hello' });
    await notify(payload);
    expect(await reader.next()).toBe(payload);
  });

  it('delivers SQL built with json_build_object, as psql users write it', async () => {
    const reader = await connect(`${srv.url}/room%201/${await token({ mode: 'rw' })}`);
    await db.sql.unsafe(
      `SELECT pg_notify('${LISTEN_CHANNEL}', json_build_object('channel', 'room 1', 'payload', 'hi there')::text)`,
    );
    const text = await reader.next();
    expect(JSON.parse(text)).toEqual({ channel: 'room 1', payload: 'hi there' });
    expect(text).toBe('{"channel" : "room 1", "payload" : "hi there"}');
  });

  it.each([
    ['not JSON', 'plain text'],
    ['a JSON array', '["chat"]'],
    ['an object without channel', '{"payload":"x"}'],
    ['an object whose channel is not a string', '{"channel":42}'],
  ])('routes %s to the listen channel name', async (_label, payload) => {
    const onListen = await connect(`${srv.url}/${LISTEN_CHANNEL}/${await token({ mode: 'r' })}`);
    const onChat = await connect(`${srv.url}/chat/${await token({ mode: 'r' })}`);
    await notify(payload);
    expect(await onListen.next()).toBe(payload);
    await onChat.expectNoMessage(200);
  });

  it('gives nothing to a write-only socket', async () => {
    const writer = await connect(`${srv.url}/chat/${await token({ mode: 'w' })}`);
    const reader = await connect(`${srv.url}/chat/${await token({ mode: 'r' })}`);
    await notify(JSON.stringify({ channel: 'chat', payload: 'x' }));
    await reader.next();
    await writer.expectNoMessage(200);
  });
});

describe('sockets to the database', () => {
  it('turns a frame into the postgres-websockets envelope, with claims and message_delivered_at', async () => {
    const watch = await watchChannel(db.sql, LISTEN_CHANNEL);
    const writer = await connect(`${srv.url}/chat/${await token({ mode: 'w', role: 'alice', exp: 4102444800 })}`);
    const before = Date.now() / 1000;
    writer.send('hello db');
    const envelope = JSON.parse(await watch.next()) as Record<string, unknown> & { claims: Record<string, unknown> };
    expect(envelope).toMatchObject({
      event: 'WebsocketMessage',
      channel: 'chat',
      payload: 'hello db',
      claims: { mode: 'w', role: 'alice', exp: 4102444800 },
    });
    expect(Object.keys(envelope)).toEqual(['event', 'channel', 'payload', 'claims']);
    expect(envelope.claims.message_delivered_at).toBeGreaterThanOrEqual(Math.floor(before));
    expect(envelope.claims.message_delivered_at).toBeLessThanOrEqual(Date.now() / 1000 + 1);
  });

  it('relays an rw frame back to readers of the channel, including the sender', async () => {
    const rw = await connect(`${srv.url}/echo/${await token({ mode: 'rw' })}`);
    const reader = await connect(`${srv.url}/echo/${await token({ mode: 'r' })}`);
    rw.send('ping');
    const seen = [JSON.parse(await reader.next()), JSON.parse(await rw.next())];
    for (const env of seen) expect(env).toMatchObject({ event: 'WebsocketMessage', channel: 'echo', payload: 'ping' });
  });

  it('does not relay frames from a read-only socket', async () => {
    const watch = await watchChannel(db.sql, LISTEN_CHANNEL);
    const reader = await connect(`${srv.url}/quiet/${await token({ mode: 'r' })}`);
    const other = await connect(`${srv.url}/quiet/${await token({ mode: 'r' })}`);
    reader.send('should not be relayed');
    await reader.expectNoMessage(300);
    await other.expectNoMessage(0);
    expect(watch.seen.filter((p) => p.includes('should not be relayed'))).toEqual([]);
  });

  it('sends one frame of a two-channel socket to readers of both channels', async () => {
    const both = await connect(`${srv.url}/${await token({ mode: 'w', channels: ['chan-a', 'chan-b'] })}`);
    const a = await connect(`${srv.url}/chan-a/${await token({ mode: 'r' })}`);
    const b = await connect(`${srv.url}/chan-b/${await token({ mode: 'r' })}`);
    both.send('to both');
    expect(await a.nextJson()).toMatchObject({ channel: 'chan-a', payload: 'to both' });
    expect(await b.nextJson()).toMatchObject({ channel: 'chan-b', payload: 'to both' });
  });

  it('keeps the order of frames from one socket', async () => {
    const writer = await connect(`${srv.url}/ordered/${await token({ mode: 'w' })}`);
    const reader = await connect(`${srv.url}/ordered/${await token({ mode: 'r' })}`);
    const sent = Array.from({ length: 50 }, (_, i) => `m${i}`);
    for (const m of sent) writer.send(m);
    const got: string[] = [];
    for (let i = 0; i < sent.length; i++) got.push(((await reader.nextJson()) as { payload: string }).payload);
    expect(got).toEqual(sent);
  });

  it('reads binary frames as UTF-8 text', async () => {
    const writer = await connect(`${srv.url}/bin/${await token({ mode: 'rw' })}`);
    writer.send(Buffer.from('héllo binary', 'utf8'), { binary: true });
    expect(await writer.nextJson()).toMatchObject({ payload: 'héllo binary' });
  });

  it('closes with 1007 on a binary frame that is not UTF-8, and sends nothing', async () => {
    const watch = await watchChannel(db.sql, LISTEN_CHANNEL, (p) => p.includes('"channel":"bad-utf8"'));
    const writer = await connect(`${srv.url}/bad-utf8/${await token({ mode: 'w' })}`);
    writer.send(Buffer.from([0xc3, 0x28, 0xff]), { binary: true });
    expect((await writer.closed).code).toBe(1007);
    // The watch shares a LISTEN connection with earlier tests, whose NOTIFYs may still
    // be arriving: only this socket's channel counts ("does not happen" window).
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(watch.seen.filter((p) => p.includes('"channel":"bad-utf8"'))).toEqual([]);
  });

  it('closes with 1009 when the NOTIFY envelope would be over 8000 bytes, and sends nothing', async () => {
    const watch = await watchChannel(db.sql, LISTEN_CHANNEL, (p) => p.includes('"channel":"big"'));
    const writer = await connect(`${srv.url}/big/${await token({ mode: 'w' })}`);
    writer.send('x'.repeat(7950));
    const closed = await writer.closed;
    expect(closed.code).toBe(1009);
    expect(closed.reason).toMatch(/too big/i);
    await expect(watch.next(300)).rejects.toThrow();
  });

  it('closes with 1009 a frame over the socket limit', async () => {
    const writer = await connect(`${srv.url}/big/${await token({ mode: 'w' })}`);
    writer.send('y'.repeat(20_000));
    expect((await writer.closed).code).toBe(1009);
  });
});

describe('meta channel', () => {
  it('announces ConnectionOpen and ConnectionClose with the socket channels and claims', async () => {
    const metaSrv = await startPgws(db.uri, { metaChannel: 'server-events' });
    const watcher = await connect(`${metaSrv.url}/server-events/${await token({ mode: 'r' })}`);
    // The watcher's own ConnectionOpen arrives first.
    expect(await watcher.nextJson()).toMatchObject({ event: 'ConnectionOpen', channel: 'server-events', payload: 'server-events' });
    const guest = await connect(`${metaSrv.url}/${await token({ mode: 'rw', channels: ['lobby', 'games'], role: 'guest' })}`);
    const opened = await watcher.nextJson<{ event: string; channel: string; payload: string; claims: Record<string, unknown> }>();
    expect(opened).toMatchObject({ event: 'ConnectionOpen', channel: 'server-events', payload: 'lobby,games', claims: { mode: 'rw', role: 'guest' } });
    expect(typeof opened.claims.message_delivered_at).toBe('number');
    await guest.close();
    expect(await watcher.nextJson()).toMatchObject({ event: 'ConnectionClose', channel: 'server-events', payload: 'lobby,games' });
  });
});
