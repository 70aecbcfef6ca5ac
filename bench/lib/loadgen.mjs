// One load-generator process (forked by bench/run.mjs, so it inherits the
// generator's CPU pinning). It holds up to a few thousand raw sockets, as
// readers (count frames, sample latency) or writers (send frames as the
// orchestrator's allowance permits), and answers the orchestrator over IPC.
import { Histogram, connect, textFrame } from './wsclient.mjs';

const stats = { frames: 0, closed: 0, hist: new Histogram() };
const sockets = [];
let lastReported = -1;
let writer = null;

const reporter = setInterval(() => {
  if (stats.frames !== lastReported) {
    lastReported = stats.frames;
    process.send({ type: 'count', frames: stats.frames, closed: stats.closed });
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
      process.send({ type: 'mark', frames: stats.frames, closed: stats.closed, hist });
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
      process.send({ type: 'stopped' });
      break;
    }
  }
}

async function openAll({ port, count, path, concurrency, sampleEvery, base }) {
  let next = 0;
  let ok = 0;
  let failed = 0;
  let firstError;
  async function lane() {
    while (next < count) {
      const i = next++;
      const p = path.replace('{i}', String(base + i));
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
