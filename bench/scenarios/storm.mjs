// Scenario 6, reconnect storm: N clients connected, each with its own token; then either the
// server is killed and a new one started on the same port (a crash or a deploy), or every
// client's connection is cut while the server stays up (a network blip). Each client comes
// back with the token it had, after a jittered exponential backoff as client libraries
// wait (bench/lib/loadgen.mjs: full jitter, 500 ms doubling to 10 s). Reported: the time
// until all N are back, and the server CPU it took.
//
// After a restart the new process has an empty cache of verified tokens and a cold JIT:
// every token is verified again. After a blip pgws still holds each client's verified token,
// so only the claims and channel checks run; the baseline verifies every token either way.
//
// Read "all back" with the generator's CPU: the generator notices the closes itself (about
// a second for 10k sockets on its one core; at 0.8 s, when a restarted pgws listens again,
// only ~700-1400 of 10k clients had seen theirs), so most first attempts find the new server
// up. Real clients, each on its own machine, notice at once and retry sooner.
// "server CPU-s" after a restart is the new process's whole CPU, start-up included;
// "handshakes per server CPU-s" counts from the moment it listens.
import net from 'node:net';
import { sleep } from '../lib/measure.mjs';
import { LoadGen, cpuSeconds } from '../lib/procs.mjs';
import { now } from '../lib/wsclient.mjs';

const SYSTEMS = ['pgws-uws', 'baseline'];

export const storm = {
  id: 'storm',
  title: 'reconnect storm: N clients reconnecting at once with the tokens they had',
  roles: ['relay'],
  // A run takes 3-6 s, most of it the clients' backoff: --quick runs each once.
  quickReps: 1,
  primary: { key: 'backSeconds', label: 'all back s', better: 'lower' },
  columns: ['backSeconds', 'readySeconds', 'serverCpuSeconds', 'handshakesPerCpuSec', 'attemptsPerClient', 'refused', 'loadgenCpu'],
  variants: (quick) =>
    quick
      ? [
          { label: '2k, server restarted, HS256', sockets: 2000, alg: 'HS256', how: 'restart', systems: SYSTEMS },
          { label: '2k, server restarted, RS256', sockets: 2000, alg: 'RS256', how: 'restart', systems: SYSTEMS },
          { label: '2k, network blip, RS256', sockets: 2000, alg: 'RS256', how: 'blip', systems: SYSTEMS },
        ]
      : [
          { label: '10k, server restarted, HS256', sockets: 10_000, alg: 'HS256', how: 'restart', systems: SYSTEMS },
          { label: '10k, server restarted, RS256', sockets: 10_000, alg: 'RS256', how: 'restart', systems: SYSTEMS },
          { label: '10k, network blip, RS256', sockets: 10_000, alg: 'RS256', how: 'blip', systems: SYSTEMS },
        ],
  async run(system, v, ctx) {
    const paths = ctx.tokens.distinct(v.alg, ctx.clientClaims, 0, v.sockets).map((t) => `/conn/${t}`);
    const port = await freePort();
    let server = await ctx.startServer(system, { alg: v.alg, port });
    // At most 5000 sockets per generator process (one process may hold 20,000 descriptors).
    const loadgen = new LoadGen(Math.ceil(v.sockets / 5000));
    try {
      await loadgen.hold({ port, paths, concurrency: 50 });
      await sleep(300);
      const closed0 = loadgen.totalClosed();
      const attempts0 = loadgen.total('attempts');
      const refused0 = loadgen.total('refused');
      const gen = () => loadgen.pids.reduce((a, p) => a + cpuSeconds(p), cpuSeconds(process.pid));
      const g0 = gen();
      const t0 = now();
      let cpu0;
      let readySeconds;
      if (v.how === 'restart') {
        await server.kill();
        server = await ctx.startServer(system, { alg: v.alg, port });
        readySeconds = (now() - t0) / 1000;
        // The new process's whole CPU, start-up included: that is what the restart cost.
        cpu0 = 0;
      } else {
        cpu0 = cpuSeconds(server.pid);
        loadgen.send({ cmd: 'drop' });
      }
      const cpuAtReady = cpuSeconds(server.pid);
      // Every client has seen its socket close, and every one is open again.
      await loadgen.until(() => loadgen.totalClosed() >= closed0 + v.sockets && loadgen.total('open') === v.sockets, ctx.quick ? 60_000 : 120_000);
      const backSeconds = (now() - t0) / 1000;
      const cpu1 = cpuSeconds(server.pid);
      return {
        backSeconds,
        ...(readySeconds === undefined ? {} : { readySeconds }),
        serverCpuSeconds: cpu1 - cpu0,
        // The handshakes alone: CPU from the moment the server listens (after a restart).
        handshakesPerCpuSec: v.sockets / Math.max(0.01, cpu1 - cpuAtReady),
        attemptsPerClient: (loadgen.total('attempts') - attempts0) / v.sockets,
        refused: loadgen.total('refused') - refused0,
        loadgenCpu: ((gen() - g0) / backSeconds) * 100,
      };
    } finally {
      await loadgen.close();
      await server.stop();
    }
  },
};

/** A port free now, for a server that must come back on the same one. */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}
