#!/usr/bin/env node
// Soak: readers and writers against a real pgws process while PostgreSQL is
// restarted every N seconds. Not a test: it reports, and exits non-zero only if
// a frame was lost in silence.
//
//   npm run build && node bench/soak.mjs --duration 120 --restart-every 20
//
// Every frame a writer hands to an open socket ends in exactly one bucket:
//   delivered   seen by a raw LISTEN on the database or by a pgws reader
//   answered    not seen, and its socket was closed with an error code
//               (1011 NOTIFY failed, 1013 queue full, 1008, 1009): the client was told
//   unobservable  not seen, no error, but it may have committed while every
//               observer was between losing and re-issuing LISTEN (PostgreSQL
//               does not keep notifications for a listener that is not there)
//   lost        none of the above: delivered in silence to nobody. Must be 0.
// Notifications sent by the database itself (pg_notify from SQL) are counted
// apart: the ones readers miss while pgws's listener is down are pgws's
// documented blind window, anything else is lost.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import postgres from 'postgres';
import WebSocket from 'ws';
import { createListener } from '../dist/db/listener.js';
import { freePort, startEmbeddedPostgres } from '../dist/embedded.js';
import { createLogger } from '../dist/log.js';

const args = parseArgs(process.argv.slice(2), {
  duration: 120, // seconds of load
  'restart-every': 20, // seconds between PostgreSQL restarts
  'down-ms': 1000, // how long PostgreSQL stays stopped each time
  writers: 20,
  readers: 10,
  rate: 50, // frames per second per writer
  'db-rate': 50, // pg_notify per second from SQL
});
const LISTEN = 'postgres-websockets-listener';
const SECRET = 'soak-secret-that-is-long-enough-for-hs256';
const BIN = fileURLToPath(new URL('../bin/pgws.js', import.meta.url));

const now = () => Date.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sign = (claims) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET));

// ---------------------------------------------------------------- set-up
const db = await startEmbeddedPostgres();
const port = await freePort();
const pgws = spawn(process.execPath, [BIN], {
  env: {
    ...process.env,
    PGWS_DB_URI: db.uri,
    PGWS_JWT_SECRET: SECRET,
    PGWS_HOST: '127.0.0.1',
    PGWS_PORT: String(port),
    PGWS_CHECK_LISTENER_INTERVAL: '500',
    PGWS_LOG_LEVEL: 'info',
  },
  stdio: ['ignore', 'pipe', 'inherit'],
});
/** pgws's own LISTEN blind windows, from its log: [lostAt, readyAgainAt]. */
const pgwsBlind = [];
/** When the current restart began: whatever LISTENs is blind from then (a stopping server may not flush). */
let pausingAt;
let pgwsReady;
const ready = new Promise((r) => (pgwsReady = r));
let partial = '';
pgws.stdout.on('data', (chunk) => {
  const lines = (partial + chunk.toString()).split('\n');
  partial = lines.pop() ?? '';
  for (const line of lines) {
    let entry;
    try {
      entry = JSON.parse(line);
    } catch {
      continue;
    }
    const at = Date.parse(entry.time);
    if (entry.msg === 'pgws ready') pgwsReady();
    else if (entry.msg === 'listener lost; re-connecting') pgwsBlind.push([Math.min(at, pausingAt ?? at), Infinity]);
    else if (entry.msg?.startsWith('listener re-connected')) {
      const open = pgwsBlind.at(-1);
      if (open && open[1] === Infinity) open[1] = at;
    }
  }
});
await ready;

/** Restarts: [pauseCalledAt, startedAt]. Everything listening is blind from the first. */
const restarts = [];
/** The raw observer's blind windows. */
const observerBlind = [];
const seenByObserver = new Map(); // frame id -> time seen
const observer = createListener({
  uri: db.uri,
  channel: LISTEN,
  checkIntervalMs: 200,
  log: createLogger('silent'),
  onNotification: (_channel, payload) => noteEnvelope(payload, seenByObserver),
  onFatal: () => undefined,
});
observer.on('lost', () => observerBlind.push([pausingAt ?? now(), Infinity]));
observer.on('ready', () => {
  const open = observerBlind.at(-1);
  if (open && open[1] === Infinity) open[1] = now();
});
await observer.start(3);

function noteEnvelope(text, into) {
  try {
    const env = JSON.parse(text);
    if (env.event === 'WebsocketMessage' && !into.has(env.payload)) into.set(env.payload, now());
  } catch {
    // not ours
  }
}

// ---------------------------------------------------------------- readers
const seenByReaders = new Map();
const dbSeen = new Map(); // db notification seq -> time
const readerToken = await sign({ mode: 'r', channels: ['soak', 'dbfeed'] });
let readerCloses = 0;
function reader() {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/${readerToken}`);
  ws.on('message', (data) => {
    const text = data.toString();
    if (text.startsWith('{"channel":"dbfeed"')) dbSeen.set(JSON.parse(text).payload, now());
    else noteEnvelope(text, seenByReaders);
  });
  ws.on('error', () => undefined);
  ws.on('close', () => {
    readerCloses += 1;
    if (running) setTimeout(reader, 100);
  });
}

// ---------------------------------------------------------------- writers
/** Every frame handed to an open socket: id -> { socket, sentAt }. */
const frames = new Map();
/** Socket id -> { code, closedAt, frames: [ids in order] } */
const sockets = new Map();
const writerToken = await sign({ mode: 'w', channel: 'soak' });
let socketSeq = 0;
let running = true;
function writer(w) {
  const id = `s${socketSeq++}`;
  const record = { code: undefined, closedAt: undefined, frames: [] };
  sockets.set(id, record);
  const ws = new WebSocket(`ws://127.0.0.1:${port}/soak/${writerToken}`);
  let seq = 0;
  let timer;
  ws.on('open', () => {
    timer = setInterval(() => {
      if (!sending || ws.readyState !== WebSocket.OPEN) return;
      const frame = `${w}:${id}:${seq++}`;
      ws.send(frame);
      frames.set(frame, { socket: id, sentAt: now() });
      record.frames.push(frame);
    }, 1000 / args.rate);
  });
  ws.on('error', () => undefined);
  ws.on('close', (code) => {
    clearInterval(timer);
    record.code = code;
    record.closedAt = now();
    if (running && sending) setTimeout(() => writer(w), 200);
  });
  return ws;
}

// ---------------------------------------------------------------- database-side notifications
const dbSent = new Map(); // seq -> [sentAt, committedAt]
let dbFailed = 0;
const sql = postgres(db.uri, { max: 1, onnotice: () => undefined, connect_timeout: 2 });
let dbSeq = 0;
const dbTimer = setInterval(() => {
  if (!sending) return;
  const payload = `db:${dbSeq++}`;
  const sentAt = now();
  sql`SELECT pg_notify(${LISTEN}, ${JSON.stringify({ channel: 'dbfeed', payload })})`.then(
    () => dbSent.set(payload, [sentAt, now()]),
    () => (dbFailed += 1),
  );
}, 1000 / args['db-rate']);

// ---------------------------------------------------------------- run
let sending = true;
let peakRssKb = 0;
const rssTimer = setInterval(() => (peakRssKb = Math.max(peakRssKb, vmHwmKb(pgws.pid))), 500);
for (let r = 0; r < args.readers; r++) reader();
const writerSockets = [];
for (let w = 0; w < args.writers; w++) writerSockets.push(writer(w));
const startedAt = now();
console.error(`soak: ${args.duration}s, PostgreSQL restarted every ${args['restart-every']}s for ${args['down-ms']}ms, ` +
  `${args.writers} writers x ${args.rate}/s, ${args.readers} readers, ${args['db-rate']} pg_notify/s from SQL`);
while (now() - startedAt < args.duration * 1000) {
  const wait = Math.min(args['restart-every'] * 1000, args.duration * 1000 - (now() - startedAt));
  await sleep(wait);
  if (now() - startedAt >= args.duration * 1000) break;
  const pausedAt = now();
  pausingAt = pausedAt;
  await db.pause();
  await sleep(args['down-ms']);
  await db.start();
  restarts.push([pausedAt, now()]);
  console.error(`  restart ${restarts.length} at ${Math.round((pausedAt - startedAt) / 1000)}s`);
}
sending = false;
clearInterval(dbTimer);
// Let in-flight frames land, then close politely.
await sleep(3000);
running = false;
const endAt = now();
peakRssKb = Math.max(peakRssKb, vmHwmKb(pgws.pid));
clearInterval(rssTimer);

// ---------------------------------------------------------------- accounting
const overlaps = (from, to, windows) => windows.some(([a, b]) => from <= b && to >= a);
const counts = { sent: frames.size, delivered: 0, answered: 0, unobservable: 0, lost: 0 };
const answeredBy = {};
const lostSamples = [];
for (const [socketId, record] of sockets) {
  for (let i = 0; i < record.frames.length; i++) {
    const frame = record.frames[i];
    if (seenByObserver.has(frame) || seenByReaders.has(frame)) {
      counts.delivered += 1;
      continue;
    }
    if ([1008, 1009, 1011, 1013].includes(record.code)) {
      counts.answered += 1;
      answeredBy[record.code] = (answeredBy[record.code] ?? 0) + 1;
      continue;
    }
    // When could it have committed? After it was sent, before a later frame of
    // the same socket was seen (per-socket order), or before the socket closed.
    const later = record.frames.slice(i + 1).map((f) => seenByObserver.get(f) ?? seenByReaders.get(f)).find((t) => t !== undefined);
    const from = frames.get(frame).sentAt;
    const to = later ?? record.closedAt ?? endAt;
    if (overlaps(from, to, observerBlind) && overlaps(from, to, pgwsBlind)) counts.unobservable += 1;
    else {
      counts.lost += 1;
      if (lostSamples.length < 5) lostSamples.push({ frame, socket: socketId, code: record.code });
    }
  }
}
const dbCounts = { sent: dbSent.size, failedToSend: dbFailed, delivered: 0, missedInBlindWindow: 0, lost: 0 };
for (const [payload, [sentAt, committedAt]] of dbSent) {
  if (dbSeen.has(payload)) dbCounts.delivered += 1;
  else if (overlaps(sentAt, committedAt, pgwsBlind)) dbCounts.missedInBlindWindow += 1;
  else dbCounts.lost += 1;
}

for (const ws of writerSockets) ws.close();
pgws.kill('SIGTERM');
await new Promise((r) => pgws.once('exit', r));
await observer.stop();
await sql.end({ timeout: 1 }).catch(() => undefined);
await db.stop();

const blindMs = pgwsBlind.map(([a, b]) => b - a);
console.log(`\npgws soak: ${args.duration} s, ${restarts.length} PostgreSQL restarts (${args['down-ms']} ms down each), ` +
  `${args.writers} writers x ${args.rate} frames/s, ${args.readers} readers`);
console.table({
  'writer frames': {
    sent: counts.sent,
    delivered: counts.delivered,
    'answered with error': counts.answered,
    'unobservable (blind window)': counts.unobservable,
    lost: counts.lost,
  },
  'db pg_notify': {
    sent: dbCounts.sent,
    delivered: dbCounts.delivered,
    'answered with error': dbCounts.failedToSend,
    'unobservable (blind window)': dbCounts.missedInBlindWindow,
    lost: dbCounts.lost,
  },
});
console.log(`answered with error, by close code: ${JSON.stringify(answeredBy)}`);
console.log(`pgws listener blind windows (ms): ${blindMs.map((ms) => (Number.isFinite(ms) ? ms : 'open')).join(', ') || 'none'}`);
console.log(`reader reconnects: ${Math.max(0, readerCloses - args.readers)}; peak RSS of pgws: ${(peakRssKb / 1024).toFixed(1)} MiB`);
console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}`);
if (lostSamples.length > 0) console.log('lost samples:', lostSamples);
process.exit(counts.lost + dbCounts.lost === 0 ? 0 : 1);

function vmHwmKb(pid) {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

function parseArgs(argv, defaults) {
  const out = { ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]?.replace(/^--/, '');
    if (!key || !(key in defaults)) throw new Error(`unknown option ${argv[i]}; known: ${Object.keys(defaults).join(', ')}`);
    out[key] = Number(argv[i + 1]);
  }
  return out;
}
