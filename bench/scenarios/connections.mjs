// Scenario 4, connections: open N idle authenticated sockets from several
// generator processes (each process is limited to 20,000 descriptors); the
// handshake rate (HS256 verification included) and the server's RSS per socket.
// The bare-uWS ceiling accepts every upgrade with no token check at all.
import { sleep } from '../lib/measure.mjs';
import { LoadGen, cpuSeconds, rssBytes } from '../lib/procs.mjs';
import { now } from '../lib/wsclient.mjs';


export const connections = {
  id: 'connections',
  title: 'connections: N idle authenticated sockets',
  roles: ['relay', 'fanout-ceiling'],
  primary: { key: 'handshakesPerSec', label: 'handshakes/s', better: 'higher' },
  columns: ['handshakesPerSec', 'handshakesPerCpuSec', 'rssPerSocketKiB', 'serverRssMiB', 'serverCpu', 'loadgenCpu', 'failed'],
  variants: (quick) => (quick ? [{ label: '1k sockets', sockets: 1000 }] : [5000, 19_000].map((n) => ({ label: `${n / 1000}k sockets`, sockets: n }))),
  async run(system, v, ctx) {
    const server = await ctx.startServer(system);
    const loadgen = new LoadGen(Math.ceil(v.sockets / 5000));
    try {
      // Warm-up: a first round of handshakes, closed again, so the window below measures
      // handshakes and not V8 compiling the handshake code (perf showed TurboFan on the
      // server core during a cold 5k-socket window).
      const warmup = new LoadGen(1);
      try {
        const warm = await warmup.open({ port: server.port, count: ctx.quick ? 200 : 1000, path: `/conn/${ctx.tokens.reader}`, concurrency: 50 });
        if (warm.failed) throw new Error(`${warm.failed} warm-up sockets failed to open: ${warm.firstError}`);
      } finally {
        await warmup.close();
      }
      await sleep(300);
      const rss0 = rssBytes(server.pid);
      const s0 = cpuSeconds(server.pid);
      const g0 = loadgen.pids.reduce((a, p) => a + cpuSeconds(p), cpuSeconds(process.pid));
      const t0 = now();
      const opened = await loadgen.open({ port: server.port, count: v.sockets, path: `/conn/${ctx.tokens.reader}`, concurrency: 50 });
      const secs = (now() - t0) / 1000;
      const serverCpu = ((cpuSeconds(server.pid) - s0) / secs) * 100;
      const loadgenCpu = ((loadgen.pids.reduce((a, p) => a + cpuSeconds(p), cpuSeconds(process.pid)) - g0) / secs) * 100;
      // Let the allocator settle before RSS is read (shorter in --quick).
      await sleep(ctx.quick ? 300 : 1000);
      const rss1 = rssBytes(server.pid);
      return {
        handshakesPerSec: opened.ok / secs,
        // What the server could do with a whole core to itself: the rate above is
        // often the generator's (one core for every client process), not the server's.
        handshakesPerCpuSec: opened.ok / secs / (serverCpu / 100),
        rssPerSocketKiB: (rss1 - rss0) / 1024 / Math.max(1, opened.ok),
        serverRssMiB: rss1 / 1024 / 1024,
        serverCpu,
        loadgenCpu,
        failed: opened.failed,
        ...(opened.firstError ? { firstError: opened.firstError } : {}),
      };
    } finally {
      await loadgen.close();
      await server.stop();
    }
  },
};
