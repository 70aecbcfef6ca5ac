// The process that runs one system under test (spawned by bench/run.mjs on the
// server core). argv: <system id>; env: BENCH_DB_URI, BENCH_SECRET (an HMAC secret or a
// public JWK), BENCH_PORT (0: any free port; the reconnect storm restarts on the same one).
// IPC in: {cmd:'stop'}, {cmd:'memory'} and, for the raw LISTEN ceiling, {cmd:'allow', upTo}.
// IPC out: {type:'ready', port} or {type:'error', message}; {type:'memory', rss, heapUsed,
// external, arrayBuffers, gc} answers {cmd:'memory'}, after a full garbage collection when
// the process runs with --expose-gc (gc: whether it did).
import { systemById } from './systems.mjs';

const system = systemById(process.argv[2]);
let running;
try {
  running = await system.start(process.env.BENCH_DB_URI, process.env.BENCH_SECRET, Number(process.env.BENCH_PORT ?? 0));
  process.send({ type: 'ready', port: running.port ?? 0, feedPort: running.feedPort });
} catch (err) {
  process.send({ type: 'error', message: String(err?.stack ?? err) });
  process.exit(1);
}

process.on('message', async (msg) => {
  if (msg.cmd === 'stop') {
    // Bounded: a relay that is far behind (the baseline under the latency load) would
    // otherwise work through its whole backlog first. Nothing is measured after this.
    await Promise.race([running.stop(), new Promise((r) => setTimeout(r, 1000))]);
    process.exit(0);
  } else if (msg.cmd === 'memory') {
    const gc = typeof globalThis.gc === 'function';
    if (gc) globalThis.gc();
    const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage();
    process.send({ type: 'memory', rss, heapUsed, external, arrayBuffers, gc });
  } else {
    running.onMessage?.(msg);
  }
});
process.on('disconnect', () => process.exit(0));
