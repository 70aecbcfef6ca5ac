// Scenario 3, inbound: W writer sockets send frames as fast as they are
// accepted (bounded by a window of frames not yet seen as NOTIFYs); a raw
// LISTEN client (postgres.js, on the generator core) counts the NOTIFYs.
// Ceiling (a) stands in the relay's place and pipelines pg_notify itself.
import postgres from 'postgres';
import { cpuMeter, sleep } from '../lib/measure.mjs';
import { LoadGen } from '../lib/procs.mjs';
import { LISTEN_CHANNEL } from '../lib/producer.mjs';
import { now } from '../lib/wsclient.mjs';

const WINDOW = 4000;
// pgws closes a writer with 1013 once 256 of its frames wait for the database
// (PGWS_MAX_QUEUED_MESSAGES), so relays get a window the writers can keep
// without tripping that limit: 64 frames in flight per writer.
const PER_WRITER_WINDOW = 64;

export const inbound = {
  id: 'inbound',
  title: 'inbound: W writers as fast as accepted, NOTIFYs/s seen by a raw LISTEN client',
  roles: ['relay', 'listen-ceiling'],
  primary: { key: 'notifyPerSec', label: 'NOTIFY/s', better: 'higher' },
  columns: ['notifyPerSec', 'serverCpu', 'loadgenCpu', 'dbCpu', 'closed'],
  variants: (quick) => (quick ? [10] : [10, 200]).map((w) => ({ label: `${w} writers`, writers: w })),
  async run(system, v, ctx) {
    const listen = postgres(ctx.dbUri, { max: 1, fetch_types: false, onnotice: () => undefined });
    let seen = 0;
    await listen.listen(LISTEN_CHANNEL, () => seen++);
    const server = await ctx.startServer(system);
    const loadgen = system.role === 'relay' ? new LoadGen(1) : undefined;
    let allowTimer;
    try {
      let target;
      if (loadgen) {
        const opened = await loadgen.open({ port: server.port, count: v.writers, path: `/in/${ctx.tokens.writer}` });
        if (opened.failed) throw new Error(`${opened.failed} writers failed to open: ${opened.firstError}`);
        loadgen.send({ cmd: 'write', tag: 1 });
        target = loadgen;
      } else {
        target = server;
      }
      const base = seen;
      const window = loadgen ? Math.min(WINDOW * 10, v.writers * PER_WRITER_WINDOW) : WINDOW;
      allowTimer = setInterval(() => target.send({ cmd: 'allow', upTo: seen - base + window }), 5);
      await sleep(ctx.warmupMs);
      const s0 = seen;
      const t0 = now();
      const cpu = cpuMeter(server.pid, loadgen?.pids ?? [], ctx.dbPid);
      await sleep(ctx.durationMs);
      const s1 = seen;
      const t1 = now();
      return { notifyPerSec: (s1 - s0) / ((t1 - t0) / 1000), ...cpu(), closed: loadgen?.totalClosed() ?? 0 };
    } finally {
      clearInterval(allowTimer);
      await loadgen?.close();
      await server.stop();
      await listen.end({ timeout: 1 });
    }
  },
};
