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
    const window = await measureWindow({ loadgen, warmupMs, durationMs, serverPid, dbPid, failed: () => failure });
    return { framesPerSec: window.frames / window.secs, ...window.figures };
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
    let sent0 = 0;
    const window = await measureWindow({ loadgen, warmupMs, durationMs, serverPid, dbPid, failed: () => failure, onStart: () => (sent0 = sent) });
    return { notifPerSec: (sent - sent0) / window.secs, framesPerSec: window.frames / window.secs, ...window.figures };
  } finally {
    clearInterval(timer);
  }
}

/**
 * The measured part of a run, while a driver keeps the load on: waits out the warm-up,
 * then counts frames, latency and CPU over `durationMs`. Throws what the driver failed with.
 * Returns { secs, frames, figures: { p50, p99, p999, samples, serverCpu, loadgenCpu, dbCpu, closed } }.
 */
async function measureWindow({ loadgen, warmupMs, durationMs, serverPid, dbPid, failed, onStart = () => undefined }) {
  await sleep(warmupMs);
  const m0 = await loadgen.mark();
  const t0 = now();
  onStart();
  const cpu = cpuMeter(serverPid, loadgen.pids, dbPid);
  await sleep(durationMs);
  const m1 = await loadgen.mark();
  const t1 = now();
  const usage = cpu();
  const failure = failed();
  if (failure) throw failure;
  return {
    secs: (t1 - t0) / 1000,
    frames: m1.frames - m0.frames,
    figures: { ...latencyOf(m1.hists), ...usage, closed: loadgen.totalClosed() },
  };
}
