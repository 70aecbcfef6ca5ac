// Pieces shared by the protocol v2 scenarios (v2-fanout, v2-filters, v2-memory):
// the v2 socket target for the load generator, the frames it sends and the notes
// that compare variants of one run.
import { messageFrame } from '../../dist/v2/frames.js';
import { runFanout } from './fanout.mjs';

/** The systems that speak protocol v2. */
export const PGWS = ['pgws-uws', 'pgws-ws'];

/**
 * A v2 socket for wsclient's connect(): opens `/` offering `pgws.v2` and the token as a
 * `pgws.bearer.<jwt>` subprotocol (or `/<jwt>` offering `pgws.v2` alone when `tokenInPath`),
 * requires the server to choose `pgws.v2`, sends `subscribes` once open and counts as open
 * once each is answered `subscribed`.
 */
export function v2Target(token, subscribes, { tokenInPath = false } = {}) {
  return {
    path: tokenInPath ? `/${token}` : '/',
    headers: { 'Sec-WebSocket-Protocol': tokenInPath ? 'pgws.v2' : `pgws.v2, pgws.bearer.${token}` },
    protocol: 'pgws.v2',
    send: subscribes,
  };
}

/** A `subscribe` request; no filter member when `filter` is undefined. */
export function subscribeFrame(id, channel, filter) {
  return JSON.stringify({ type: 'subscribe', id, channel, ...(filter === undefined ? {} : { filter }) });
}

/**
 * The `message` frame pgws sends for a notification to subscription number `n` (pgws's
 * own encoder, dist/v2/frames.js; the id is what pgws gives its n-th subscription, `s`
 * and base 36), so a ceiling can publish the very same bytes.
 */
export function v2MessageFrame(n, channel, notificationText) {
  return messageFrame(`s${n.toString(36)}`, channel, notificationText, true);
}

/** '1k' for 1000, '10k' for 10000, '200' for 200. */
export const count = (n) => (n >= 1000 && n % 1000 === 0 ? `${n / 1000}k` : String(n));

/** The median of a figure over a system's runs in one variant, or undefined. */
export function medianOf(entry, systemId, key, summary) {
  const sys = entry?.systems.find((s) => s.id === systemId);
  return sys ? summary(sys.runs, key)?.median : undefined;
}

/**
 * Per-repetition ratios a/b of a figure, pairing the i-th runs of two variants (the runs of
 * interleaved variants are paired in time): { median, min, max } or undefined.
 */
export function pairedRatios(entryA, entryB, systemId, key) {
  const a = entryA?.systems.find((s) => s.id === systemId)?.runs ?? [];
  const b = entryB?.systems.find((s) => s.id === systemId)?.runs ?? [];
  const ratios = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (Number.isFinite(a[i][key]) && Number.isFinite(b[i][key]) && b[i][key] !== 0) ratios.push(a[i][key] / b[i][key]);
  }
  if (ratios.length === 0) return undefined;
  ratios.sort((x, y) => x - y);
  return { median: ratios[Math.floor((ratios.length - 1) / 2)], min: ratios[0], max: ratios[ratios.length - 1], n: ratios.length };
}

export const pct = (r) => `${(r * 100).toFixed(0)}%`;

/**
 * The fan-out scenario's saturated run (fanout.mjs runFanout) with a target per reader:
 * `paths` (v2 targets, or plain paths for the ceiling), `format` what the producer sends
 * (producer.mjs), `channelOf(seq)` the producer's entry for notification `seq`.
 * Adds notifPerSec and serverUsPerNotif (server CPU-µs per notification).
 */
export async function runSaturated(system, ctx, o) {
  const metrics = await runFanout(system, ctx, o);
  const notifPerSec = metrics.framesPerSec / o.perNotification;
  return { ...metrics, notifPerSec, framesPerNotif: o.perNotification, serverUsPerNotif: notifPerSec > 0 ? (metrics.serverCpu / 100 / notifPerSec) * 1e6 : NaN };
}
