// The routing rules alone, with plain-object sockets and a recording notifier:
// no engine, no database.
import { describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';
import { createRelay, routeNotification, type RelayNotifier, type Session } from '../src/relay.js';
import type { SendResult, TransportSocket } from '../src/transport/types.js';
import type { Grant } from '../src/types.js';

describe('routeNotification', () => {
  it.each([
    ['{"channel":"chat","payload":"x"}', 'chat'],
    ['  {"channel":"with space"}', 'with space'],
    ['{"channel":""}', ''],
    ['{"channel":1}', 'db'],
    ['{"channel":null}', 'db'],
    ['{"payload":"no channel"}', 'db'],
    ['["chat"]', 'db'],
    ['"chat"', 'db'],
    ['plain text', 'db'],
    ['{not json', 'db'],
    ['', 'db'],
  ])('%j goes to %j', (payload, expected) => {
    expect(routeNotification('db', payload)).toBe(expected);
  });
});

interface FakeSocket extends TransportSocket<Session> {
  readonly subscribed: string[];
  readonly closedWith: { code: number; reason: string }[];
}

function fakeSocket(session: Session): FakeSocket {
  const subscribed: string[] = [];
  const closedWith: { code: number; reason: string }[] = [];
  return {
    session,
    remoteAddress: '127.0.0.1',
    subscribed,
    closedWith,
    send: (): SendResult => 'sent',
    close: (code, reason) => void closedWith.push({ code, reason }),
    subscribe: (channel) => void subscribed.push(channel),
    bufferedAmount: () => 0,
  };
}

function setup(metaChannel?: string): { relay: ReturnType<typeof createRelay>; sent: string[][]; published: [string, string][]; fail: { on: boolean } } {
  const sent: string[][] = [];
  const published: [string, string][] = [];
  const fail = { on: false };
  const notifier: RelayNotifier = {
    notifyAll: async (_channel, payloads) => {
      if (fail.on) throw new Error('database down');
      sent.push([...payloads]);
    },
  };
  const relay = createRelay({
    listenChannel: 'listen',
    metaChannel,
    notifier,
    publish: (channel, text) => void published.push([channel, text]),
    log: createLogger('silent'),
    now: () => 1700000000.5,
  });
  return { relay, sent, published, fail };
}

const grant = (mode: Grant['mode'], channels: string[]): Grant => ({ mode, channels, claims: { mode, role: 'x' }, exp: undefined });
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('relay', () => {
  it.each([
    ['r', ['a', 'b']],
    ['rw', ['a', 'b']],
    ['w', []],
  ] as const)('a socket in mode %s subscribes to %j', (mode, expected) => {
    const { relay } = setup();
    const socket = fakeSocket(relay.newSession(grant(mode, ['a', 'b'])));
    relay.onOpen(socket);
    expect(socket.subscribed).toEqual(expected);
  });

  it('makes one envelope per channel, sent together in one call', async () => {
    const { relay, sent } = setup();
    const socket = fakeSocket(relay.newSession(grant('w', ['a', 'b'])));
    relay.onFrame(socket, 'hi');
    await settle();
    expect(sent).toHaveLength(1);
    expect(sent[0]?.map((p) => JSON.parse(p))).toEqual([
      { event: 'WebsocketMessage', channel: 'a', payload: 'hi', claims: { mode: 'w', role: 'x', message_delivered_at: 1700000000.5 } },
      { event: 'WebsocketMessage', channel: 'b', payload: 'hi', claims: { mode: 'w', role: 'x', message_delivered_at: 1700000000.5 } },
    ]);
  });

  it('ignores frames from a read-only socket', async () => {
    const { relay, sent } = setup();
    relay.onFrame(fakeSocket(relay.newSession(grant('r', ['a']))), 'hi');
    await settle();
    expect(sent).toEqual([]);
  });

  it('closes with 1009 and sends nothing when one envelope is too big', async () => {
    const { relay, sent } = setup();
    const socket = fakeSocket(relay.newSession(grant('w', ['a', 'b'.repeat(500)])));
    relay.onFrame(socket, 'z'.repeat(7500));
    await settle();
    expect(sent).toEqual([]);
    expect(socket.closedWith[0]?.code).toBe(1009);
  });

  it('closes with 1011 when the database refuses, and sends nothing more from that socket', async () => {
    const { relay, sent, fail } = setup();
    const socket = fakeSocket(relay.newSession(grant('w', ['a'])));
    fail.on = true;
    relay.onFrame(socket, 'one');
    await settle();
    fail.on = false;
    relay.onFrame(socket, 'two');
    await settle();
    expect(socket.closedWith).toEqual([{ code: 1011, reason: 'Database error: message not delivered' }]);
    expect(sent).toEqual([]);
  });

  it('publishes notifications to their routed channel, verbatim', () => {
    const { relay, published } = setup();
    relay.onNotification('listen', '{"channel":"c","payload":1}');
    relay.onNotification('listen', 'raw');
    expect(published).toEqual([
      ['c', '{"channel":"c","payload":1}'],
      ['listen', 'raw'],
    ]);
  });

  it('sends ConnectionOpen then ConnectionClose on the meta channel', async () => {
    const { relay, sent } = setup('meta');
    const socket = fakeSocket(relay.newSession(grant('r', ['a', 'b'])));
    relay.onOpen(socket);
    relay.onClose(socket, 1000);
    await settle();
    // Both may travel in one batch: what matters is that both went, in order.
    expect(sent.flat().map((p) => JSON.parse(p))).toEqual([
      { event: 'ConnectionOpen', channel: 'meta', payload: 'a,b', claims: { mode: 'r', role: 'x', message_delivered_at: 1700000000.5 } },
      { event: 'ConnectionClose', channel: 'meta', payload: 'a,b', claims: { mode: 'r', role: 'x', message_delivered_at: 1700000000.5 } },
    ]);
  });
});
