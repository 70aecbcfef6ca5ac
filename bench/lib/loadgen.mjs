// One load-generator process (forked by bench/run.mjs, so it inherits the
// generator's CPU pinning). It holds up to a few thousand raw sockets, as
// readers (count frames, sample latency), writers (send frames as the
// orchestrator's allowance permits, or flood: as fast as each socket takes them)
// or reconnecting clients (keep every socket open, reconnecting with jittered
// exponential backoff as client libraries do), and answers the orchestrator over IPC.
import { Histogram, connect, textFrame } from './wsclient.mjs';

const stats = { frames: 0, closed: 0, codes: {}, hist: new Histogram(), sent: 0, open: 0, attempts: 0, refused: 0, maxAttempt: 0 };
const sockets = [];
let lastReported = '';
let writer = null;
let flood = null;
let holder = null;

// Every 10 ms, when anything counted changed: the orchestrator's view of this process.
const reporter = setInterval(() => {
  const { frames, closed, sent, open, attempts, refused, maxAttempt } = stats;
  const now = `${frames} ${closed} ${sent} ${open} ${attempts} ${refused}`;
  if (now !== lastReported) {
    lastReported = now;
    process.send({ type: 'count', frames, closed, sent, open, attempts, refused, maxAttempt, codes: stats.codes });
  }
}, 10);

process.on('message', (msg) => {
  handle(msg).catch((err) => process.send({ type: 'error', message: String(err?.stack ?? err) }));
});
process.on('disconnect', () => process.exit(0));

async function handle(msg) {
  switch (msg.cmd) {
    case 'open': {
      const started = performance.now();
      const result = await openAll(msg);
      process.send({ type: 'opened', ...result, ms: performance.now() - started });
      break;
    }
    case 'mark': {
      const hist = stats.hist.toJSON();
      stats.hist.reset();
      process.send({ type: 'mark', frames: stats.frames, closed: stats.closed, sent: stats.sent, codes: stats.codes, hist });
      break;
    }
    case 'write': {
      // Writers: every socket sends frames round-robin while the allowance lasts.
      writer = { sent: 0, allow: 0, next: 0, tag: msg.tag, blocked: 0 };
      pump();
      break;
    }
    case 'allow': {
      if (writer) {
        writer.allow = msg.upTo;
        pump();
      }
      break;
    }
    case 'stop-writing': {
      writer = null;
      if (flood) flood.stopped = true;
      process.send({ type: 'stopped', sent: stats.sent });
      break;
    }
    case 'flood': {
      // Flooding writers: each socket writes frames in a plain loop for as long as its
      // socket takes them (write() returns true), waits for 'drain' when it does not, and
      // yields every `perTurn` frames so one socket cannot starve the others. No window.
      flood = { stopped: false, tag: msg.tag, perTurn: msg.perTurn ?? 64 };
      sockets.forEach((socket, i) => floodFrom(socket, i));
      break;
    }
    case 'hold': {
      // Reconnecting clients: open every path, and reopen any socket that closes.
      holder = hold(msg);
      await holder.opened;
      process.send({ type: 'held', open: stats.open, attempts: stats.attempts, refused: stats.refused });
      break;
    }
    case 'drop': {
      // A network blip on the clients' side: every open socket is cut at once.
      holder?.dropAll();
      break;
    }
  }
}

function floodFrom(socket, index) {
  const f = flood;
  let seq = 0;
  const turn = () => {
    if (f.stopped || socket.destroyed) return;
    for (let k = 0; k < f.perTurn; k++) {
      stats.sent++;
      const ok = socket.write(textFrame(`{"w":${f.tag},"s":${index},"seq":${seq++},"pad":"0123456789abcdef0123456789abcdef"}`));
      if (!ok) {
        socket.once('drain', turn);
        return;
      }
    }
    setImmediate(turn);
  };
  turn();
}

/**
 * Keeps one socket per path open. A socket that closes (or fails to open) is reopened after
 * a random delay in [0, min(cap, base * 2^(attempt-1))] ("full jitter"): the schedule of
 * centrifuge-js and AWS's retry guidance, and close to phoenix.js and socket.io-client.
 * The attempt count resets once a socket is open again.
 */
function hold({ port, paths, concurrency = 50, baseMs = 500, capMs = 10_000 }) {
  const slots = paths.map((path) => ({ path, attempt: 0, socket: null }));
  let resolveOpened;
  const opened = new Promise((resolve) => (resolveOpened = resolve));
  const checkAll = () => {
    if (stats.open === slots.length) resolveOpened();
  };
  const schedule = (slot) => {
    slot.attempt++;
    if (slot.attempt > stats.maxAttempt) stats.maxAttempt = slot.attempt;
    const delay = Math.random() * Math.min(capMs, baseMs * 2 ** (slot.attempt - 1));
    setTimeout(() => attempt(slot), delay);
  };
  const attempt = (slot) => {
    stats.attempts++;
    return connect(port, slot.path, stats).then(
      (socket) => {
        slot.socket = socket;
        slot.attempt = 0;
        stats.open++;
        socket.once('close', () => {
          slot.socket = null;
          stats.open--;
          schedule(slot);
        });
        checkAll();
      },
      (err) => {
        if (err.status) stats.refused++;
        schedule(slot);
      },
    );
  };
  // The first connections: `concurrency` at a time, no delay, as the other scenarios open theirs.
  let next = 0;
  const lane = async () => {
    while (next < slots.length) await attempt(slots[next++]);
  };
  for (let i = 0; i < Math.min(concurrency, slots.length); i++) lane();
  return {
    opened,
    dropAll() {
      for (const slot of slots) slot.socket?.destroy();
    },
  };
}

async function openAll({ port, count, path, paths, concurrency, sampleEvery, base }) {
  let next = 0;
  let ok = 0;
  let failed = 0;
  let firstError;
  async function lane() {
    while (next < count) {
      const i = next++;
      const p = paths ? paths[i] : path.replace('{i}', String(base + i));
      try {
        const socket = await connect(port, p, stats, sampleEvery > 0 && (base + i) % sampleEvery === 0);
        sockets.push(socket);
        ok++;
      } catch (err) {
        failed++;
        firstError ??= String(err.message ?? err);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  return { ok, failed, firstError };
}

function pump() {
  const w = writer;
  if (!w || sockets.length === 0) return;
  while (w.sent < w.allow && w.blocked < sockets.length) {
    const socket = sockets[w.next];
    w.next = (w.next + 1) % sockets.length;
    if (socket.writableNeedDrain) continue;
    w.sent++;
    const ok = socket.write(textFrame(`{"w":${w.tag},"seq":${w.sent},"pad":"0123456789abcdef0123456789abcdef"}`));
    if (!ok) {
      w.blocked++;
      socket.once('drain', () => {
        w.blocked--;
        pump();
      });
    }
  }
}
