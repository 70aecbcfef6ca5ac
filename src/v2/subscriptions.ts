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
   * The text is parsed at most once (not at all when `parsed` is given: the router's parse), and
   * each distinct filter evaluated at most once.
   */
  deliveries(channel: string, notificationText: string, offset?: string, parsed?: ParsedNotification): readonly Delivery[];
  /** Subscriptions held now (for tests and metrics). */
  size(): number;
}

/** v2 topics start with this character; v1 topics (channel names) must get another first character. */
export const V2_TOPIC_PREFIX = '\u0002';

interface Entry {
  readonly subscription: Subscription;
  holders: number;
}

/** The subscriptions of one channel with one filter (echo on, echo off): evaluated together. */
interface FilterGroup {
  readonly filter: CompiledFilter;
  /** At most two: one per echo value. */
  readonly entries: Entry[];
}

const NONE: readonly Delivery[] = [];

export function createSubscriptionTable(): SubscriptionTable {
  /** channel -> filter key -> the subscriptions sharing that filter. */
  const byChannel = new Map<string, Map<string, FilterGroup>>();
  const byId = new Map<string, Entry>();
  let next = 0;

  return {
    acquire(channel, filter, echo) {
      let groups = byChannel.get(channel);
      if (groups === undefined) byChannel.set(channel, (groups = new Map()));
      let group = groups.get(filter.key);
      if (group === undefined) groups.set(filter.key, (group = { filter, entries: [] }));
      let entry = group.entries.find((e) => e.subscription.echo === echo);
      if (entry === undefined) {
        const sub = `s${(next++).toString(36)}`;
        entry = { subscription: { sub, channel, filter: group.filter, echo, topic: `${V2_TOPIC_PREFIX}${sub}` }, holders: 0 };
        group.entries.push(entry);
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
      const groups = byChannel.get(subscription.channel);
      const group = groups?.get(subscription.filter.key);
      if (groups === undefined || group === undefined) return;
      group.entries.splice(group.entries.indexOf(entry), 1);
      if (group.entries.length === 0) groups.delete(subscription.filter.key);
      if (groups.size === 0) byChannel.delete(subscription.channel);
    },

    deliveries(channel, notificationText, offset, given) {
      const groups = byChannel.get(channel);
      if (groups === undefined) return NONE;
      const parsed = given ?? parseNotification(notificationText);
      const out: Delivery[] = [];
      // One evaluation per distinct filter; its subscriptions (echo on and off) share the verdict.
      for (const { filter, entries } of groups.values()) {
        if (!filter.matches(parsed.object)) continue;
        for (const { subscription } of entries) {
          out.push({ subscription, frame: messageFrame(subscription.sub, channel, notificationText, parsed.isJson, offset) });
        }
      }
      return out;
    },

    size: () => byId.size,
  };
}

/** Whether a notification's text is JSON (it is then spliced into frames as is), and the object it holds, if one. */
export interface ParsedNotification {
  readonly isJson: boolean;
  readonly object: { readonly [k: string]: Json } | undefined;
}

/** The one JSON.parse of a notification. Never throws. */
export function parseNotification(text: string): ParsedNotification {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { isJson: false, object: undefined };
  }
  const object = value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as { readonly [k: string]: Json }) : undefined;
  return { isJson: true, object };
}
