// Scenario 7, flood: W writer sockets, each writing frames in a plain loop for as long as
// its socket takes them (write() returns true; on false it waits for 'drain'), with no
// application-level window: the inbound scenario's window of unseen frames is what keeps a
// well-behaved client inside pgws's limits, and a flooding client has none. A raw LISTEN
// client (postgres.js, on the generator core) counts the NOTIFYs.
//
// Reported honestly, whatever the relay does with a writer that outruns the database:
// NOTIFYs/s during the window, frames the writers got onto their sockets against NOTIFYs
// seen (after the writers stop, until the count is still for 500 ms, at most 30 s) and how
// long that drain took, the sockets the server closed, by close code (1006: the connection
// ended without a close frame), and the server's RSS at the end of the window (what it holds
// of frames read but not yet sent).
// The raw LISTEN ceiling has no sockets: it pipelines pg_notify with no window at all.
import postgres from 'postgres';
import { cpuMeter, sleep } from '../lib/measure.mjs';
import { LoadGen, nextMessage, rssBytes } from '../lib/procs.mjs';
import { LISTEN_CHANNEL } from '../lib/producer.mjs';
import { now } from '../lib/wsclient.mjs';

/** Longest wait for the NOTIFYs of frames already sent, once the writers stop. */
const DRAIN_CAP_MS = 30_000;

export const flood = {
  id: 'flood',
  title: 'flood: W writers as fast as each socket takes frames (no window), NOTIFYs/s seen by a raw LISTEN client',
  roles: ['relay', 'listen-ceiling'],
  quickReps: 1,
  primary: { key: 'notifyPerSec', label: 'NOTIFY/s', better: 'higher' },
  // The baseline can deliver next to nothing here: a ratio to it says nothing.
  ratios: ['of ceiling'],
  columns: ['notifyPerSec', 'framesSent', 'delivered', 'deliveredPct', 'drainSeconds', 'closed', 'closeCodes', 'serverRssMiB', 'serverCpu', 'loadgenCpu', 'dbCpu'],
  variants: () => [{ label: '50 writers', writers: 50 }],
  async run(system, v, ctx) {
    const listen = postgres(ctx.dbUri, { max: 1, fetch_types: false, onnotice: () => undefined });
    let seen = 0;
    await listen.listen(LISTEN_CHANNEL, () => seen++);
    const server = await ctx.startServer(system);
    const loadgen = system.role === 'relay' ? new LoadGen(1) : undefined;
    try {
      const base = seen;
      if (loadgen) {
        const opened = await loadgen.open({ port: server.port, count: v.writers, path: `/in/${ctx.tokens.writer}` });
        if (opened.failed) throw new Error(`${opened.failed} writers failed to open: ${opened.firstError}`);
        loadgen.send({ cmd: 'flood', tag: 1 });
      } else {
        server.send({ cmd: 'allow', upTo: Number.MAX_SAFE_INTEGER });
      }
      await sleep(ctx.warmupMs);
      const s0 = seen;
      const t0 = now();
      const cpu = cpuMeter(server.pid, loadgen?.pids ?? [], ctx.dbPid);
      await sleep(ctx.durationMs);
      const s1 = seen;
      const t1 = now();
      const usage = cpu();
      // What the relay holds of the flood at the end of the window (frames it read but has not sent).
      const serverRssMiB = rssBytes(server.pid) / 1024 / 1024;
      const framesSent = await stopWriting(loadgen, server);
      // What was accepted keeps arriving for a while (a relay that stopped reading still has
      // the rest in the sockets' buffers): count until the count is still for 500 ms.
      const stoppedAt = now();
      let lastChange = stoppedAt;
      for (let last = seen; now() - lastChange < 500 && now() - stoppedAt < DRAIN_CAP_MS; await sleep(100)) {
        if (seen !== last) {
          last = seen;
          lastChange = now();
        }
      }
      const drainSeconds = (lastChange - stoppedAt) / 1000;
      const delivered = seen - base;
      const codes = loadgen?.closeCodes() ?? {};
      return {
        notifyPerSec: (s1 - s0) / ((t1 - t0) / 1000),
        framesSent,
        delivered,
        deliveredPct: framesSent > 0 ? (delivered / framesSent) * 100 : NaN,
        closed: Object.values(codes).reduce((a, b) => a + b, 0),
        closeCodes: describeCodes(codes),
        serverRssMiB,
        drainSeconds,
        ...usage,
      };
    } finally {
      await loadgen?.close();
      await server.stop();
      await listen.end({ timeout: 1 });
    }
  },
};

/** Stops the writers (or the ceiling's pipeline) and returns how many frames (NOTIFYs) they sent. */
async function stopWriting(loadgen, server) {
  if (loadgen) {
    const replies = await Promise.all(
      loadgen.children.map((child) => {
        const reply = nextMessage(child, 'stopped', 10_000);
        child.send({ cmd: 'stop-writing' });
        return reply;
      }),
    );
    return replies.reduce((a, r) => a + r.sent, 0);
  }
  server.send({ cmd: 'allow', upTo: 0 });
  server.send({ cmd: 'report' });
  return (await server.nextMessage('report', 10_000)).sent;
}

function describeCodes(codes) {
  const entries = Object.entries(codes).sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? 'none' : entries.map(([code, n]) => `${n}x ${code}`).join(', ');
}
