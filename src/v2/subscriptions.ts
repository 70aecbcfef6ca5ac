// The server-wide table of v2 subscriptions (PROTOCOL.md §9), shaped so that fan-out stays in
// the engine: a subscription is the triple (channel, canonical filter key, echo), shared by
// every socket that asks for the same triple. Its `sub` id belongs to the triple, not to a
// socket, so every socket of a subscription receives the very same `message` frame text: a
// notification costs one filter evaluation per distinct filter and one frame (and one engine
// publish to the subscription's topic) per distinct triple, however many sockets share it.
// Nothing here knows sockets or the database; the transport keeps who is on which topic.
import type { Json } from '../types.js';
import type { CompiledFilter } from './filter.js';
import { messageFrame } from './frames.js';

export interface Subscription {
  /** The id in `subscribed` and `message` frames: the same for every socket of this triple. */
  readonly sub: string;
  readonly channel: string;
  readonly filter: CompiledFilter;
  /** false: the socket whose publish caused a notification is left out (the transport's `except`). */
  readonly echo: boolean;
  /** The engine topic of this subscription: never equal to a v1 topic, which starts otherwise. */
  readonly topic: string;
}

/** One frame to publish to one subscription's topic. */
export interface Delivery {
  readonly subscription: Subscription;
  readonly frame: string;
}

export interface SubscriptionTable {
  /** The subscription of this triple (made on first use), with one more holder. */
  acquire(channel: string, filter: CompiledFilter, echo: boolean): Subscription;
  /** One holder fewer; at none the subscription is forgotten (a later acquire makes a new id). */
  release(subscription: Subscription): void;
  /**
   * What a notification on `channel` sends: one frame per subscription whose filter matches.
   * The text is parsed at most once, and each distinct filter evaluated at most once.
   */
  deliveries(channel: string, notificationText: string): readonly Delivery[];
  /** Subscriptions held now (for tests and metrics). */
  size(): number;
}

/** v2 topics start with this character; v1 topics (channel names) must get another first character. */
export const V2_TOPIC_PREFIX = '\u0002';

interface Entry {
  readonly subscription: Subscription;
  holders: number;
}

export function createSubscriptionTable(): SubscriptionTable {
  /** channel -> triple key -> entry. */
  const byChannel = new Map<string, Map<string, Entry>>();
  const byId = new Map<string, Entry>();
  let next = 0;

  return {
    acquire(channel, filter, echo) {
      let triples = byChannel.get(channel);
      if (triples === undefined) byChannel.set(channel, (triples = new Map()));
      const tripleKey = `${echo ? '1' : '0'}${filter.key}`;
      let entry = triples.get(tripleKey);
      if (entry === undefined) {
        const sub = `s${(next++).toString(36)}`;
        entry = { subscription: { sub, channel, filter, echo, topic: `${V2_TOPIC_PREFIX}${sub}` }, holders: 0 };
        triples.set(tripleKey, entry);
        byId.set(sub, entry);
      }
      entry.holders += 1;
      return entry.subscription;
    },

    release(subscription) {
      const entry = byId.get(subscription.sub);
      if (entry === undefined || entry.subscription !== subscription) return;
      entry.holders -= 1;
      if (entry.holders > 0) return;
      byId.delete(subscription.sub);
      const triples = byChannel.get(subscription.channel);
      triples?.delete(`${subscription.echo ? '1' : '0'}${subscription.filter.key}`);
      if (triples?.size === 0) byChannel.delete(subscription.channel);
    },

    deliveries(channel, notificationText) {
      const triples = byChannel.get(channel);
      if (triples === undefined) return [];
      const parsed = parseOnce(notificationText);
      const out: Delivery[] = [];
      // Subscriptions differing only in echo share a filter: its verdict is kept for the
      // next one. Filters are few per channel, so a small map per notification is cheap.
      let verdicts: Map<string, boolean> | undefined;
      for (const { subscription } of triples.values()) {
        const { filter } = subscription;
        let verdict = filter.key === '' ? true : verdicts?.get(filter.key);
        if (verdict === undefined) {
          verdict = filter.matches(parsed.object);
          (verdicts ??= new Map()).set(filter.key, verdict);
        }
        if (verdict) out.push({ subscription, frame: messageFrame(subscription.sub, channel, notificationText, parsed.isJson) });
      }
      return out;
    },

    size: () => byId.size,
  };
}

/** Whether the text is JSON (it is then spliced into frames as is), and the object it holds, if one. */
function parseOnce(text: string): { readonly isJson: boolean; readonly object: { readonly [k: string]: Json } | undefined } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { isJson: false, object: undefined };
  }
  const object = value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as { readonly [k: string]: Json }) : undefined;
  return { isJson: true, object };
}
