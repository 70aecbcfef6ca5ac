// Issue 14, catch-up: how long pgws (uws, PGWS_JOURNAL=on) takes to replay R missed messages
// to one client, and to C clients resuming at once.
// Each repetition: TRUNCATE the journal, put R rows on channel `catchup` in one statement
// (`SELECT pgws.send('catchup', <~100-byte payload>) FROM generate_series(1, R)`), start the
// system (so it saw none of them live), open C v2 sockets (`/` offering `pgws.v2,
// pgws.bearer.<jwt>`), then send each its `{"type":"subscribe","id":1,"channel":"catchup",
// "since":"<the offset before those rows>"}` in one loop. Per client: milliseconds from
// writing its subscribe to reading its R-th `message` frame. Checked, or the repetition
// fails: the answer is `subscribed` with `recovered: true` (R <= MAX_REPLAY_ROWS), no message
// comes before it, the offsets grow, and the R-th is the newest row's.
// Figures: p50 and max over clients, all (first subscribe written to the last client done),
// messages/s over all clients, CPU-seconds of the server, of PostgreSQL (the replay reads) and
// of this process (the clients, on the generator core) over that span, and the server's peak
// RSS (VmHWM: the replayed frames wait in its socket buffers).
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { MAX_REPLAY_ROWS } from '../../dist/sql/journal.js';
import { sleep } from '../lib/measure.mjs';
import { cpuSeconds, treeCpuSeconds } from '../lib/procs.mjs';
import { now, textFrame } from '../lib/wsclient.mjs';
import { JOURNALED, ensureJournal, truncateJournal, withSql } from './journal-shared.mjs';
import { count } from './v2-shared.mjs';

const CHANNEL = 'catchup';
const PAYLOAD = 'x'.repeat(100);

export const journalCatchup = {
  id: 'journal-catchup',
  title: 'journal catch-up: R missed messages replayed with since to C clients resuming at once',
  roles: ['journal-relay'],
  primary: { key: 'replayMaxMs', label: 'max ms', better: 'lower' },
  columns: ['replayP50Ms', 'replayMaxMs', 'replayAllMs', 'messagesPerSec', 'serverCpuS', 'dbCpuS', 'clientCpuS', 'serverPeakRssMiB'],
  variants(quick, { smoke } = {}) {
    const rows = smoke ? 1000 : MAX_REPLAY_ROWS;
    return (smoke ? [1, 5] : quick ? [1, 20] : [1, 100]).map((clients) => ({
      label: `${count(rows)} rows, ${clients} client${clients === 1 ? '' : 's'}`,
      rows,
      clients,
      systems: [JOURNALED],
    }));
  },
  async run(system, v, ctx) {
    if (v.rows > MAX_REPLAY_ROWS) throw new Error(`${v.rows} rows: more than MAX_REPLAY_ROWS (${MAX_REPLAY_ROWS}) would be answered recovered:false`);
    await ensureJournal(ctx.dbUri);
    await truncateJournal(ctx.dbUri);
    const [made] = await withSql(
      ctx.dbUri,
      (sql) => sql`SELECT min(id)::text AS first, max(id)::text AS last, count(*)::int AS n
        FROM (SELECT pgws.send(${CHANNEL}, ${PAYLOAD}) AS id FROM generate_series(1, ${v.rows})) AS sent`,
    );
    if (made.n !== v.rows || BigInt(made.last) - BigInt(made.first) + 1n !== BigInt(v.rows)) {
      throw new Error(`the journal got ${made.n} rows, ids ${made.first}..${made.last}, not ${v.rows} consecutive ones`);
    }
    const since = (BigInt(made.first) - 1n).toString();
    const server = await ctx.startServer(system);
    const clients = [];
    try {
      const token = ctx.tokens.anyChannel;
      for (let i = 0; i < v.clients; i += 50) {
        const batch = Array.from({ length: Math.min(50, v.clients - i) }, () => openClient(server.port, token));
        clients.push(...(await Promise.all(batch)));
      }
      // Every socket open and idle: then they all resume at once.
      await sleep(200);
      const request = JSON.stringify({ type: 'subscribe', id: 1, channel: CHANNEL, since });
      const s0 = cpuSeconds(server.pid);
      const d0 = treeCpuSeconds(ctx.dbPid);
      const c0 = process.cpuUsage();
      const t0 = now();
      const done = clients.map((c) => c.resume(request, { rows: v.rows, last: Number(made.last) }));
      const timeoutMs = 30_000 + v.clients * v.rows * 0.1;
      let timer;
      const ms = await Promise.race([
        Promise.all(done),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`catch-up not done after ${(timeoutMs / 1000).toFixed(0)} s: ${clients.map((c) => c.messages).join(',')} messages per client`)), timeoutMs);
        }),
      ]).finally(() => clearTimeout(timer));
      const t1 = now();
      const c1 = process.cpuUsage();
      const serverCpuS = cpuSeconds(server.pid) - s0;
      const dbCpuS = treeCpuSeconds(ctx.dbPid) - d0;
      ms.sort((a, b) => a - b);
      return {
        replayP50Ms: ms[Math.floor((ms.length - 1) / 2)],
        replayMaxMs: ms.at(-1),
        replayAllMs: t1 - t0,
        messagesPerSec: (v.clients * v.rows) / ((t1 - t0) / 1000),
        serverCpuS,
        dbCpuS,
        clientCpuS: (c1.user - c0.user + c1.system - c0.system) / 1e6,
        serverPeakRssMiB: peakRssBytes(server.pid) / 2 ** 20,
      };
    } finally {
      for (const c of clients) c.socket.destroy();
      await server.stop();
    }
  },
};

/** VmHWM: the peak resident set size of a process so far, in bytes. */
function peakRssBytes(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

const TYPE_AT = '{"type":"'.length;
const OFFSET_END = Buffer.from('"}');

/**
 * One v2 socket: opens `/` offering `pgws.v2, pgws.bearer.<token>`, requires `pgws.v2`, and
 * resolves once open with { socket, messages, resume(request, expect) }. resume() writes the
 * subscribe and resolves with the ms from that write to the `expect.rows`-th message frame;
 * it rejects on an error frame, a `subscribed` without recovered:true, a message before the
 * answer, offsets out of order, a last offset other than `expect.last`, or the socket closing.
 */
function openClient(port, token) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
    let head = null;
    let rest = null;
    let open = false;
    let run = null;
    const client = {
      socket,
      messages: 0,
      resume(request, expect) {
        return new Promise((done, failed) => {
          run = { expect, done, failed, answered: false, lastOffset: 0, t0: now() };
          socket.write(textFrame(request));
        });
      },
    };
    const fail = (message) => {
      const err = new Error(message);
      if (run) run.failed(err);
      else reject(err);
      run = null;
      socket.destroy();
    };
    socket.on('error', (err) => fail(`socket: ${err.message}`));
    socket.on('close', () => fail(open ? 'closed by the server' : 'closed during handshake'));
    socket.on('connect', () => {
      socket.write(
        `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: pgws.v2, pgws.bearer.${token}\r\n\r\n`,
      );
    });
    socket.on('data', (chunk) => {
      if (!open) {
        head = head ? Buffer.concat([head, chunk]) : chunk;
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        const text = head.subarray(0, end).toString();
        if (!text.startsWith('HTTP/1.1 101')) return fail(`handshake refused: ${text.split('\r\n')[0]}`);
        const chosen = /\r\nsec-websocket-protocol:[ \t]*([^\r]*)/i.exec(text)?.[1]?.trim();
        if (chosen !== 'pgws.v2') return fail(`server chose subprotocol ${chosen ?? '(none)'}, not pgws.v2`);
        open = true;
        chunk = head.subarray(end + 4);
        head = null;
        resolve(client);
        if (chunk.length === 0) return;
      }
      const buf = rest ? Buffer.concat([rest, chunk]) : chunk;
      let off = 0;
      for (;;) {
        if (buf.length - off < 2) break;
        const op = buf[off] & 0x0f;
        let size = buf[off + 1] & 0x7f;
        let hdr = 2;
        if (size === 126) {
          if (buf.length - off < 4) break;
          size = buf.readUInt16BE(off + 2);
          hdr = 4;
        } else if (size === 127) {
          if (buf.length - off < 10) break;
          size = Number(buf.readBigUInt64BE(off + 2));
          hdr = 10;
        }
        const start = off + hdr;
        const end = start + size;
        if (end > buf.length) break;
        off = end;
        if (op === 9) socket.write(Buffer.from([0x8a, 0x80, 0, 0, 0, 0]));
        if (op !== 1) continue;
        if (!run) return fail(`a frame before any subscribe: ${buf.toString('utf8', start, Math.min(end, start + 200))}`);
        const kind = buf[start + TYPE_AT];
        if (kind === 0x6d /* m: message */) {
          if (!run.answered) return fail('a message frame before the subscribed answer');
          // The frame ends `,"offset":"<id>"}`: the digits before the closing `"}`.
          let i = end - OFFSET_END.length;
          if (buf[i] !== 0x22 || buf[i + 1] !== 0x7d) return fail(`a message frame without offset: ${buf.toString('utf8', start, Math.min(end, start + 200))}`);
          let offset = 0;
          let scale = 1;
          for (i--; i > start && buf[i] >= 48 && buf[i] <= 57; i--, scale *= 10) offset += (buf[i] - 48) * scale;
          if (offset <= run.lastOffset) return fail(`offset ${offset} after ${run.lastOffset}: out of order`);
          run.lastOffset = offset;
          client.messages++;
          if (client.messages === run.expect.rows) {
            const ms = now() - run.t0;
            if (offset !== run.expect.last) return fail(`the ${run.expect.rows}th message has offset ${offset}, not ${run.expect.last}`);
            run.done(ms);
          }
        } else if (kind === 0x73 /* s: subscribed */) {
          const answer = JSON.parse(buf.toString('utf8', start, end));
          if (answer.recovered !== true) {
            return fail(`subscribe with since answered recovered:${answer.recovered}, not true (history incomplete or over MAX_REPLAY_ROWS): ${JSON.stringify(answer)}`);
          }
          run.answered = true;
        } else {
          return fail(`unexpected frame: ${buf.toString('utf8', start, Math.min(end, start + 300))}`);
        }
      }
      rest = off < buf.length ? Buffer.from(buf.subarray(off)) : null;
    });
  });
}
