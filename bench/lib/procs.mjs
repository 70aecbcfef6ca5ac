// Processes of a benchmark run: the system under test on the server core, the
// load-generator processes (forked, so they inherit the generator core), and
// CPU / RSS read from /proc so every system is measured the same way.
import { execFileSync, fork, spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { once } from 'node:events';

const HERE = new URL('../', import.meta.url);
const CLK_TCK = 100; // Linux USER_HZ

export function hasTaskset() {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Pins this process (and so every process it forks from now on) to the given CPU list. */
export function pinSelf(cpus) {
  execFileSync('taskset', ['-p', '-c', cpus, String(process.pid)], { stdio: 'ignore' });
}

/** CPU seconds (user + system) used so far by a process, all threads. */
export function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/**
 * CPU seconds of a process and every descendant alive now: PostgreSQL's postmaster
 * and its backends (the producer's, the relay's LISTEN and NOTIFY connections).
 */
export function treeCpuSeconds(rootPid) {
  const parentOf = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parentOf.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // exited while we looked
    }
  }
  const inTree = (pid) => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; p = parentOf.get(p) ?? 0, hops++) if (p === rootPid) return true;
    return false;
  };
  let total = 0;
  for (const pid of parentOf.keys()) if (inTree(pid)) total += cpuSeconds(pid);
  return total;
}

/** Resident set size in bytes. */
export function rssBytes(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Waits for the first IPC message of a type, with a deadline. */
export function nextMessage(child, type, timeoutMs = 60_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${type}`));
    }, timeoutMs);
    const onMessage = (msg) => {
      if (msg.type === 'error') {
        cleanup();
        reject(new Error(msg.message));
      } else if (msg.type === type) {
        cleanup();
        resolve(msg);
      }
    };
    const onExit = (code) => {
      cleanup();
      reject(new Error(`process exited (${code}) while waiting for ${type}`));
    };
    function cleanup() {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    }
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

/**
 * Starts a system in its own process. `cpus` pins it (taskset -c), `profileDir`
 * adds --cpu-prof, `extraNodeArgs` more node options (--expose-gc for the memory
 * readings of bench/server.mjs). Resolves with { pid, port, send, stop }.
 */
export async function startServer(system, { dbUri, secret, cpus, profileDir, port = 0, extraNodeArgs = [] }) {
  const nodeArgs = [
    ...extraNodeArgs,
    ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${system.id}-${Date.now()}.cpuprofile`] : []),
  ];
  const script = new URL('server.mjs', HERE).pathname;
  const argv = [...nodeArgs, script, system.id];
  const env = { ...process.env, BENCH_DB_URI: dbUri, BENCH_SECRET: secret, BENCH_PORT: String(port) };
  // The server's own output (pino logs) goes to stderr, so stdout stays the markdown report.
  const child = cpus
    ? spawn('taskset', ['-c', cpus, process.execPath, ...argv], { stdio: ['ignore', 2, 2, 'ipc'], env })
    : spawn(process.execPath, argv, { stdio: ['ignore', 2, 2, 'ipc'], env });
  const { port: listening, feedPort } = await nextMessage(child, 'ready', 30_000);
  return {
    pid: child.pid,
    port: listening,
    feedPort,
    send: (msg) => child.connected && child.send(msg),
    /** The next IPC message of a type from the system's process. */
    nextMessage: (type, timeoutMs) => nextMessage(child, type, timeoutMs),
    /** Kills the process outright (the reconnect storm's "crash"); resolves once it is gone. */
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      // Nothing is measured after this, so the system is killed outright, unless it is
      // being profiled: V8 writes the profile only on a clean exit. A relay far behind its
      // backlog (the baseline under the latency load) reads no IPC for seconds, so even
      // then it gets 1.5 s before it is killed.
      if (!profileDir) {
        child.kill('SIGKILL');
        await exited;
        return;
      }
      child.send({ cmd: 'stop' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 1500);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A group of load-generator processes with a running total of frames received. */
export class LoadGen {
  constructor(processes) {
    this.children = Array.from({ length: processes }, () => fork(new URL('lib/loadgen.mjs', HERE).pathname, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    this.frames = this.children.map(() => 0);
    this.closed = this.children.map(() => 0);
    /** The latest count message of each process: sent, open, attempts, refused, maxAttempt, codes. */
    this.counts = this.children.map(() => ({ sent: 0, open: 0, attempts: 0, refused: 0, maxAttempt: 0, codes: {} }));
    this.onCount = () => undefined;
    this.children.forEach((child, i) =>
      child.on('message', (msg) => {
        if (msg.type === 'count') {
          this.frames[i] = msg.frames;
          this.closed[i] = msg.closed;
          this.counts[i] = msg;
          this.onCount();
        }
      }),
    );
  }
  /** A count summed over the processes (sent, open, attempts, refused); `max` for maxAttempt. */
  total(key) {
    return this.counts.reduce((a, c) => (key === 'maxAttempt' ? Math.max(a, c[key] ?? 0) : a + (c[key] ?? 0)), 0);
  }
  /** Close codes the clients saw, over all processes: { code: sockets }. */
  closeCodes() {
    const all = {};
    for (const c of this.counts) for (const [code, n] of Object.entries(c.codes ?? {})) all[code] = (all[code] ?? 0) + n;
    return all;
  }
  /**
   * Keeps one socket per path open across the processes, reconnecting with jittered
   * exponential backoff; resolves once all are open the first time.
   */
  async hold({ port, paths, concurrency = 50, baseMs, capMs }) {
    const per = Math.ceil(paths.length / this.children.length);
    await Promise.all(
      this.children.map((child, k) => {
        const reply = nextMessage(child, 'held', 180_000);
        child.send({ cmd: 'hold', port, paths: paths.slice(k * per, (k + 1) * per), concurrency, baseMs, capMs });
        return reply;
      }),
    );
  }
  /** Resolves once `predicate()` holds, checked on every count message; rejects after `timeoutMs`. */
  until(predicate, timeoutMs) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!predicate()) return;
        clearTimeout(timer);
        this.onCount = () => undefined;
        resolve();
      };
      const timer = setTimeout(() => {
        this.onCount = () => undefined;
        reject(new Error(`timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.onCount = check;
      check();
    });
  }
  get pids() {
    return this.children.map((c) => c.pid);
  }
  totalFrames() {
    return this.frames.reduce((a, b) => a + b, 0);
  }
  totalClosed() {
    return this.closed.reduce((a, b) => a + b, 0);
  }
  /**
   * Opens `count` sockets spread over the processes; path has `{i}` for the socket index,
   * or `paths` gives each socket its own path (one token per client).
   */
  async open({ port, count, path, paths, sampleEvery = 0, concurrency = 64 }) {
    const per = Math.ceil(count / this.children.length);
    const replies = await Promise.all(
      this.children.map((child, k) => {
        const n = Math.max(0, Math.min(per, count - k * per));
        const reply = nextMessage(child, 'opened', 120_000);
        const own = paths ? paths.slice(k * per, k * per + n) : undefined;
        child.send({ cmd: 'open', port, count: n, base: k * per, path, paths: own, sampleEvery, concurrency });
        return reply;
      }),
    );
    return {
      ok: replies.reduce((a, r) => a + r.ok, 0),
      failed: replies.reduce((a, r) => a + r.failed, 0),
      firstError: replies.find((r) => r.firstError)?.firstError,
    };
  }
  /** Frames received so far and the latency histograms since the last mark (which are reset). */
  async mark() {
    const replies = await Promise.all(
      this.children.map((child) => {
        const reply = nextMessage(child, 'mark', 30_000);
        child.send({ cmd: 'mark' });
        return reply;
      }),
    );
    return { frames: replies.reduce((a, r) => a + r.frames, 0), hists: replies.map((r) => r.hist) };
  }
  send(msg) {
    for (const child of this.children) if (child.connected) child.send(msg);
  }
  // Killed outright: a generator that is behind would first read its whole backlog
  // before it saw a polite "close" on IPC, and the system under test would then spend
  // seconds flushing into sockets nobody reads. Nothing in it needs a clean exit.
  async close() {
    await Promise.all(
      this.children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, 'exit');
        child.kill('SIGKILL');
        await exited;
      }),
    );
  }
}
