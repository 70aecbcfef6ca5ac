// Protocol v2 fan-out without a filter, against v1 (issue 13: v2 at least 90% of v1's
// frames/s, same readers). The fan-out scenario's load: one channel, N readers, the producer
// as fast as delivered; the readers are v1 sockets (`/bench/<token>`) in one variant and v2
// sockets subscribed to `bench` with no filter in the other. Every v2 socket shares one
// subscription, so a notification is one `message` frame published to one topic, as v1's
// notification text is. A v2 frame counts as one delivered frame (its `subscribed` answer
// does not), and latency is read from the `"t":` of the notification inside `data`.
// The variants' repetitions are interleaved (v1, v2, v1, v2...); the notes below the table
// give v2/v1 per system, median of the per-repetition ratios.
// The bare-uWS ceiling publishes, per notification, the notification text to the v1 readers
// and pgws's `message` frame for it to the v2 readers: the bytes pgws would send.
import { notificationText } from '../lib/producer.mjs';
import { PGWS, count, medianOf, pairedRatios, pct, runSaturated, subscribeFrame, v2MessageFrame, v2Target } from './v2-shared.mjs';

const SYSTEMS = [...PGWS, 'bare-uws'];

export const v2Fanout = {
  id: 'v2-fanout',
  title: 'v2 fan-out: 1 channel, N readers, v1 sockets vs v2 sockets subscribed with no filter',
  roles: ['relay', 'fanout-ceiling'],
  primary: { key: 'framesPerSec', label: 'frames/s', better: 'higher' },
  ratios: ['of ceiling'],
  interleaveVariants: true,
  columns: ['framesPerSec', 'p50', 'p99', 'p999', 'serverCpu', 'loadgenCpu', 'dbCpu', 'closed'],
  variants: (quick, { smoke } = {}) =>
    (smoke ? [200] : quick ? [1000] : [1000, 10_000]).flatMap((readers) => [
      { label: `${count(readers)} readers, v1`, readers, protocol: 1, systems: SYSTEMS },
      { label: `${count(readers)} readers, v2 no filter`, readers, protocol: 2, systems: SYSTEMS },
    ]),
  run(system, v, ctx) {
    const token = ctx.tokens.reader;
    const ceiling = system.role === 'fanout-ceiling';
    const common = {
      readers: v.readers,
      perNotification: v.readers,
      // As the fanout scenario: ~200k frames in flight at most.
      window: Math.max(20, Math.round(200_000 / v.readers)),
      batch: Math.max(1, Math.min(20, Math.round(20_000 / v.readers))),
      channelOf: () => 'bench',
    };
    if (v.protocol === 1) return runSaturated(system, ctx, { ...common, paths: Array.from({ length: v.readers }, () => `/bench/${token}`) });
    const target = ceiling ? '/bench/v2' : v2Target(token, [subscribeFrame(1, 'bench')]);
    return runSaturated(system, ctx, {
      ...common,
      paths: Array.from({ length: v.readers }, () => target),
      // pgws sends its one subscription's frame; the ceiling publishes that frame's text.
      format: ceiling
        ? { text: (channel, seq) => notificationText(channel, seq), lines: (channel, text) => `${channel}\t${v2MessageFrame(0, channel, text)}\n` }
        : undefined,
    });
  },
  notes(entries, { summary }) {
    const lines = [];
    for (const e1 of entries.filter((e) => e.variant.endsWith(', v1'))) {
      const e2 = entries.find((e) => e.variant === e1.variant.replace(', v1', ', v2 no filter'));
      if (!e2) continue;
      for (const sys of e1.systems) {
        const paired = pairedRatios(e2, e1, sys.id, 'framesPerSec');
        const v1 = medianOf(e1, sys.id, 'framesPerSec', summary);
        const v2 = medianOf(e2, sys.id, 'framesPerSec', summary);
        if (!paired || !v1 || !v2) continue;
        const range = paired.n > 1 ? ` [${pct(paired.min)}-${pct(paired.max)}]` : '';
        const goal = sys.id === 'bare-uws' ? ' (the ceiling: what the longer v2 frame costs by itself)' : ` (issue 13: at least 90%: ${paired.median >= 0.9 ? 'met' : 'NOT met'})`;
        lines.push(
          `${e1.variant.replace(', v1', '')}, ${sys.name}: v2/v1 frames/s ${pct(paired.median)}${range} per repetition, ${pct(v2 / v1)} of medians${goal}`,
        );
      }
    }
    return lines;
  },
};
