// Scenario 5, latency under steady load: N readers on one channel, a fixed
// rate of notifications (one per statement), reader-side p50/p99/p99.9.
import { driveRate } from '../lib/measure.mjs';
import { withReaders } from '../lib/readers.mjs';

export const latency = {
  id: 'latency',
  // Full run: 3 repetitions of 10 s each per rate, i.e. 30 s of steady load per
  // system and rate, which keeps the full run under 20 minutes.
  title: 'latency under steady load: 1k readers, 1k (and 10) notifications/s',
  roles: ['relay', 'fanout-ceiling'],
  primary: { key: 'p99', label: 'p99 ms', better: 'lower' },
  columns: ['notifPerSec', 'framesPerSec', 'p50', 'p99', 'p999', 'serverCpu', 'loadgenCpu', 'dbCpu', 'closed'],
  // The issue's load (1k/s to 1k readers = 1M frames/s) saturates both cores of a
  // 2-core machine, so its latency is mostly queueing. The full run adds 10/s
  // (10k frames/s, both cores mostly idle): what is left there is the cost of one
  // notification reaching 1000 sockets one send() at a time, plus the database hop.
  variants: (quick) =>
    (quick ? [1000] : [1000, 10]).map((rate) => ({
      label: `1k readers, ${rate >= 1000 ? `${rate / 1000}k` : rate}/s, ${quick ? 2 : 10} s`,
      readers: 1000,
      rate,
      durationMs: quick ? 2000 : 10_000,
    })),
  run: (system, v, ctx) =>
    withReaders(system, ctx, { readers: v.readers, path: `/bench/${ctx.tokens.reader}` }, (running) =>
      driveRate({
        ...running,
        rate: v.rate,
        channelOf: () => 'bench',
        warmupMs: ctx.quick ? 300 : 1000,
        durationMs: v.durationMs,
      }),
    ),
};
