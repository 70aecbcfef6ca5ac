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

/** The routing rule as PROTOCOL.md §2 states it: what routeNotification must always equal. */
function routeByParse(dbChannel: string, payload: string): string {
  try {
    const parsed: unknown = JSON.parse(payload);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
      const channel = (parsed as { channel?: unknown }).channel;
      if (typeof channel === 'string') return channel;
    }
  } catch {
    // not JSON
  }
  return dbChannel;
}

describe('routeNotification equals the JSON.parse rule on tricky payloads (guards any faster routing)', () => {
  const tricky: string[] = [
    '{"channel" : "chat", "payload" : "hello"}', // json_build_object's spacing
    '\t\r\n {"channel":"ws"} \n',
    '{"channel":"a","channel":"b"}', // the last key wins, as in JSON.parse
    '{"channel":"a","channel":1}',
    '{"channel":1,"channel":"b"}',
    '{"payload":{"channel":"nested"}}',
    '{"payload":{"channel":"nested"},"channel":"top"}',
    '{"list":[{"channel":"x"}],"channel":"y"}',
    '{"channel":"esc \\"quoted\\" \\\\ \\/ \\b\\f\\n\\r\\t"}',
    '{"chan\\u006eel":"unicode-escaped key"}',
    '{"channel":"caf\\u00e9 \\ud83d\\ude00"}',
    '{"channel":"\\ud800 lone surrogate"}',
    '{"channel":"caf\u00e9 \u{1F600} raw unicode"}',
    '{"channel":"x\\u00zz"}', // bad escape
    '{"channel":"x\\q"}',
    '{"channel":"raw\ncontrol"}', // raw control char inside a string: invalid
    '{"channel":"x"', // unterminated
    '{"channel":"x"}}',
    '{"channel":"x"} trailing',
    '{"channel":"x",}',
    '{,"channel":"x"}',
    '{"channel" "x"}',
    "{'channel':'x'}",
    '{channel:"x"}',
    '\ufeff{"channel":"bom"}',
    '{"n":-0.5e+10,"channel":"num"}',
    '{"n":01,"channel":"num"}',
    '{"n":1.,"channel":"num"}',
    '{"n":.5,"channel":"num"}',
    '{"n":-,"channel":"num"}',
    '{"n":1e,"channel":"num"}',
    '{"n":+1,"channel":"num"}',
    '{"t":true,"f":false,"z":null,"channel":"lit"}',
    '{"t":tru,"channel":"lit"}',
    '{"t":nulll,"channel":"lit"}',
    '{"a":[1,[2,[3,{"b":{}}]]],"channel":"deep"}',
    '{"a":[1,],"channel":"x"}',
    '{"a":[,1],"channel":"x"}',
    '{"a":{"b":1,},"channel":"x"}',
    '{"__proto__":{"channel":"p"}}',
    '{"__proto__":"x","channel":"ok"}',
    '{"channel":""}',
    '{}',
    ' { } ',
    '{"channel":null}',
    '{"channel":["a"]}',
    '{"channel":{"channel":"a"}}',
    '[{"channel":"x"}]',
    `${'['.repeat(20000)}${']'.repeat(20000)}`,
    `{"a":${'['.repeat(20000)}${']'.repeat(20000)},"channel":"very deep"}`,
    '',
    ' ',
    '{',
    '}',
    'null',
  ];
  it.each(tricky.map((p) => [p.length > 80 ? `${p.slice(0, 40)}... (${p.length} chars)` : p, p]))('%j', (_label, payload) => {
    expect(routeNotification('db', payload)).toBe(routeByParse('db', payload));
  });

  it('agrees with JSON.parse on random mutations of valid payloads', () => {
    const seeds = [
      '{"channel":"chat","payload":"hello","claims":{"mode":"rw","channel":"x","n":[1,2.5,-3e2,true,null]}}',
      '{"event":"WebsocketMessage","channel":"c\\u0041t","payload":"{\\"k\\":1}"}',
      '{ "channel" : "s p a c e" , "channel" : "twice" }',
    ];
    const alphabet = ['{', '}', '[', ']', '"', '\\', ':', ',', ' ', 'a', '1', '-', '.', 'e', 'u', 'channel', '"channel":', 'true', 'null', '\n', 'é'];
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    for (let round = 0; round < 5000; round++) {
      let text = seeds[rand(seeds.length)] ?? '';
      for (let m = rand(3); m >= 0; m--) {
        const at = rand(text.length + 1);
        const op = rand(3);
        if (op === 0) text = text.slice(0, at) + (alphabet[rand(alphabet.length)] ?? '') + text.slice(at);
        else if (op === 1) text = text.slice(0, at) + text.slice(at + 1 + rand(3));
        else text = text.slice(0, at) + (alphabet[rand(alphabet.length)] ?? '') + text.slice(at + 1);
      }
      const got = routeNotification('db', text);
      const want = routeByParse('db', text);
      if (got !== want) expect({ text, got }).toEqual({ text, got: want });
    }
  });
});

interface FakeSocket extends TransportSocket<Session> {
  readonly subscribed: string[];
  readonly closedWith: { code: number; reason: string }[];
  /** 'pause' and 'resume' calls, in order. */
  readonly flow: string[];
}

function fakeSocket(session: Session, { canPause = true } = {}): FakeSocket {
  const subscribed: string[] = [];
  const closedWith: { code: number; reason: string }[] = [];
  const flow: string[] = [];
  return {
    session,
    remoteAddress: '127.0.0.1',
    subscribed,
    closedWith,
    flow,
    send: (): SendResult => 'sent',
    close: (code, reason) => void closedWith.push({ code, reason }),
    subscribe: (channel) => void subscribed.push(channel),
    unsubscribe: (topic) => void subscribed.splice(subscribed.indexOf(topic), 1),
    cork: (write) => write(),
    bufferedAmount: () => 0,
    pause: () => {
      if (canPause) flow.push('pause');
      return canPause;
    },
    resume: () => void flow.push('resume'),
  };
}

type Published = [channel: string, text: string, except?: TransportSocket<Session>];

function setup(metaChannel?: string): { relay: ReturnType<typeof createRelay>; sent: string[][]; published: Published[]; fail: { on: boolean } } {
  const sent: string[][] = [];
  const published: Published[] = [];
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
    publish: (channel, text, except) => void published.push(except === undefined ? [channel, text] : [channel, text, except]),
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
      // The clock stood still: the second stamp is one microsecond later, so the two
      // envelopes can never be the same text (see the next test).
      { event: 'ConnectionClose', channel: 'meta', payload: 'a,b', claims: { mode: 'r', role: 'x', message_delivered_at: 1700000000.500001 } },
    ]);
  });

  it('stamps every frame later than the one before, so equal frames never make equal envelopes', async () => {
    // The echo check tells envelopes apart by their text, so no two may be equal, even when
    // the clock does not move (as here).
    const { relay, sent } = setup();
    const socket = fakeSocket(relay.newSession(grant('w', ['a'])));
    for (let i = 0; i < 5; i += 1) relay.onFrame(socket, 'same');
    await settle();
    const stamps = sent.flat().map((p) => (JSON.parse(p) as { claims: { message_delivered_at: number } }).claims.message_delivered_at);
    expect(stamps).toHaveLength(5);
    expect(new Set(sent.flat()).size).toBe(5);
    for (let i = 1; i < stamps.length; i += 1) expect(stamps[i]).toBeGreaterThan(stamps[i - 1] ?? Infinity);
  });

  it('leaves a socket with echo off out of the notifications its own frames caused, and only those', async () => {
    const { relay, sent, published } = setup();
    const quiet = fakeSocket(relay.newSession(grant('rw', ['a']), { echo: false }));
    const loud = fakeSocket(relay.newSession(grant('rw', ['a'])));
    relay.onFrame(quiet, 'same text');
    relay.onFrame(loud, 'same text');
    await settle();
    const [fromQuiet, fromLoud] = sent.flat();
    if (fromQuiet === undefined || fromLoud === undefined) throw new Error('two envelopes expected');
    relay.onNotification('listen', fromLoud);
    relay.onNotification('listen', fromQuiet);
    // The same text sent again by SQL (not by the socket) is no longer the socket's own.
    relay.onNotification('listen', fromQuiet);
    expect(published.map(([, text, except]) => [text, except])).toEqual([
      [fromLoud, undefined],
      [fromQuiet, quiet],
      [fromQuiet, undefined],
    ]);
  });
});

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** A notifier whose statements wait until released, as a slow database makes them. */
function gatedSetup(options: { maxQueuedFrames: number; maxHeldChars?: number }) {
  const sent: string[] = [];
  let gate = deferred();
  let failing = false;
  const relay = createRelay({
    listenChannel: 'listen',
    metaChannel: undefined,
    notifier: {
      notifyAll: async (_channel, payloads) => {
        await gate.promise;
        if (failing) throw new Error('database down');
        sent.push(...payloads.map((p) => (JSON.parse(p) as { payload: string }).payload));
      },
    },
    publish: () => undefined,
    log: createLogger('silent'),
    now: () => 1700000000.5,
    ...options,
  });
  return {
    relay,
    sent,
    /** Lets every statement waiting now (and the next ones) through. */
    open(): void {
      gate.resolve();
    },
    close(): void {
      gate = deferred();
    },
    failNext(): void {
      failing = true;
      gate.resolve();
    },
  };
}

const frames = (n: number, from = 0): string[] => Array.from({ length: n }, (_, i) => `f${from + i}`);

/** Until the relay has nothing queued or in flight, turn by turn (batches chain on setImmediate). */
async function drained(relay: ReturnType<typeof createRelay>): Promise<void> {
  await relay.idle();
  await settle();
}

describe('flow control', () => {
  it('stops reading at the queue limit, holds what still arrives, and reads again below half: nothing refused, order kept', async () => {
    const db = gatedSetup({ maxQueuedFrames: 4 });
    const socket = fakeSocket(db.relay.newSession(grant('w', ['a'])));
    for (const text of frames(10)) db.relay.onFrame(socket, text);
    expect(socket.flow).toEqual(['pause']);
    expect(db.relay.pausedSockets()).toBe(1);
    expect(socket.session.held.length).toBe(6);
    db.open();
    await drained(db.relay);
    expect(db.sent).toEqual(frames(10));
    expect(socket.flow).toEqual(['pause', 'resume']);
    expect(db.relay.pausedSockets()).toBe(0);
    expect(socket.closedWith).toEqual([]);
  });

  it('where the transport cannot stop reading, holds frames up to the limit, then closes 1013; what came before still goes out', async () => {
    const db = gatedSetup({ maxQueuedFrames: 2, maxHeldChars: 10 });
    const socket = fakeSocket(db.relay.newSession(grant('w', ['a'])), { canPause: false });
    // 2 queued, then held: f2..f6 are 10 characters, f7 would make 12.
    for (const text of frames(9)) db.relay.onFrame(socket, text);
    expect(socket.flow).toEqual([]);
    expect(socket.closedWith).toEqual([{ code: 1013, reason: 'Too many messages waiting for the database (5 held): later ones were not delivered' }]);
    db.open();
    await drained(db.relay);
    expect(db.sent).toEqual(frames(7));
  });

  it('a held frame whose envelope is too big closes 1009: the frames before it go out, it and those after do not', async () => {
    const db = gatedSetup({ maxQueuedFrames: 2 });
    const socket = fakeSocket(db.relay.newSession(grant('w', ['a'])));
    for (const text of [...frames(3), 'x'.repeat(7990), ...frames(2, 3)]) db.relay.onFrame(socket, text);
    db.open();
    await drained(db.relay);
    expect(db.sent).toEqual(frames(3));
    expect(socket.closedWith.map((c) => c.code)).toEqual([1009]);
  });

  it('a failed NOTIFY while paused closes 1011 and forgets the held frames', async () => {
    const db = gatedSetup({ maxQueuedFrames: 2 });
    const socket = fakeSocket(db.relay.newSession(grant('w', ['a'])));
    for (const text of frames(6)) db.relay.onFrame(socket, text);
    db.failNext();
    await drained(db.relay);
    expect(db.sent).toEqual([]);
    expect(socket.closedWith.map((c) => c.code)).toEqual([1011]);
    expect(socket.session.held.length).toBe(0);
  });

  it('frames held when the client closes still go out, in order', async () => {
    const db = gatedSetup({ maxQueuedFrames: 2 });
    const socket = fakeSocket(db.relay.newSession(grant('w', ['a'])));
    for (const text of frames(7)) db.relay.onFrame(socket, text);
    db.relay.onClose(socket, 1000);
    expect(db.relay.pausedSockets()).toBe(0);
    db.open();
    await drained(db.relay);
    expect(db.sent).toEqual(frames(7));
  });
});
