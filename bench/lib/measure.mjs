// Shared pieces of the scenarios: a bounded sleep, a CPU meter over the server
// and generator processes, and the saturated / rate-driven notification drivers.
import { cpuSeconds, treeCpuSeconds } from './procs.mjs';
import { Histogram, now } from './wsclient.mjs';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * CPU use of the server process, of the generator (its processes + this one) and of
 * PostgreSQL (postmaster and backends, when dbPid is known), as % of one core. The
 * three share two cores, so where their sum nears 200% the machine, not one of them,
 * set the figure.
 */
export function cpuMeter(serverPid, loadgenPids, dbPid) {
  const gen = () => [process.pid, ...loadgenPids].reduce((a, pid) => a + cpuSeconds(pid), 0);
  const db = () => (dbPid ? treeCpuSeconds(dbPid) : NaN);
  const s0 = cpuSeconds(serverPid);
  const g0 = gen();
  const d0 = db();
  const t0 = now();
  return () => {
    const secs = (now() - t0) / 1000;
    return {
      serverCpu: ((cpuSeconds(serverPid) - s0) / secs) * 100,
      loadgenCpu: ((gen() - g0) / secs) * 100,
      dbCpu: ((db() - d0) / secs) * 100,
    };
  };
}

export function latencyOf(hists) {
  const h = new Histogram();
  for (const entries of hists) h.merge(entries);
  return { p50: h.percentile(50), p99: h.percentile(99), p999: h.percentile(99.9), samples: h.n };
}

/**
 * Closed loop: keep at most `window` notifications not yet delivered to every
 * reader they target, sending `batch` per statement. Measures delivered
 * frames/s and latency over `durationMs` after `warmupMs`.
 */
export async function driveSaturated({ producer, loadgen, readers, perNotification, window, batch, channelOf, warmupMs, durationMs, serverPid, dbPid }) {
  let sent = 0;
  let inflight = 0;
  let stopped = false;
  let failure;
  const pump = () => {
    if (stopped) return;
    // Readers a notification reaches: shrinks if the server closes slow sockets.
    const alive = Math.max(1, readers - loadgen.totalClosed());
    const completed = loadgen.totalFrames() / Math.min(perNotification, alive);
    while (!stopped && sent + batch - completed <= window && inflight < 32) {
      const channels = [];
      for (let k = 0; k < batch; k++) channels.push(channelOf(sent + k));
      sent += batch;
      inflight++;
      producer.send(channels).then(
        () => {
          inflight--;
          pump();
        },
        (err) => {
          inflight--;
          failure ??= err;
        },
      );
    }
  };
  loadgen.onCount = pump;
  const safety = setInterval(pump, 5);
  pump();
  try {
    await sleep(warmupMs);
    const m0 = await loadgen.mark();
    const t0 = now();
    const cpu = cpuMeter(serverPid, loadgen.pids, dbPid);
    await sleep(durationMs);
    const m1 = await loadgen.mark();
    const t1 = now();
    const usage = cpu();
    if (failure) throw failure;
    const secs = (t1 - t0) / 1000;
    return { framesPerSec: (m1.frames - m0.frames) / secs, ...latencyOf(m1.hists), ...usage, closed: loadgen.totalClosed() };
  } finally {
    stopped = true;
    clearInterval(safety);
    loadgen.onCount = () => undefined;
  }
}

/** Open loop: `rate` notifications/s, one per statement, for `durationMs` after `warmupMs`. */
export async function driveRate({ producer, loadgen, rate, channelOf, warmupMs, durationMs, serverPid, dbPid }) {
  const start = now();
  let sent = 0;
  let failure;
  const tick = () => {
    const due = Math.floor(((now() - start) * rate) / 1000);
    while (sent < due) producer.send([channelOf(sent++)]).catch((err) => (failure ??= err));
  };
  const timer = setInterval(tick, 1);
  try {
    await sleep(warmupMs);
    const m0 = await loadgen.mark();
    const t0 = now();
    const sent0 = sent;
    const cpu = cpuMeter(serverPid, loadgen.pids, dbPid);
    await sleep(durationMs);
    const m1 = await loadgen.mark();
    const t1 = now();
    const usage = cpu();
    if (failure) throw failure;
    const secs = (t1 - t0) / 1000;
    return {
      notifPerSec: (sent - sent0) / secs,
      framesPerSec: (m1.frames - m0.frames) / secs,
      ...latencyOf(m1.hists),
      ...usage,
      closed: loadgen.totalClosed(),
    };
  } finally {
    clearInterval(timer);
  }
}
