// Scenario 1, fan-out: one channel, N readers, the producer as fast as the
// system keeps up (a closed loop bounded by a window of undelivered
// notifications). Delivered frames/s and reader-side latency.
import { driveSaturated } from '../lib/measure.mjs';
import { LoadGen } from '../lib/procs.mjs';
import { createProducer } from '../lib/producer.mjs';

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

export async function runFanout(system, ctx, o) {
  const server = await ctx.startServer(system);
  const loadgen = new LoadGen(Math.ceil(o.readers / 5000));
  let producer;
  try {
    const opened = await loadgen.open({ port: server.port, count: o.readers, path: o.path(o.token), sampleEvery: o.sampleEvery ?? 10 });
    if (opened.failed) throw new Error(`${opened.failed} of ${o.readers} readers failed to open: ${opened.firstError}`);
    producer = await createProducer(system, { dbUri: ctx.dbUri, feedPort: server.feedPort });
    return await driveSaturated({
      producer,
      loadgen,
      readers: o.readers,
      perNotification: o.perNotification,
      window: o.window,
      batch: o.batch,
      channelOf: o.channelOf,
      warmupMs: ctx.warmupMs,
      durationMs: ctx.durationMs,
      serverPid: server.pid,
      dbPid: ctx.dbPid,
    });
  } finally {
    await producer?.close().catch(() => undefined);
    await loadgen.close();
    await server.stop();
  }
}
