// The v2 wire codec alone (PROTOCOL.md §9, §10, §12): text in -> typed request or refusal,
// typed answers -> exact frame text. No sockets, no database.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Json } from '../src/types.js';
import {
  errorFrame,
  messageFrame,
  parseRequest,
  pongFrame,
  publishedFrame,
  refreshedFrame,
  resultFrame,
  subscribedFrame,
  unsubscribedFrame,
  type ParseResult,
  type RequestId,
  type V2Request,
} from '../src/v2/frames.js';

const FC = { seed: 20261203, numRuns: 2000 } as const;

function ok(text: string): V2Request {
  const result = parseRequest(text);
  if (!result.ok) throw new Error(`expected ok, got: ${result.message}`);
  return result.request;
}

function refused(text: string): Extract<ParseResult, { ok: false }> {
  const result = parseRequest(text);
  if (result.ok) throw new Error(`expected a refusal, got ${JSON.stringify(result.request)}`);
  expect(result.message.length).toBeGreaterThan(0);
  return result;
}

describe('parseRequest: not JSON and JSON that is not an object', () => {
  it.each(['', ' ', 'hello', '{', '{"type":"ping"', "{'type':'ping'}", '{"type":"ping"}}', 'NaN', 'undefined', '\ufeff{"type":"ping"}'])(
    'not JSON %j: notJson true, id null',
    (text) => {
      const r = refused(text);
      expect(r.notJson).toBe(true);
      expect(r.id).toBeNull();
    },
  );

  it.each(['null', 'true', '1', '"ping"', '[]', '[{"type":"ping","id":1}]', ' 0 '])('JSON non-object %j: notJson false, id null', (text) => {
    const r = refused(text);
    expect(r.notJson).toBe(false);
    expect(r.id).toBeNull();
    expect(r.message).toBe('a request must be a JSON object');
  });

  it('does not repeat the text of a frame that is not JSON', () => {
    const secret = 'eyJhbGciOiJIUzI1NiJ9.secret-token-text';
    const r = refused(`{"type":"refresh","token":"${secret}"`);
    expect(r.message).not.toContain('secret');
  });
});

describe('parseRequest: ids', () => {
  it.each<[string, RequestId]>([
    ['"a"', 'a'],
    ['""', ''],
    ['0', 0],
    ['-7', -7],
    ['1.5', 1.5],
    ['1e2', 100],
    [JSON.stringify('x'.repeat(128)), 'x'.repeat(128)],
    ['"\\u00e9\\ud83d\\ude00"', 'é😀'],
  ])('id %s is kept', (idText, id) => {
    expect(ok(`{"type":"ping","id":${idText}}`)).toEqual({ type: 'ping', id });
  });

  it('no id: the request has id undefined', () => {
    const request = ok('{"type":"ping"}');
    expect(request.id).toBeUndefined();
  });

  it.each(['null', 'true', 'false', '[]', '[1]', '{}', '{"a":1}', '1e400', '-1e400', JSON.stringify('x'.repeat(129))])(
    'id %s is bad_request with id null',
    (idText) => {
      const r = refused(`{"type":"ping","id":${idText}}`);
      expect(r.notJson).toBe(false);
      expect(r.id).toBeNull();
      expect(r.message).toContain('"id"');
    },
  );

  it('a bad id wins over a bad type: id null', () => {
    expect(refused('{"type":"nope","id":true}').id).toBeNull();
  });

  it('an id inherited from Object.prototype does not count', () => {
    expect(ok('{"type":"ping","constructor":1}')).toEqual({ type: 'ping', id: undefined });
    expect(refused('{"type":"toString"}').message).toContain('unknown type');
  });
});

describe('parseRequest: type', () => {
  it.each(['{}', '{"id":3}', '{"id":3,"type":null}', '{"id":3,"type":1}', '{"id":3,"type":["ping"]}'])('missing or non-string type %s', (text) => {
    const r = refused(text);
    expect(r.id).toBe(text.includes('"id":3') ? 3 : null);
    expect(r.message).toBe('a request needs "type": one of subscribe, unsubscribe, publish, refresh, call, ping');
  });

  it('unknown type: bad_request with the id, the type quoted', () => {
    const r = refused('{"type":"Ping","id":"q"}');
    expect(r).toEqual({
      ok: false,
      notJson: false,
      id: 'q',
      message: 'unknown type "Ping": expected one of subscribe, unsubscribe, publish, refresh, call, ping',
    });
  });

  it.each([
    ['subcribe', 'unknown type "subcribe"'],
    ['a_b-C9', 'unknown type "a_b-C9"'],
    ['z'.repeat(60), `unknown type "${'z'.repeat(60)}"`],
    ['z'.repeat(61), 'unknown type (not shown)'],
    ['', 'unknown type (not shown)'],
    ['has space', 'unknown type (not shown)'],
    ['a.b.c', 'unknown type (not shown)'],
    ['"quoted"', 'unknown type (not shown)'],
    ['é', 'unknown type (not shown)'],
  ])('unknown type %j is shown only when it is a short word', (type, shown) => {
    const r = refused(JSON.stringify({ type, id: 1 }));
    expect(r.message).toBe(`${shown}: expected one of subscribe, unsubscribe, publish, refresh, call, ping`);
  });
});

describe('parseRequest: subscribe', () => {
  it('since null means no since (what a client echoes after a subscribed answer with offset null)', () => {
    expect(ok('{"type":"subscribe","channel":"chat","since":null}')).toMatchObject({ type: 'subscribe', since: undefined });
  });

  it('channel alone: defaults', () => {
    expect(ok('{"type":"subscribe","id":1,"channel":"chat"}')).toEqual({
      type: 'subscribe',
      id: 1,
      channel: 'chat',
      filter: undefined,
      filterBytes: undefined,
      since: undefined,
      echo: true,
    });
  });

  it('every member', () => {
    const text = '{"type":"subscribe","id":"s","channel":"chat","filter":{"payload.room": 7, "payload.name":"é"},"since":"42","echo":false}';
    expect(ok(text)).toEqual({
      type: 'subscribe',
      id: 's',
      channel: 'chat',
      filter: { 'payload.room': 7, 'payload.name': 'é' },
      filterBytes: Buffer.byteLength('{"payload.room":7,"payload.name":"é"}'),
      since: '42',
      echo: false,
    });
  });

  it.each<[string, Json]>([
    ['null', null],
    ['[]', []],
    ['"x"', 'x'],
    ['{}', {}],
  ])('filter %s passes through (validated elsewhere) with its byte count', (filterText, filter) => {
    const request = ok(`{"type":"subscribe","channel":"c","filter":${filterText}}`);
    expect(request).toMatchObject({ filter, filterBytes: Buffer.byteLength(JSON.stringify(filter)) });
  });

  it('filterBytes counts the compact form, in UTF-8 bytes', () => {
    const request = ok('{"type":"subscribe","channel":"c","filter": { "a" : "😀" } }');
    expect(request).toMatchObject({ filterBytes: '{"a":"😀"}'.length + 2 });
  });

  it('a filter too deeply nested to serialise is bad_request, not a throw', () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    const r = refused(`{"type":"subscribe","id":9,"channel":"c","filter":${deep}}`);
    expect(r.id).toBe(9);
    expect(r.message).toContain('"filter"');
  });

  it.each(['echo":true', 'echo":false'])('%s', (member) => {
    expect(ok(`{"type":"subscribe","channel":"c","${member}}`)).toMatchObject({ echo: member.endsWith('true') });
  });

  it.each([
    ['0', '0'],
    ['7', '7'],
    ['007', '7'],
    ['9223372036854775807', '9223372036854775807'],
    ['0000000000000000001', '1'],
  ])('since %j -> %j', (since, expected) => {
    expect(ok(JSON.stringify({ type: 'subscribe', channel: 'c', since }))).toMatchObject({ since: expected });
  });

  it('a channel of 1024 characters is accepted', () => {
    expect(ok(JSON.stringify({ type: 'subscribe', channel: 'c'.repeat(1024) }))).toMatchObject({ channel: 'c'.repeat(1024) });
  });

  it.each<[string, Record<string, Json>, string]>([
    ['channel missing', {}, 'subscribe needs "channel": a non-empty string'],
    ['channel empty', { channel: '' }, 'subscribe needs "channel": a non-empty string'],
    ['channel null', { channel: null }, 'subscribe needs "channel": a non-empty string'],
    ['channel number', { channel: 1 }, 'subscribe needs "channel": a non-empty string'],
    ['channel array', { channel: ['c'] }, 'subscribe needs "channel": a non-empty string'],
    ['channel too long', { channel: 'c'.repeat(1025) }, 'subscribe "channel" must be at most 1024 characters'],
    ['since number', { channel: 'c', since: 5 }, 'subscribe "since" must be an offset: a string of decimal digits (a bigint)'],
    ['since empty', { channel: 'c', since: '' }, 'subscribe "since" must be an offset: a string of decimal digits (a bigint)'],
    ['since negative', { channel: 'c', since: '-1' }, 'subscribe "since" must be an offset: a string of decimal digits (a bigint)'],
    ['since decimal', { channel: 'c', since: '1.0' }, 'subscribe "since" must be an offset: a string of decimal digits (a bigint)'],
    ['since padded', { channel: 'c', since: ' 1' }, 'subscribe "since" must be an offset: a string of decimal digits (a bigint)'],
    ['since hex', { channel: 'c', since: '0x10' }, 'subscribe "since" must be an offset: a string of decimal digits (a bigint)'],
    ['since exponent', { channel: 'c', since: '1e3' }, 'subscribe "since" must be an offset: a string of decimal digits (a bigint)'],
    ['since Arabic-Indic digits', { channel: 'c', since: '١٢' }, 'subscribe "since" must be an offset: a string of decimal digits (a bigint)'],
    ['since over bigint', { channel: 'c', since: '9223372036854775808' }, 'subscribe "since" must be an offset: a string of decimal digits (a bigint)'],
    ['since 20 digits', { channel: 'c', since: '00000000000000000001' }, 'subscribe "since" must be an offset: a string of decimal digits (a bigint)'],
    ['echo string', { channel: 'c', echo: 'false' }, 'subscribe "echo" must be true or false'],
    ['echo null', { channel: 'c', echo: null }, 'subscribe "echo" must be true or false'],
    ['echo number', { channel: 'c', echo: 0 }, 'subscribe "echo" must be true or false'],
  ])('%s: bad_request', (_name, members, message) => {
    expect(refused(JSON.stringify({ type: 'subscribe', id: 'x', ...members }))).toEqual({ ok: false, notJson: false, id: 'x', message });
  });
});

describe('parseRequest: unsubscribe', () => {
  it('valid', () => {
    expect(ok('{"type":"unsubscribe","id":2,"sub":"s1"}')).toEqual({ type: 'unsubscribe', id: 2, sub: 's1' });
  });
  it.each<[string, Record<string, Json>]>([
    ['sub missing', {}],
    ['sub empty', { sub: '' }],
    ['sub number', { sub: 1 }],
    ['sub null', { sub: null }],
  ])('%s: bad_request', (_name, members) => {
    expect(refused(JSON.stringify({ type: 'unsubscribe', id: 2, ...members }))).toEqual({
      ok: false,
      notJson: false,
      id: 2,
      message: 'unsubscribe needs "sub": a non-empty string',
    });
  });
});

describe('parseRequest: publish', () => {
  it.each<[string, Json]>([
    ['null', null],
    ['0', 0],
    ['""', ''],
    ['"hi"', 'hi'],
    ['[1,{"a":null}]', [1, { a: null }]],
    ['{"x":{"y":[true]}}', { x: { y: [true] } }],
  ])('payload %s', (payloadText, payload) => {
    expect(ok(`{"type":"publish","id":3,"channel":"chat","payload":${payloadText}}`)).toEqual({
      type: 'publish',
      id: 3,
      channel: 'chat',
      payload,
    });
  });
  it.each<[string, Record<string, Json>, string]>([
    ['payload missing', { channel: 'c' }, 'publish needs "payload": any JSON value'],
    ['channel missing', { payload: 1 }, 'publish needs "channel": a non-empty string'],
    ['channel empty', { channel: '', payload: 1 }, 'publish needs "channel": a non-empty string'],
    ['channel number', { channel: 5, payload: 1 }, 'publish needs "channel": a non-empty string'],
    ['channel too long', { channel: 'c'.repeat(1025), payload: 1 }, 'publish "channel" must be at most 1024 characters'],
  ])('%s: bad_request', (_name, members, message) => {
    expect(refused(JSON.stringify({ type: 'publish', id: 3, ...members }))).toEqual({ ok: false, notJson: false, id: 3, message });
  });
});

describe('parseRequest: refresh', () => {
  it('valid', () => {
    expect(ok('{"type":"refresh","id":4,"token":"a.b.c"}')).toEqual({ type: 'refresh', id: 4, token: 'a.b.c' });
  });
  it.each<[string, Record<string, Json>]>([
    ['token missing', {}],
    ['token empty', { token: '' }],
    ['token number', { token: 1 }],
    ['token object', { token: { jwt: 'a.b.c' } }],
  ])('%s: bad_request', (_name, members) => {
    expect(refused(JSON.stringify({ type: 'refresh', id: 4, ...members }))).toEqual({
      ok: false,
      notJson: false,
      id: 4,
      message: 'refresh needs "token": a non-empty string',
    });
  });
  it('never repeats the token', () => {
    const token = 'eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2ln';
    for (const text of [
      JSON.stringify({ type: 'refresh', id: token.repeat(5), token }),
      JSON.stringify({ type: token, token }),
      JSON.stringify({ type: 'refresh', token: [token] }),
    ]) {
      expect(refused(text).message).not.toContain('c2VjcmV0');
    }
  });
});

describe('parseRequest: call', () => {
  it('fn and args', () => {
    expect(ok('{"type":"call","id":5,"fn":"name","args":{"a":1}}')).toEqual({ type: 'call', id: 5, fn: 'name', args: { a: 1 } });
  });
  it('args optional; null passes through', () => {
    expect(ok('{"type":"call","fn":"f"}')).toEqual({ type: 'call', id: undefined, fn: 'f', args: undefined });
    expect(ok('{"type":"call","fn":"f","args":null}')).toEqual({ type: 'call', id: undefined, fn: 'f', args: null });
  });
  it.each<[string, Record<string, Json>]>([
    ['fn missing', {}],
    ['fn empty', { fn: '' }],
    ['fn number', { fn: 1 }],
    ['fn null', { fn: null, args: {} }],
  ])('%s: bad_request', (_name, members) => {
    expect(refused(JSON.stringify({ type: 'call', id: 'c', ...members }))).toEqual({
      ok: false,
      notJson: false,
      id: 'c',
      message: 'call needs "fn": a non-empty string',
    });
  });
});

describe('parseRequest: ping and extra members', () => {
  it('ping', () => {
    expect(ok('{"type":"ping","id":6}')).toEqual({ type: 'ping', id: 6 });
  });
  it('unknown members are ignored, on every type', () => {
    const extra = '"future":{"x":[1,2]},"v":2,"__proto__":{"polluted":true}';
    expect(ok(`{"type":"ping","id":6,${extra}}`)).toEqual({ type: 'ping', id: 6 });
    expect(ok(`{"type":"unsubscribe","sub":"s",${extra}}`)).toEqual({ type: 'unsubscribe', id: undefined, sub: 's' });
    expect(ok(`{"type":"refresh","token":"t",${extra}}`)).toEqual({ type: 'refresh', id: undefined, token: 't' });
    expect(ok(`{"type":"publish","channel":"c","payload":1,${extra}}`)).toEqual({ type: 'publish', id: undefined, channel: 'c', payload: 1 });
    expect(ok(`{"type":"call","fn":"f",${extra}}`)).toEqual({ type: 'call', id: undefined, fn: 'f', args: undefined });
    expect(ok(`{"type":"subscribe","channel":"c",${extra}}`)).toMatchObject({ type: 'subscribe', channel: 'c', echo: true });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
  it("members of other types are ignored: a ping's channel is not checked", () => {
    expect(ok('{"type":"ping","channel":1,"payload":2,"sub":null}')).toEqual({ type: 'ping', id: undefined });
  });
  it('a duplicated member: the last wins, as in JSON.parse', () => {
    expect(ok('{"type":"publish","type":"ping","id":1,"id":"two"}')).toEqual({ type: 'ping', id: 'two' });
  });
  it('whitespace around the object is JSON', () => {
    expect(ok(' \t\r\n{"type":"ping"}\n')).toEqual({ type: 'ping', id: undefined });
  });
});

describe('encoders: exact text', () => {
  it('subscribed', () => {
    expect(subscribedFrame(1, 'chat', 's1', '42', true)).toBe('{"type":"subscribed","id":1,"channel":"chat","sub":"s1","offset":"42","recovered":true}');
    expect(subscribedFrame('a', 'chat', 's1', null, false)).toBe('{"type":"subscribed","id":"a","channel":"chat","sub":"s1","offset":null,"recovered":false}');
    expect(subscribedFrame(undefined, 'c"\\', 's', null, undefined)).toBe('{"type":"subscribed","channel":"c\\"\\\\","sub":"s","offset":null}');
  });
  it('unsubscribed', () => {
    expect(unsubscribedFrame(2, 's1')).toBe('{"type":"unsubscribed","id":2,"sub":"s1"}');
    expect(unsubscribedFrame(undefined, 's1', 'not allowed by the new token')).toBe(
      '{"type":"unsubscribed","sub":"s1","reason":"not allowed by the new token"}',
    );
  });
  it('published', () => {
    expect(publishedFrame(3)).toBe('{"type":"published","id":3}');
    expect(publishedFrame(undefined)).toBe('{"type":"published"}');
  });
  it('refreshed', () => {
    expect(refreshedFrame(4, 1767225600)).toBe('{"type":"refreshed","id":4,"exp":1767225600}');
    expect(refreshedFrame('r', null)).toBe('{"type":"refreshed","id":"r","exp":null}');
    expect(refreshedFrame(undefined, null)).toBe('{"type":"refreshed","exp":null}');
  });
  it('result', () => {
    expect(resultFrame(5, { rows: [1, 'two', null], ok: true })).toBe('{"type":"result","id":5,"data":{"rows":[1,"two",null],"ok":true}}');
    expect(resultFrame(undefined, null)).toBe('{"type":"result","data":null}');
    expect(resultFrame('x', '</script>')).toBe('{"type":"result","id":"x","data":"</script>"}');
  });
  it('pong', () => {
    expect(pongFrame(6)).toBe('{"type":"pong","id":6}');
    expect(pongFrame('six')).toBe('{"type":"pong","id":"six"}');
    expect(pongFrame(undefined)).toBe('{"type":"pong"}');
    expect(pongFrame(-0.5)).toBe('{"type":"pong","id":-0.5}');
  });
  it('error: id always present, null when unknown', () => {
    expect(errorFrame(1, 'forbidden', 'no')).toBe('{"type":"error","id":1,"code":"forbidden","message":"no"}');
    expect(errorFrame('q"', 'bad_request', 'a "quoted"\nline')).toBe(
      '{"type":"error","id":"q\\"","code":"bad_request","message":"a \\"quoted\\"\\nline"}',
    );
    expect(errorFrame(null, 'bad_request', 'x')).toBe('{"type":"error","id":null,"code":"bad_request","message":"x"}');
    expect(errorFrame(undefined, 'db_error', 'x')).toBe('{"type":"error","id":null,"code":"db_error","message":"x"}');
  });
  it('every error code', () => {
    for (const code of [
      'bad_request',
      'forbidden',
      'not_subscribed',
      'too_many_subscriptions',
      'payload_too_large',
      'db_error',
      'invalid_token',
      'history_unavailable',
      'not_found',
    ] as const) {
      expect(JSON.parse(errorFrame(7, code, 'm'))).toEqual({ type: 'error', id: 7, code, message: 'm' });
    }
  });
  it('a refusal from parseRequest round-trips through errorFrame', () => {
    const r = refused('{"type":"subscribe","id":"k"}');
    expect(JSON.parse(errorFrame(r.id, 'bad_request', r.message))).toEqual({ type: 'error', id: 'k', code: 'bad_request', message: r.message });
  });
  it('message', () => {
    expect(messageFrame('s1', 'chat', '{"channel":"chat","payload":"hi"}', true, '42')).toBe(
      '{"type":"message","sub":"s1","channel":"chat","data":{"channel":"chat","payload":"hi"},"offset":"42"}',
    );
    expect(messageFrame('s1', 'db', 'plain "text"', false)).toBe('{"type":"message","sub":"s1","channel":"db","data":"plain \\"text\\""}');
    expect(messageFrame('s1', 'c', ' [1, 2] ', true)).toBe('{"type":"message","sub":"s1","channel":"c","data": [1, 2] }');
  });
});

describe('messageFrame splices the notification', () => {
  const jsonTexts = [
    '{"channel":"chat","payload":"hello"}',
    '  {"channel" : "chat", "payload" : "x"}  ',
    '\n\t{"a":[1,2,{"b":null}]}\r\n',
    '{"q":"say \\"hi\\"","bs":"C:\\\\dir\\\\","u":"\\u00e9\\ud83d\\ude00 é😀","sep":"\u2028\u2029"}',
    '{"html":"</script><script>alert(1)</script>"}',
    '"just a string"',
    '""',
    '0',
    '-1.5e-7',
    'null',
    'true',
    '[]',
    '{}',
  ];
  it.each(jsonTexts)('JSON text %j: data equals JSON.parse(text)', (text) => {
    const frame: unknown = JSON.parse(messageFrame('s', 'ch', text, true, '9'));
    expect(frame).toEqual({ type: 'message', sub: 's', channel: 'ch', data: JSON.parse(text) as Json, offset: '9' });
  });

  const plainTexts = [
    '',
    ' ',
    'hello',
    'say "hi"',
    'C:\\dir\\',
    '\\u00e9 literally',
    'é😀 \u2028\u2029',
    '</script><script>alert(1)</script>',
    '{"unterminated": ',
    'line\nbreak\ttab\u0000nul\u001f',
    '\ud800 lone surrogate',
    '{"channel":"chat"}', // JSON, but the caller said not: sent as a string
  ];
  it.each(plainTexts)('plain text %j: data equals the text', (text) => {
    const frame: unknown = JSON.parse(messageFrame('s', 'ch', text, false));
    expect(frame).toEqual({ type: 'message', sub: 's', channel: 'ch', data: text });
  });

  it('property: for any JSON text and any string, data round-trips', () => {
    fc.assert(
      fc.property(fc.json(), fc.string({ unit: 'binary' }), fc.string(), fc.string(), fc.option(fc.string(), { nil: undefined }), (json, text, sub, channel, offset) => {
        const spliced = JSON.parse(messageFrame(sub, channel, json, true, offset)) as Record<string, Json>;
        expect(spliced.data).toEqual(JSON.parse(json) as Json);
        expect(spliced.sub).toBe(sub);
        expect(spliced.channel).toBe(channel);
        expect(Object.hasOwn(spliced, 'offset')).toBe(offset !== undefined);
        const quoted = JSON.parse(messageFrame(sub, channel, text, false, offset)) as Record<string, Json>;
        // JSON.stringify writes a lone surrogate as \udxxx, which JSON.parse gives back as is.
        expect(quoted.data).toBe(text);
      }),
      FC,
    );
  });
});

/** The id parseRequest may answer with for this text: the input's id when it is a valid one. */
function validIdIn(text: string): RequestId | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed) || !Object.hasOwn(parsed, 'id')) return null;
  const id: unknown = (parsed as Record<string, unknown>).id;
  if (typeof id === 'string' && id.length <= 128) return id;
  if (typeof id === 'number' && Number.isFinite(id)) return id;
  return null;
}

function isJsonText(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** The invariants of every parseRequest answer. */
function checkAnswer(text: string): void {
  let result: ParseResult | undefined;
  expect(() => {
    result = parseRequest(text);
  }).not.toThrow();
  if (result === undefined) throw new Error('no result');
  const valid = validIdIn(text);
  if (result.ok) {
    expect(result.request.id ?? null).toBe(valid);
  } else {
    expect(typeof result.message).toBe('string');
    expect(result.message.length).toBeGreaterThan(0);
    expect(result.message.length).toBeLessThanOrEqual(200);
    expect(result.notJson).toBe(!isJsonText(text));
    if (result.id !== null) expect(result.id).toBe(valid);
  }
}

/** fast-check's JsonValue, as the project's Json type. */
const jsonArb = (maxDepth: number): fc.Arbitrary<Json> => fc.jsonValue({ maxDepth }).map((value) => value as Json);
// NaN and ±Infinity from fc.double() reach the text as null (JSON.stringify): still a bad id.
const idArb: fc.Arbitrary<Json> = fc.oneof(
  fc.string({ maxLength: 140 }),
  fc.double(),
  fc.integer(),
  fc.constantFrom(null, true, false, [], {}, 'x'.repeat(128), 'x'.repeat(129)),
);
const typeArb: fc.Arbitrary<Json> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('subscribe', 'unsubscribe', 'publish', 'refresh', 'call', 'ping') },
  { weight: 1, arbitrary: jsonArb(1) },
);
const fieldArb: fc.Arbitrary<Json> = fc.oneof(
  fc.string(),
  fc.constantFrom('', '0', '42', '007', '9223372036854775807', '9223372036854775808', 'chat'),
  fc.bigInt({ min: 0n, max: 2n ** 64n }).map((n) => n.toString()),
  jsonArb(3),
);
const requestObjectArb = fc.record(
  {
    type: typeArb,
    id: idArb,
    channel: fieldArb,
    filter: fieldArb,
    since: fieldArb,
    echo: fc.oneof(fc.boolean(), fieldArb),
    sub: fieldArb,
    payload: fieldArb,
    token: fieldArb,
    fn: fieldArb,
    args: fieldArb,
    extra: fc.jsonValue({ maxDepth: 2 }),
  },
  { requiredKeys: [] },
);

describe('parseRequest: properties (fast-check, fixed seed)', () => {
  it('never throws on arbitrary strings; refusals carry a message and a null id', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), fc.string(), fc.json()), (text) => {
        checkAnswer(text);
      }),
      FC,
    );
  });

  it('never throws on arbitrary JSON objects; an answer id is null or the valid id of the input', () => {
    fc.assert(
      fc.property(fc.oneof(requestObjectArb, fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 }))), (object) => {
        checkAnswer(JSON.stringify(object));
      }),
      FC,
    );
  });

  it('an accepted request keeps its fields exactly', () => {
    fc.assert(
      fc.property(requestObjectArb, (object) => {
        const text = JSON.stringify(object);
        const result = parseRequest(text);
        if (!result.ok) return;
        const input = JSON.parse(text) as Record<string, Json>;
        const r = result.request;
        expect(r.type).toBe(input.type);
        switch (r.type) {
          case 'subscribe':
            expect(r.channel).toBe(input.channel);
            expect(r.filter).toEqual(input.filter);
            expect(r.filterBytes).toBe(input.filter === undefined ? undefined : Buffer.byteLength(JSON.stringify(input.filter)));
            expect(r.since).toBe(input.since === undefined || input.since === null ? undefined : BigInt(input.since as string).toString());
            expect(r.echo).toBe(input.echo ?? true);
            break;
          case 'unsubscribe':
            expect(r.sub).toBe(input.sub);
            break;
          case 'publish':
            expect(r.channel).toBe(input.channel);
            expect(r.payload).toEqual(input.payload);
            break;
          case 'refresh':
            expect(r.token).toBe(input.token);
            break;
          case 'call':
            expect(r.fn).toBe(input.fn);
            expect(r.args).toEqual(input.args);
            break;
          case 'ping':
            break;
        }
      }),
      FC,
    );
  });
});
