// The v2 subscription table (src/v2/subscriptions.ts): triples shared by id, holders counted,
// and per notification one evaluation per distinct filter and one frame per matching triple,
// checked against a plain per-subscription evaluation with fast-check.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileFilter, type CompiledFilter } from '../src/v2/filter.js';
import { createSubscriptionTable, V2_TOPIC_PREFIX } from '../src/v2/subscriptions.js';
import type { Json } from '../src/types.js';

function filter(value: Json | undefined): CompiledFilter {
  const compiled = compileFilter(value);
  if (!compiled.ok) throw new Error(compiled.message);
  return compiled.filter;
}

/** A filter whose evaluations are counted. */
function counted(value: Json): { filter: CompiledFilter; calls: () => number } {
  const inner = filter(value);
  let calls = 0;
  return {
    filter: {
      key: inner.key,
      conditions: inner.conditions,
      matches: (n) => {
        calls += 1;
        return inner.matches(n);
      },
    },
    calls: () => calls,
  };
}

describe('subscription table', () => {
  it('gives every holder of one triple the same subscription, and each triple its own', () => {
    const table = createSubscriptionTable();
    const a = table.acquire('chat', filter({ 'payload.room': 7 }), true);
    // The same filter written differently is the same triple.
    const b = table.acquire('chat', filter(JSON.parse('{ "payload.room" : 7.0 }') as Json), true);
    expect(b).toBe(a);
    expect(table.acquire('chat', filter({ 'payload.room': 7 }), false).sub).not.toBe(a.sub);
    expect(table.acquire('other', filter({ 'payload.room': 7 }), true).sub).not.toBe(a.sub);
    expect(table.acquire('chat', filter(undefined), true).sub).not.toBe(a.sub);
    expect(table.size()).toBe(4);
    expect(a.topic.startsWith(V2_TOPIC_PREFIX)).toBe(true);
  });

  it('forgets a subscription when its last holder releases it; a later acquire gets a new id', () => {
    const table = createSubscriptionTable();
    const first = table.acquire('chat', filter(undefined), true);
    table.acquire('chat', filter(undefined), true);
    table.release(first);
    expect(table.size()).toBe(1);
    expect(table.deliveries('chat', '"x"')).toHaveLength(1);
    table.release(first);
    expect(table.size()).toBe(0);
    expect(table.deliveries('chat', '"x"')).toEqual([]);
    // A stale release changes nothing.
    table.release(first);
    const again = table.acquire('chat', filter(undefined), true);
    expect(again.sub).not.toBe(first.sub);
    table.release(first);
    expect(table.size()).toBe(1);
  });

  it('evaluates each distinct filter once per notification, however many triples share it', () => {
    const table = createSubscriptionTable();
    const room = counted({ 'payload.room': 7 });
    table.acquire('chat', room.filter, true);
    table.acquire('chat', room.filter, true);
    table.acquire('chat', room.filter, false);
    const deliveries = table.deliveries('chat', '{"channel":"chat","payload":{"room":7}}');
    expect(room.calls()).toBe(1);
    expect(deliveries.map((d) => d.subscription.echo)).toEqual([true, false]);
  });

  it('builds the message frame once per triple, with the notification spliced in (or as a string when it is not JSON)', () => {
    const table = createSubscriptionTable();
    const all = table.acquire('chat', filter(undefined), true);
    const rooms = table.acquire('chat', filter({ 'payload.room': 7 }), true);
    const text = '{"channel":"chat","payload":{"room":7}}';
    expect(table.deliveries('chat', text)).toEqual([
      { subscription: all, frame: `{"type":"message","sub":"${all.sub}","channel":"chat","data":${text}}` },
      { subscription: rooms, frame: `{"type":"message","sub":"${rooms.sub}","channel":"chat","data":${text}}` },
    ]);
    // Not JSON: only the empty filter matches, and the text travels as a JSON string.
    expect(table.deliveries('chat', 'plain text')).toEqual([
      { subscription: all, frame: `{"type":"message","sub":"${all.sub}","channel":"chat","data":"plain text"}` },
    ]);
    expect(table.deliveries('nobody', text)).toEqual([]);
  });

  it('matches a differential reference: each subscription gets exactly the notifications its own filter matches', () => {
    const value = fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constantFrom('a', 'b'), fc.boolean());
    const filterArb = fc.oneof(
      fc.constant<Json>({}),
      value.map((v): Json => ({ 'payload.k': v })),
      value.map((v): Json => ({ 'payload.k': { ne: v } })),
      fc.boolean().map((b): Json => ({ 'payload.k': { exists: b } })),
    );
    const notificationArb = fc.oneof(
      fc.option(value, { nil: undefined }).map((v) => JSON.stringify({ channel: 'c', payload: v === undefined ? {} : { k: v } })),
      fc.constantFrom('not json', '42', '[1]'),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(filterArb, fc.boolean()), { minLength: 1, maxLength: 8 }), fc.array(notificationArb, { maxLength: 10 }), (subs, notes) => {
        const table = createSubscriptionTable();
        const held = subs.map(([f, echo]) => table.acquire('c', filter(f), echo));
        for (const text of notes) {
          const got = new Set(table.deliveries('c', text).map((d) => d.subscription.sub));
          let object: { readonly [k: string]: Json } | undefined;
          try {
            const parsed: unknown = JSON.parse(text);
            object = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as { readonly [k: string]: Json }) : undefined;
          } catch {
            object = undefined;
          }
          const expected = new Set(held.filter((s) => s.filter.matches(object)).map((s) => s.sub));
          expect(got).toEqual(expected);
        }
      }),
      { seed: 20261203, numRuns: 500 },
    );
  });
});
