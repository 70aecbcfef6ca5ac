// Protocol v2 memory (issue 13: a v2 socket holding 10 subscriptions costs at most 2 KiB more
// than an idle v1 socket). As the connections scenario's RSS/socket: N sockets, each with its
// own token (any channel, mode r, exp hours ahead), opened and then measured idle, in one of:
// - "v1 idle": v1 sockets on `/m0/<token>`;
// - "v2, 10 shared subscriptions": v2 sockets on `/<token>` offering `pgws.v2`, each subscribing
//   channels m0..m9 (m0..m4 with no filter, m5..m9 with a filter {"payload.kind": "k<n>"}): every
//   socket asks for the same 10 (channel, filter, echo) triples, so the server holds 10
//   subscriptions shared by all, as an app whose users follow the same feeds;
// - "v2, 10 own subscriptions": the same channels, but each socket's 10 filters are its own
//   ({"payload.user": <socket * 10 + n>}): N x 10 distinct subscriptions and engine topics.
// Before the measured sockets, a warm-up group of the same kind is opened and kept open (so the
// code paths are compiled and the server's pools are warm, and no freed memory is reused by the
// measured sockets). Then two groups of N sockets each, kept open, with a reading after each.
// The figure is the slope over the second group, (reading after 2N - reading after N) / N: what
// grows with sockets. The first group also pays costs that do not grow with them: V8's young
// generation grows to its cap (16 MiB per semi-space) under the allocation of opening, which is
// 1-2 KiB per socket at N = 10k and depends on how much a variant allocates, not on what a
// socket keeps. That first-group figure is reported too ("first N"). Each reading is taken after a
// full garbage collection in the server (bench/server.mjs runs it with --expose-gc): RSS (the
// issue's figure) and the JS heap. The variants' repetitions are interleaved; the notes give v2
// minus v1 per socket.
import { sleep } from '../lib/measure.mjs';
import { LoadGen, cpuSeconds } from '../lib/procs.mjs';
import { now } from '../lib/wsclient.mjs';
import { PGWS, count, medianOf, subscribeFrame, v2Target } from './v2-shared.mjs';

const CHANNELS = Array.from({ length: 10 }, (_, n) => `m${n}`);

/** The 10 subscribe requests of socket `i` in a v2 variant. */
function subscribesOf(kind, i) {
  return CHANNELS.map((channel, n) => {
    if (kind === 'shared') return subscribeFrame(n + 1, channel, n < 5 ? undefined : { 'payload.kind': `k${n}` });
    return subscribeFrame(n + 1, channel, { 'payload.user': i * 10 + n });
  });
}

export const v2Memory = {
  id: 'v2-memory',
  title: 'v2 memory: N idle sockets, v1 vs v2 holding 10 subscriptions, one token per client',
  roles: ['relay'],
  primary: { key: 'rssPerSocketKiB', label: 'RSS/socket KiB', better: 'lower' },
  interleaveVariants: true,
  columns: ['rssPerSocketKiB', 'heapPerSocketKiB', 'rssFirstPerSocketKiB', 'serverRssMiB', 'handshakesPerSec', 'subscriptionsPerSec', 'serverCpu', 'failed'],
  variants(quick, { smoke } = {}) {
    // Per group: two groups and the warm-up stay open together, under these machines' limit of
    // 20000 open files per process.
    const sockets = smoke ? 200 : quick ? 1000 : 9000;
    const warmup = smoke ? 50 : quick ? 200 : 500;
    const groups = `${count(sockets)} + ${count(sockets)} sockets`;
    return [
      { label: `${groups}, v1 idle`, sockets, warmup, kind: 'v1', systems: PGWS },
      { label: `${groups}, v2, 10 shared subscriptions`, sockets, warmup, kind: 'shared', systems: PGWS },
      { label: `${groups}, v2, 10 own subscriptions`, sockets, warmup, kind: 'own', systems: PGWS },
    ];
  },
  async run(system, v, ctx) {
    // Any channel: m0..m9. Tokens 0..2N-1 for the two measured groups, 2N.. for the warm-up.
    const claims = { mode: 'r', exp: ctx.clientClaims.exp };
    const targetOf = (token, i) => (v.kind === 'v1' ? `/m0/${token}` : v2Target(token, subscribesOf(v.kind, i), { tokenInPath: true }));
    const group = (from) => ctx.tokens.distinct('HS256', claims, from, v.sockets).map((t, i) => targetOf(t, from + i));
    const [pathsA, pathsB] = [group(0), group(v.sockets)];
    const warmPaths = ctx.tokens.distinct('HS256', claims, 2 * v.sockets, v.warmup).map((t, i) => targetOf(t, 2 * v.sockets + i));
    const server = await ctx.startServer(system, { nodeArgs: ['--expose-gc'] });
    const warm = new LoadGen(1);
    const loadA = new LoadGen(Math.ceil(v.sockets / 5000));
    const loadB = new LoadGen(Math.ceil(v.sockets / 5000));
    const memory = async () => {
      const reply = server.nextMessage('memory', 30_000);
      server.send({ cmd: 'memory' });
      return reply;
    };
    try {
      const warmed = await warm.open({ port: server.port, count: warmPaths.length, paths: warmPaths, concurrency: 50 });
      if (warmed.failed) throw new Error(`${warmed.failed} warm-up sockets failed to open: ${warmed.firstError}`);
      await sleep(300);
      const m0 = await memory();
      if (!m0.gc) throw new Error('the server process has no gc(): run with --expose-gc');
      const openGroup = async (loadgen, paths) => {
        const s0 = cpuSeconds(server.pid);
        const t0 = now();
        const opened = await loadgen.open({ port: server.port, count: v.sockets, paths, concurrency: 50 });
        const secs = (now() - t0) / 1000;
        const serverCpu = ((cpuSeconds(server.pid) - s0) / secs) * 100;
        // Let the allocator settle before the reading (shorter in --quick).
        await sleep(ctx.quick ? 300 : 1000);
        return { opened, secs, serverCpu, memory: await memory() };
      };
      const a = await openGroup(loadA, pathsA);
      const b = await openGroup(loadB, pathsB);
      const okA = Math.max(1, a.opened.ok);
      const ok = Math.max(1, b.opened.ok);
      return {
        rssPerSocketKiB: (b.memory.rss - a.memory.rss) / 1024 / ok,
        heapPerSocketKiB: (b.memory.heapUsed - a.memory.heapUsed) / 1024 / ok,
        rssFirstPerSocketKiB: (a.memory.rss - m0.rss) / 1024 / okA,
        serverRssMiB: b.memory.rss / 1024 / 1024,
        // Opening includes the 10 subscribes and their answers in the v2 variants.
        handshakesPerSec: b.opened.ok / b.secs,
        subscriptionsPerSec: v.kind === 'v1' ? NaN : (b.opened.ok * CHANNELS.length) / b.secs,
        serverCpu: b.serverCpu,
        failed: a.opened.failed + b.opened.failed,
        ...(a.opened.firstError || b.opened.firstError ? { firstError: a.opened.firstError ?? b.opened.firstError } : {}),
      };
    } finally {
      await loadB.close();
      await loadA.close();
      await warm.close();
      await server.stop();
    }
  },
  notes(entries, { summary }) {
    const lines = [];
    const v1 = entries.find((e) => e.variant.endsWith('v1 idle'));
    if (!v1) return lines;
    for (const entry of entries.filter((e) => e !== v1)) {
      for (const sys of entry.systems) {
        const rss = medianOf(entry, sys.id, 'rssPerSocketKiB', summary);
        const rss1 = medianOf(v1, sys.id, 'rssPerSocketKiB', summary);
        const heap = medianOf(entry, sys.id, 'heapPerSocketKiB', summary);
        const heap1 = medianOf(v1, sys.id, 'heapPerSocketKiB', summary);
        if (rss === undefined || rss1 === undefined) continue;
        const goal = entry.variant.includes('shared') ? ` (issue 13: at most 2 KiB: ${rss - rss1 <= 2 ? 'met' : 'NOT met'})` : '';
        const heapText = heap !== undefined && heap1 !== undefined ? `, JS heap ${signed(heap - heap1)} KiB` : '';
        lines.push(`${entry.variant} minus v1 idle, ${sys.name}: RSS ${signed(rss - rss1)} KiB per socket${goal}${heapText} (medians)`);
      }
    }
    return lines;
  },
};

const signed = (x) => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`;
