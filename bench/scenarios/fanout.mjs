// Scenario 1, fan-out: one channel, N readers, the producer as fast as the
// system keeps up (a closed loop bounded by a window of undelivered
// notifications). Delivered frames/s and reader-side latency.
import { driveSaturated } from '../lib/measure.mjs';
import { withReaders } from '../lib/readers.mjs';

export const fanout = {
  id: 'fanout',
  title: 'fan-out: 1 channel, N readers, producer as fast as delivered',
  roles: ['relay', 'fanout-ceiling'],
  primary: { key: 'framesPerSec', label: 'frames/s', better: 'higher' },
  columns: ['framesPerSec', 'p50', 'p99', 'p999', 'serverCpu', 'loadgenCpu', 'dbCpu', 'closed'],
  variants: (quick) => (quick ? [{ label: '1k readers', readers: 1000 }] : [1000, 10000].map((n) => ({ label: `${n / 1000}k readers`, readers: n }))),
  run: (system, v, ctx) =>
    runFanout(system, ctx, {
      readers: v.readers,
      path: (token) => `/bench/${token}`,
      token: ctx.tokens.reader,
      perNotification: v.readers,
      // ~200k frames in flight at most: enough to keep every stage busy, small enough for 1 MiB socket limits.
      window: Math.max(20, Math.round(200_000 / v.readers)),
      batch: Math.max(1, Math.min(20, Math.round(20_000 / v.readers))),
      channelOf: () => 'bench',
    }),
};

/**
 * The saturated run of N readers: on `o.path(o.token)`, or on `o.paths` (one target per reader,
 * the v2 scenarios); `o.format`: what the producer sends (producer.mjs).
 */
export function runFanout(system, ctx, o) {
  const targets = o.paths === undefined ? { path: o.path(o.token) } : { paths: o.paths };
  return withReaders(system, ctx, { readers: o.readers, ...targets, sampleEvery: o.sampleEvery, format: o.format }, (running) =>
    driveSaturated({
      ...running,
      readers: o.readers,
      perNotification: o.perNotification,
      window: o.window,
      batch: o.batch,
      channelOf: o.channelOf,
      warmupMs: ctx.warmupMs,
      durationMs: ctx.durationMs,
    }),
  );
}
