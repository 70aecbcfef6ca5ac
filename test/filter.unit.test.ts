// v2 filters (PROTOCOL.md §9 "Filters"), alone: operators, malformed filters, canonical keys,
// and a differential test against a plain reference evaluator (test/harness/filter-reference.ts,
// sharing no code with src/v2/filter.ts).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileFilter, MAX_FILTER_BYTES, MAX_FILTER_CONDITIONS, parseNotificationObject, type CompiledFilter } from '../src/v2/filter.js';
import type { Json } from '../src/types.js';
import { isObj, notification, pair, randomFilter, reference, refParse, rewrite, type Obj } from './harness/filter-reference.js';

function compiled(filter: Json | undefined, sentBytes?: number): CompiledFilter {
  const result = compileFilter(filter, sentBytes);
  if (!result.ok) throw new Error(`expected a valid filter, got: ${result.message}`);
  return result.filter;
}

function refused(filter: Json | undefined, sentBytes?: number): string {
  const result = compileFilter(filter, sentBytes);
  if (result.ok) throw new Error(`expected a refusal, got key ${result.filter.key}`);
  return result.message;
}

/** What pgws hands to `matches`: the notification when it is an object, else undefined. */
function asNotification(v: Json): Obj | undefined {
  return isObj(v) ? v : undefined;
}

// ---------------------------------------------------------------------------------------------
// Tables

const N: Obj = {
  channel: 'chat',
  payload: {
    room: 7,
    status: 'open',
    price: 10,
    tag: 'news',
    owner: 'ann',
    nested: { a: { b: 1 } },
    list: [1, 2, { x: 1 }],
    nul: null,
    flag: false,
    emoji: '\u{1F600}',
    pua: '\uFFFF',
    upper: 'Z',
    float: 1.5,
    zero: 0,
    empty: '',
    obj: { x: 1, y: [1, 2] },
  },
};

describe('operators', () => {
  it.each<[string, Obj, boolean]>([
    // plain values: JSON equality
    ['number equal', { 'payload.room': 7 }, true],
    ['number not equal', { 'payload.room': 8 }, false],
    ['number vs string', { 'payload.room': '7' }, false],
    ['1.0 equals 1', { 'payload.nested.a.b': 1.0 }, true],
    ['string equal', { 'payload.status': 'open' }, true],
    ['string case matters', { 'payload.status': 'Open' }, false],
    ['boolean equal', { 'payload.flag': false }, true],
    ['false is not 0', { 'payload.zero': false }, false],
    ['0 is not false', { 'payload.flag': 0 }, false],
    ['"" is not null', { 'payload.empty': null }, false],
    ['null equal', { 'payload.nul': null }, true],
    ['null does not match a missing field', { 'payload.missing': null }, false],
    ['array equal, deep', { 'payload.list': [1, 2, { x: 1 }] }, true],
    ['array order matters', { 'payload.list': [2, 1, { x: 1 }] }, false],
    ['array length matters', { 'payload.list': [1, 2] }, false],
    ['top-level field', { channel: 'chat' }, true],
    ['several plain values, all hold', { channel: 'chat', 'payload.room': 7, 'payload.status': 'open' }, true],
    ['several plain values, one fails', { channel: 'chat', 'payload.room': 7, 'payload.status': 'held' }, false],
    // ne
    ['ne different', { 'payload.tag': { ne: 'spam' } }, true],
    ['ne same', { 'payload.tag': { ne: 'news' } }, false],
    ['ne of another type', { 'payload.room': { ne: '7' } }, true],
    ['ne needs the path', { 'payload.missing': { ne: 'spam' } }, false],
    ['ne deep object, key order irrelevant', { 'payload.obj': { ne: { y: [1, 2], x: 1 } } }, false],
    ['ne deep object, different', { 'payload.obj': { ne: { x: 1, y: [2, 1] } } }, true],
    ['ne object with an extra key', { 'payload.obj': { ne: { x: 1, y: [1, 2], z: null } } }, true],
    ['ne null on null', { 'payload.nul': { ne: null } }, false],
    // in / nin
    ['in hit', { 'payload.status': { in: ['open', 'held'] } }, true],
    ['in miss', { 'payload.status': { in: ['closed', 'held'] } }, false],
    ['in across types', { 'payload.room': { in: ['7', 7] } }, true],
    ['in with an object, key order irrelevant', { 'payload.obj': { in: [1, { y: [1, 2], x: 1 }] } }, true],
    ['in with an object with fewer keys', { 'payload.obj': { in: [{ x: 1 }] } }, false],
    ['in with an object with more keys', { 'payload.obj': { in: [{ x: 1, y: [1, 2], z: 1 }] } }, false],
    ['in with an array', { 'payload.list': { in: [[1, 2, { x: 1 }]] } }, true],
    ['in with null', { 'payload.nul': { in: [null] } }, true],
    ['in needs the path', { 'payload.missing': { in: [null] } }, false],
    ['nin hit', { 'payload.status': { nin: ['open'] } }, false],
    ['nin miss', { 'payload.status': { nin: ['closed', 7] } }, true],
    ['nin needs the path', { 'payload.missing': { nin: ['x'] } }, false],
    ['nin of an object', { 'payload.obj': { nin: [{ x: 1 }] } }, true],
    // order, numbers
    ['gte equal', { 'payload.price': { gte: 10 } }, true],
    ['gt equal', { 'payload.price': { gt: 10 } }, false],
    ['lt', { 'payload.price': { lt: 10.5 } }, true],
    ['lte equal', { 'payload.price': { lte: 10 } }, true],
    ['range inside', { 'payload.price': { gte: 10, lt: 100 } }, true],
    ['range outside', { 'payload.price': { gt: 10, lt: 100 } }, false],
    ['negative operand', { 'payload.float': { gt: -1 } }, true],
    ['number operand, string field', { 'payload.status': { lt: 1000 } }, false],
    ['string operand, number field', { 'payload.price': { lt: 'zzz' } }, false],
    ['number operand, null field', { 'payload.nul': { lte: 0 } }, false],
    ['number operand, boolean field', { 'payload.flag': { gte: 0 } }, false],
    ['number operand, array field', { 'payload.list': { gte: 0 } }, false],
    ['number operand, object field', { 'payload.obj': { gte: 0 } }, false],
    ['order needs the path', { 'payload.missing': { lt: 1 } }, false],
    ['gte and lt of different types never hold together', { 'payload.price': { gte: 1, lt: 'z' } }, false],
    // order, strings by code point
    ['"Z" < "a"', { 'payload.upper': { lt: 'a' } }, true],
    ['"open" > "ope"', { 'payload.status': { gt: 'ope' } }, true],
    ['"open" < "opf"', { 'payload.status': { lt: 'opf' } }, true],
    ['"" < "a"', { 'payload.empty': { lt: 'a' } }, true],
    ['"" >= ""', { 'payload.empty': { gte: '' } }, true],
    ['U+1F600 > U+FFFF (UTF-16 units say otherwise)', { 'payload.emoji': { gt: '\uFFFF' } }, true],
    ['U+1F600 is not < U+FFFF', { 'payload.emoji': { lt: '\uFFFF' } }, false],
    ['U+FFFF < U+1F600', { 'payload.pua': { lt: '\u{1F600}' } }, true],
    ['U+FFFF > U+E000', { 'payload.pua': { gt: '\uE000' } }, true],
    ['U+1F600 > U+10000', { 'payload.emoji': { gt: '\u{10000}' } }, true],
    ['U+1F600 < U+1F601', { 'payload.emoji': { lt: '\u{1F601}' } }, true],
    ['U+1F600 <= itself', { 'payload.emoji': { lte: '\u{1F600}' } }, true],
    // exists
    ['exists true, present', { 'payload.owner': { exists: true } }, true],
    ['exists true, present and null', { 'payload.nul': { exists: true } }, true],
    ['exists true, missing', { 'payload.missing': { exists: true } }, false],
    ['exists false, missing', { 'payload.missing': { exists: false } }, true],
    ['exists false, present', { 'payload.owner': { exists: false } }, false],
    ['exists false, through a string', { 'payload.status.x': { exists: false } }, true],
    ['exists false, through null', { 'payload.nul.x': { exists: false } }, true],
    ['exists false, through an array', { 'payload.list.0': { exists: false } }, true],
    ['exists false, under a missing field', { 'nothing.at.all': { exists: false } }, true],
    ['exists true and ne together', { 'payload.tag': { exists: true, ne: 'spam' } }, true],
    // paths through non-objects and arrays
    ['arrays are not indexed', { 'payload.list.0': 1 }, false],
    ['arrays are not searched', { 'payload.list.x': 1 }, false],
    ['through a number', { 'payload.room.x': { ne: 1 } }, false],
    ['through a boolean', { 'payload.flag.x': { nin: [1] } }, false],
    ['through null', { 'payload.nul.x': null }, false],
    ['through a string', { 'payload.status.length': 4 }, false],
    ['inherited names are not fields', { 'payload.constructor': { exists: true } }, false],
    ['inherited names are missing', { 'payload.toString': { exists: false } }, true],
    ['__proto__ is not a field', { 'payload.__proto__': { exists: true } }, false],
    ['deep path', { 'payload.nested.a.b': { gte: 1 } }, true],
    ['deep path, object value', { 'payload.nested.a': { in: [{ b: 1 }] } }, true],
    // paths sharing a prefix (looked up once)
    ['a path and one below it', { 'payload.nested': { exists: true }, 'payload.nested.a.b': 1 }, true],
    ['a missing prefix: exists false below holds', { 'missing.a': { exists: false }, 'missing.b.c': { exists: false } }, true],
    ['a missing prefix: anything else below fails', { 'missing.a': { exists: false }, 'missing.b': 1 }, false],
    ['a missing prefix with its own exists false, and exists true below', { missing: { exists: false }, 'missing.x': { exists: true } }, false],
    ['a string field and exists false below it', { 'payload.status': 'open', 'payload.status.x': { exists: false } }, true],
    ['a string field and a condition below it', { 'payload.status': 'open', 'payload.status.x': { ne: 1 } }, false],
    // the example of PROTOCOL.md §9
    [
      'the example of the protocol',
      {
        'payload.room': 7,
        'payload.status': { in: ['open', 'held'] },
        'payload.price': { gte: 10, lt: 100 },
        'payload.tag': { ne: 'spam' },
        'payload.owner': { exists: true },
      },
      true,
    ],
  ])('%s', (_name, filter, expected) => {
    const f = compiled(filter);
    expect(f.matches(N)).toBe(expected);
    expect(reference(filter, N)).toBe(expected); // the reference agrees with the table too
    // The same through a JSON round trip, as pgws gets them.
    expect(compiled(JSON.parse(JSON.stringify(filter)) as Json).matches(JSON.parse(JSON.stringify(N)) as Obj)).toBe(expected);
  });

  it('own __proto__ and constructor fields (from JSON.parse) are fields', () => {
    const n = parseNotificationObject('{"__proto__":{"a":1},"constructor":"x"}');
    expect(n).toBeDefined();
    expect(compiled(JSON.parse('{"__proto__.a":1}') as Json).matches(n)).toBe(true);
    expect(compiled({ constructor: 'x' }).matches(n)).toBe(true);
    expect(compiled({ constructor: { exists: false } }).matches({})).toBe(true);
    expect(compiled(JSON.parse('{"a":{"in":[{"__proto__":1}]}}') as Json).matches(JSON.parse('{"a":{"__proto__":1}}') as Obj)).toBe(true);
    expect(compiled(JSON.parse('{"a":{"in":[{"__proto__":1}]}}') as Json).matches({ a: {} })).toBe(false);
  });

  it('non-object notifications match only the empty filter', () => {
    for (const f of [undefined, {}]) {
      expect(compiled(f).matches(undefined)).toBe(true);
      expect(compiled(f).matches({})).toBe(true);
      expect(compiled(f).matches(N)).toBe(true);
    }
    for (const f of [{ a: { exists: false } }, { a: { ne: 1 } }, { a: 1 }, { a: { nin: [1] } }] as Json[]) {
      expect(compiled(f).matches(undefined)).toBe(false);
    }
    // but an object notification without the field matches `exists: false`
    expect(compiled({ a: { exists: false } }).matches({})).toBe(true);
  });

  it.each<[string, boolean]>([
    ['{"a":1}', true],
    [' \t\r\n{"a":1} ', true],
    ['{}', true],
    ['[1]', false],
    ['"{"', false],
    ['7', false],
    ['null', false],
    ['', false],
    ['   ', false],
    ['{not json', false],
    ['{"a":1}x', false],
    ['\u00a0{"a":1}', false],
    ['plain text', false],
  ])('parseNotificationObject(%j) is an object: %s', (text, isObject) => {
    const parsed = parseNotificationObject(text);
    expect(parsed !== undefined).toBe(isObject);
    if (parsed !== undefined) expect(parsed).toEqual(JSON.parse(text));
  });
});

describe('malformed filters are refused', () => {
  const conditions = (n: number): Obj => Object.fromEntries(Array.from({ length: n }, (_, i) => [`f${i}`, i]));
  it.each<[string, Json, RegExp]>([
    ['an array', [], /must be a JSON object, not an array/],
    ['null', null, /must be a JSON object, not null/],
    ['a string', 'payload.room', /must be a JSON object, not a string/],
    ['a number', 7, /must be a JSON object, not a number/],
    ['a boolean', true, /must be a JSON object, not a boolean/],
    ['an unknown operator', { 'payload.x': { eq: 1 } }, /"payload\.x": unknown operator "eq".*ne in nin/],
    ['an unknown operator beside known ones', { a: { gte: 1, between: [1, 2] } }, /"a": unknown operator "between"/],
    ['an object meant as a value', { a: { x: 1 } }, /unknown operator "x".*"in"/],
    ['an empty operator object', { 'payload.x': {} }, /"payload\.x": an operator object needs at least one operator/],
    ['in: empty', { a: { in: [] } }, /"a": "in" needs a non-empty array/],
    ['in: not an array', { a: { in: 1 } }, /"in" needs a non-empty array/],
    ['in: an object', { a: { in: { x: 1 } } }, /"in" needs a non-empty array/],
    ['nin: empty', { a: { nin: [] } }, /"nin" needs a non-empty array/],
    ['nin: a string', { a: { nin: 'x' } }, /"nin" needs a non-empty array/],
    ['lt: null', { a: { lt: null } }, /"a": "lt" needs a number or a string/],
    ['lte: a boolean', { a: { lte: true } }, /"lte" needs a number or a string/],
    ['gt: an array', { a: { gt: [1] } }, /"gt" needs a number or a string/],
    ['gte: an object', { a: { gte: { x: 1 } } }, /"gte" needs a number or a string/],
    ['exists: a number', { a: { exists: 1 } }, /"a": "exists" needs true or false/],
    ['exists: a string', { a: { exists: 'true' } }, /"exists" needs true or false/],
    ['exists: null', { a: { exists: null } }, /"exists" needs true or false/],
    ['an empty path', { '': 1 }, /path must not be empty/],
    ['a double dot', { 'payload..x': 1 }, /path "payload\.\.x" has an empty name/],
    ['a leading dot', { '.a': 1 }, /path "\.a" has an empty name/],
    ['a trailing dot', { 'a.': 1 }, /path "a\." has an empty name/],
    ['a lone dot', { '.': 1 }, /has an empty name/],
    ['21 plain conditions', conditions(21), /more than 20 conditions/],
    [
      '21 conditions as operators',
      Object.fromEntries(Array.from({ length: 7 }, (_, i) => [`f${i}`, { gte: 1, lt: 2, ne: 3 }])),
      /more than 20 conditions/,
    ],
    ['over 4096 bytes', { a: 'x'.repeat(5000) }, /filter is 5008 bytes, at most 4096/],
    ['over 4096 bytes in UTF-8, not in characters', { a: 'é'.repeat(2100) }, /filter is 4208 bytes/],
    ['a number that is not JSON', { a: Number.NaN }, /not JSON/],
    ['an in value that is not JSON', { a: { in: [1, Number.POSITIVE_INFINITY] } }, /not JSON/],
    ['an lt that is not JSON', { a: { lt: Number.NaN } }, /"lt" needs a number or a string/],
  ])('%s', (_name, filter, message) => {
    expect(refused(filter)).toMatch(message);
  });

  it('takes the size the client sent when given', () => {
    expect(refused({ a: 1 }, MAX_FILTER_BYTES + 1)).toMatch(/4097 bytes, at most 4096/);
    expect(compiled({ a: 1 }, MAX_FILTER_BYTES).conditions).toBe(1);
    expect(refused({}, MAX_FILTER_BYTES + 1)).toMatch(/at most 4096/);
    // exactly 4096 bytes of JSON text is allowed
    const filler = 4096 - JSON.stringify({ a: '' }).length;
    expect(compiled({ a: 'x'.repeat(filler) }).conditions).toBe(1);
    expect(refused({ a: 'x'.repeat(filler + 1) })).toMatch(/4097 bytes/);
  });

  it('allows exactly 20 conditions', () => {
    expect(MAX_FILTER_CONDITIONS).toBe(20);
    expect(compiled(conditions(20)).conditions).toBe(20);
    const ops = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`f${i}`, { gte: 1, lt: 2, ne: 3, exists: true }]));
    expect(compiled(ops).conditions).toBe(20);
  });

  it('never echoes long input', () => {
    const long = 'q'.repeat(1000);
    for (const filter of [{ [long]: { [long]: 1 } }, { [`${long}..x`]: 1 }, { a: { [long]: 1 } }, { [long]: { in: [] } }]) {
      const message = refused(filter);
      expect(message.length).toBeLessThan(250);
      expect(message).not.toContain('q'.repeat(61));
    }
  });
});

describe('canonical keys', () => {
  const key = (filter: Json | undefined): string => compiled(filter).key;
  const parsed = (text: string): Json => JSON.parse(text) as Json;

  it('the empty filter', () => {
    expect(key(undefined)).toBe('');
    expect(key({})).toBe('');
    expect(compiled({}).conditions).toBe(0);
    expect(compiled(undefined).conditions).toBe(0);
    expect(key({ a: 1 })).not.toBe('');
  });

  it.each<[string, Json, Json]>([
    ['paths reordered', { a: 1, b: 2 }, { b: 2, a: 1 }],
    ['operators reordered', { a: { gte: 1, lt: 5 } }, { a: { lt: 5, gte: 1 } }],
    ['in reordered', { a: { in: [3, 1, 2] } }, { a: { in: [1, 2, 3] } }],
    ['in with duplicates', { a: { in: [1, 2, 2, 1] } }, { a: { in: [2, 1] } }],
    ['nin reordered', { a: { nin: ['x', null, true] } }, { a: { nin: [true, 'x', null] } }],
    ['object keys inside values', { a: { in: [{ x: 1, y: { p: 1, q: 2 } }] } }, { a: { in: [{ y: { q: 2, p: 1 }, x: 1 }] } }],
    ['object keys inside ne', { a: { ne: { x: 1, y: 2 } } }, { a: { ne: { y: 2, x: 1 } } }],
    ['1.0 and 1', parsed('{"a":1.0,"b":{"gt":1e2},"c":{"in":[10,1E1,10.0]}}'), { a: 1, b: { gt: 100 }, c: { in: [10] } }],
    ['-0 and 0', parsed('{"a":-0}'), { a: 0 }],
    ['whitespace', parsed(' { "a" : { "in" : [ 1 , 2 ] } ,\n "b" : "x" } '), parsed('{"b":"x","a":{"in":[2,1]}}')],
    ['escapes in strings', parsed('{"\\u0061":"\\u00e9"}'), { a: 'é' }],
  ])('equal: %s', (_name, a, b) => {
    expect(key(a)).toBe(key(b));
    expect(compiled(a).conditions).toBe(compiled(b).conditions);
  });

  it.each<[string, Json, Json]>([
    ['different values', { a: 1 }, { a: 2 }],
    ['number and string', { a: 1 }, { a: '1' }],
    ['null and false', { a: null }, { a: false }],
    ['different paths', { a: 1 }, { b: 1 }],
    ['a dotted path and a name with a dot', { 'a.b': 1 }, { a: { in: [{ b: 1 }] } }],
    ['in and nin', { a: { in: [1] } }, { a: { nin: [1] } }],
    ['array order is part of a value', { a: [1, 2] }, { a: [2, 1] }],
    ['in lists of arrays', { a: { in: [[1, 2]] } }, { a: { in: [[2, 1]] } }],
    ['exists true and false', { a: { exists: true } }, { a: { exists: false } }],
    ['lt and lte', { a: { lt: 1 } }, { a: { lte: 1 } }],
    ['a plain array and in', { a: [1] }, { a: { in: [1] } }],
    ['more conditions', { a: 1 }, { a: 1, b: 1 }],
    ['quotes in names', { 'a":1,"b': 1 }, { a: 1, b: 1 }],
    ['quotes in values', { a: 'x","b":"y' }, { a: 'x', b: 'y' }],
  ])('different: %s', (_name, a, b) => {
    expect(key(a)).not.toBe(key(b));
  });

  it('a key compiles to itself', () => {
    const f = { z: { in: [{ b: 2, a: 1 }, 3] }, 'p.q': { gte: 'a', lt: 'b' }, a: [1, { y: 1, x: 2 }] };
    const k = key(f);
    expect(key(parsed(k))).toBe(k);
  });
});

// ---------------------------------------------------------------------------------------------
// Differential: the compiled filter against the reference on random notifications and filters.

describe('differential: compiled filter vs the reference', () => {
  it('matches(n) === reference(f, n) for random filters and notifications', () => {
    let matched = 0;
    let runs = 0;
    fc.assert(
      fc.property(pair, ([f, n]) => {
        const expected = reference(f, n);
        runs++;
        if (expected) matched++;
        expect(compiled(f).matches(asNotification(n))).toBe(expected);
      }),
      { seed: 20261203, numRuns: 2000 },
    );
    // The generators are only useful when both answers are common.
    expect(matched).toBeGreaterThan(runs * 0.15);
    expect(matched).toBeLessThan(runs * 0.85);
  });

  it('string order is code point order', () => {
    const strings = fc.string({ unit: fc.constantFrom('a', 'Z', '\uFFFF', '\uE000', '\uD83D', '\uDE00', '\u{1F600}', '\u{10000}'), maxLength: 4 });
    fc.assert(
      fc.property(strings, strings, (field, operand) => {
        for (const op of ['lt', 'lte', 'gt', 'gte']) {
          const f = { s: { [op]: operand } };
          expect(compiled(f).matches({ s: field })).toBe(reference(f, { s: field }));
        }
      }),
      { seed: 20261204, numRuns: 2000 },
    );
  });

  it('rewritten filters (order, duplicates, whitespace) keep their key; equal keys match alike', () => {
    fc.assert(
      fc.property(randomFilter, randomFilter, fc.array(notification, { maxLength: 5 }), (f, g, ns) => {
        const cf = compiled(f);
        const again = compiled(JSON.parse(JSON.stringify(rewrite(f), null, 2)) as Json);
        expect(again.key).toBe(cf.key);
        expect(again.conditions).toBe(cf.conditions);
        expect(compiled(JSON.parse(cf.key === '' ? '{}' : cf.key) as Json).key).toBe(cf.key);
        const cg = compiled(g);
        for (const n of ns) {
          expect(again.matches(asNotification(n))).toBe(cf.matches(asNotification(n)));
          if (cf.key === cg.key) expect(reference(g, n)).toBe(reference(f, n));
        }
      }),
      { seed: 20261205, numRuns: 1000 },
    );
  });

  it('subscriptions receive exactly their matching notifications, in order, each distinct filter evaluated once', () => {
    const text: fc.Arbitrary<string> = fc.oneof(
      { weight: 8, arbitrary: notification.map((n) => JSON.stringify(n)) },
      { weight: 1, arbitrary: notification.map((n) => ` \n${JSON.stringify(n, null, 1)}`) },
      { weight: 1, arbitrary: fc.constantFrom('not json', '{bad', '', '[{"a":1}]', '"{}"', '{"a":1} trailing') },
    );
    fc.assert(
      fc.property(
        fc.array(randomFilter, { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 12 }),
        fc.array(text, { maxLength: 30 }),
        (pool, picks, texts) => {
          // Subscriptions pick filters from a small pool, so several share one filter.
          const subs = picks.map((i) => pool[i % pool.length] as Obj);
          const byKey = new Map<string, CompiledFilter>();
          const keyOf = subs.map((f) => {
            const c = compiled(f);
            if (!byKey.has(c.key)) byKey.set(c.key, c);
            return c.key;
          });
          const received: string[][] = subs.map(() => []);
          let evaluations = 0;
          for (const t of texts) {
            const parsed = parseNotificationObject(t);
            const verdict = new Map<string, boolean>();
            for (const [k, c] of byKey) {
              evaluations++;
              verdict.set(k, c.matches(parsed));
            }
            keyOf.forEach((k, i) => {
              if (verdict.get(k) === true) received[i]?.push(t);
            });
          }
          expect(evaluations).toBe(texts.length * byKey.size);
          subs.forEach((f, i) => {
            expect(received[i]).toEqual(texts.filter((t) => reference(f, refParse(t))));
          });
        },
      ),
      { seed: 20261206, numRuns: 500 },
    );
  });
});
