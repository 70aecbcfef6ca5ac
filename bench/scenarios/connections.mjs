// Scenario 4, connections: open N idle authenticated sockets from several generator
// processes (each process is limited to 20,000 descriptors); the handshake rate (token
// verification included) and the server's RSS per socket.
//
// Every client has its own token (a `sub` per client, an `exp` an hour ahead), as an
// identity provider issues them, so each handshake verifies a signature: a cache of
// verified tokens has nothing to answer from (the reconnect storm's network blip is where
// it does). HS256 with the bench secret; RS256 and ES256 with a key pair made for the run.
// The bare-uWS ceiling accepts every upgrade with no token check at all, so it has an
// HS256 row only.
import { sleep } from '../lib/measure.mjs';
import { LoadGen, cpuSeconds, rssBytes } from '../lib/procs.mjs';
import { now } from '../lib/wsclient.mjs';

const RELAYS = ['pgws-uws', 'pgws-ws', 'baseline'];
// The token in a `pgws.bearer.<jwt>` subprotocol or an Authorization header (PROTOCOL.md §8)
// instead of the path: pgws only.
const PGWS = ['pgws-uws', 'pgws-ws'];
// --quick leaves pgws (ws) out of the RS256 and ES256 rows: its token check is pgws (uws)'s.
const QUICK_RELAYS = ['pgws-uws', 'baseline'];

export const connections = {
  id: 'connections',
  title: 'connections: N idle authenticated sockets, one token per client',
  roles: ['relay', 'fanout-ceiling'],
  primary: { key: 'handshakesPerSec', label: 'handshakes/s', better: 'higher' },
  // The token sources are compared with each other: their repetitions are interleaved.
  interleaveVariants: true,
  columns: ['handshakesPerSec', 'handshakesPerCpuSec', 'rssPerSocketKiB', 'serverRssMiB', 'serverCpu', 'loadgenCpu', 'failed'],
  variants: (quick) =>
    quick
      ? [
          { label: '1k sockets, HS256', sockets: 1000, alg: 'HS256', warmup: 500 },
          { label: '1k sockets, HS256, bearer subprotocol', sockets: 1000, alg: 'HS256', warmup: 500, source: 'subprotocol', systems: PGWS },
          { label: '1k sockets, HS256, Authorization header', sockets: 1000, alg: 'HS256', warmup: 500, source: 'header', systems: PGWS },
          { label: '1k sockets, RS256', sockets: 1000, alg: 'RS256', warmup: 500, systems: QUICK_RELAYS },
          { label: '1k sockets, ES256', sockets: 1000, alg: 'ES256', warmup: 500, systems: QUICK_RELAYS },
        ]
      : [
          { label: '5k sockets, HS256', sockets: 5000, alg: 'HS256', warmup: 1000 },
          { label: '5k sockets, HS256, bearer subprotocol', sockets: 5000, alg: 'HS256', warmup: 1000, source: 'subprotocol', systems: PGWS },
          { label: '5k sockets, HS256, Authorization header', sockets: 5000, alg: 'HS256', warmup: 1000, source: 'header', systems: PGWS },
          { label: '19k sockets, HS256', sockets: 19_000, alg: 'HS256', warmup: 1000 },
          { label: '5k sockets, RS256', sockets: 5000, alg: 'RS256', warmup: 1000, systems: RELAYS },
          { label: '5k sockets, ES256', sockets: 5000, alg: 'ES256', warmup: 1000, systems: RELAYS },
        ],
  async run(system, v, ctx) {
    // Tokens 0..N-1 for the measured sockets, N.. for the warm-up: no measured handshake
    // carries a token the server has seen.
    // The same channel either way: in the path beside the token, or alone with the token offered as a subprotocol.
    const target = (t) => {
      if (v.source === 'subprotocol') return { path: '/conn', headers: { 'Sec-WebSocket-Protocol': `pgws.bearer.${t}, pgws.v1` } };
      if (v.source === 'header') return { path: '/conn', headers: { Authorization: `Bearer ${t}` } };
      return `/conn/${t}`;
    };
    const paths = ctx.tokens.distinct(v.alg, ctx.clientClaims, 0, v.sockets).map(target);
    const warmPaths = ctx.tokens.distinct(v.alg, ctx.clientClaims, v.sockets, v.warmup).map(target);
    const server = await ctx.startServer(system, { alg: v.alg });
    const loadgen = new LoadGen(Math.ceil(v.sockets / 5000));
    try {
      // Warm-up: a first round of handshakes, closed again, so the window below measures
      // handshakes and not V8 compiling the handshake code (perf showed TurboFan on the
      // server core during a cold 5k-socket window). 5000 instead of 1000 changed nothing
      // measurable (8.3k HS256 handshakes per CPU-second either way).
      const warmup = new LoadGen(1);
      try {
        const warm = await warmup.open({ port: server.port, count: warmPaths.length, paths: warmPaths, concurrency: 50 });
        if (warm.failed) throw new Error(`${warm.failed} warm-up sockets failed to open: ${warm.firstError}`);
      } finally {
        await warmup.close();
      }
      await sleep(300);
      const rss0 = rssBytes(server.pid);
      const s0 = cpuSeconds(server.pid);
      const g0 = loadgen.pids.reduce((a, p) => a + cpuSeconds(p), cpuSeconds(process.pid));
      const t0 = now();
      const opened = await loadgen.open({ port: server.port, count: v.sockets, paths, concurrency: 50 });
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
