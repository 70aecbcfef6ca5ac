// Issue 14, journal growth and pruning, in the database alone (no relay runs while measured).
// Once per run, the inbound envelope is taken from pgws itself: pgws (uws, journal) is
// started, one writer socket on /in/<token> sends the inbound scenario's frame, and the row it
// left in pgws.journal is the template. Each repetition then:
// - TRUNCATEs the journal and publishes N copies of that envelope with
//   `SELECT count(pgws.publish($1)) FROM generate_series(1, 10000)` statements (the
//   "pgws.publish/s" column: that SQL's rate, nobody listening);
// - reads pg_total_relation_size('pgws.journal') (heap + TOAST + the two indexes; the
//   "heap" and "indexes" columns split it) over the rows: bytes per message;
// - waits until every row is over 1 s old, then calls createJournal(uri).prune(1, 1000)
//   (dist/db/journal.js, as pgws's background pruning does) in a loop until it returns 0:
//   rows deleted per second, and PostgreSQL's CPU-seconds over that loop.
import { createJournal } from '../../dist/db/journal.js';
import { sleep } from '../lib/measure.mjs';
import { treeCpuSeconds } from '../lib/procs.mjs';
import { Histogram, connect, now, textFrame } from '../lib/wsclient.mjs';
import { JOURNALED, ensureJournal, truncateJournal, withSql } from './journal-shared.mjs';
import { count } from './v2-shared.mjs';

/** The inbound scenario's writer frame (bench/lib/loadgen.mjs, pump()). */
const WRITER_FRAME = '{"w":1,"seq":1,"pad":"0123456789abcdef0123456789abcdef"}';

let envelope;

/** The text pgws publishes for one inbound writer frame, as stored in pgws.journal.message. */
async function inboundEnvelope(system, ctx) {
  if (envelope) return envelope;
  await truncateJournal(ctx.dbUri);
  const server = await ctx.startServer(system);
  const stats = { frames: 0, closed: 0, codes: {}, hist: new Histogram() };
  let socket;
  try {
    socket = await connect(server.port, `/in/${ctx.tokens.writer}`, stats);
    socket.write(textFrame(WRITER_FRAME));
    for (const deadline = now() + 10_000; now() < deadline; await sleep(50)) {
      const [row] = await withSql(ctx.dbUri, (sql) => sql`SELECT message FROM pgws.journal ORDER BY id DESC LIMIT 1`);
      if (row) return (envelope = row.message);
    }
    throw new Error('the writer frame reached no journal row within 10 s');
  } finally {
    socket?.destroy();
    await server.stop();
  }
}

export const journalGrowth = {
  id: 'journal-growth',
  title: 'journal growth and pruning: N inbound envelopes in pgws.journal, bytes per message, then prune(1 s, 1000) until empty',
  roles: ['journal-relay'],
  primary: { key: 'bytesPerRow', label: 'bytes/message', better: 'lower' },
  columns: ['rows', 'messageBytes', 'bytesPerRow', 'heapBytesPerRow', 'indexBytesPerRow', 'publishPerSec', 'prunePerSec', 'pruneSeconds', 'pruneDbCpuS'],
  variants(quick, { smoke } = {}) {
    const rows = smoke ? 2000 : quick ? 20_000 : 100_000;
    return [{ label: `${count(rows)} messages, prune batch 1000`, rows, batch: 1000, systems: [JOURNALED] }];
  },
  async run(system, v, ctx) {
    await ensureJournal(ctx.dbUri);
    const message = await inboundEnvelope(system, ctx);
    await truncateJournal(ctx.dbUri);
    const perStatement = Math.min(10_000, v.rows);
    const sizes = await withSql(ctx.dbUri, async (sql) => {
      const t0 = now();
      for (let done = 0; done < v.rows; done += perStatement) {
        const n = Math.min(perStatement, v.rows - done);
        await sql.unsafe('SELECT count(pgws.publish($1)) FROM generate_series(1, $2::int)', [message, n]);
      }
      const t1 = now();
      const [s] = await sql`SELECT count(*)::int AS rows, avg(octet_length(message))::float8 AS message_bytes,
          pg_total_relation_size('pgws.journal')::float8 AS total, pg_relation_size('pgws.journal')::float8 AS heap,
          pg_indexes_size('pgws.journal')::float8 AS indexes FROM pgws.journal`;
      return { ...s, publishPerSec: v.rows / ((t1 - t0) / 1000) };
    });
    if (sizes.rows !== v.rows) throw new Error(`the journal holds ${sizes.rows} rows, not ${v.rows}`);
    // created_at is the inserting transaction's start: 1 s after the last statement ended, all are older than 1 s.
    await sleep(1100);
    const journal = createJournal(ctx.dbUri);
    let pruned = 0;
    let pruneMs;
    let pruneDbCpuS;
    try {
      const d0 = treeCpuSeconds(ctx.dbPid);
      const t0 = now();
      for (let n = await journal.prune(1, v.batch); n > 0; n = await journal.prune(1, v.batch)) pruned += n;
      pruneMs = now() - t0;
      pruneDbCpuS = treeCpuSeconds(ctx.dbPid) - d0;
    } finally {
      await journal.stop();
    }
    const [{ remaining }] = await withSql(ctx.dbUri, (sql) => sql`SELECT count(*)::int AS remaining FROM pgws.journal`);
    if (pruned !== v.rows || remaining !== 0) throw new Error(`pruning deleted ${pruned} of ${v.rows} rows, ${remaining} left`);
    return {
      rows: sizes.rows,
      messageBytes: sizes.message_bytes,
      bytesPerRow: sizes.total / sizes.rows,
      heapBytesPerRow: sizes.heap / sizes.rows,
      indexBytesPerRow: sizes.indexes / sizes.rows,
      publishPerSec: sizes.publishPerSec,
      prunePerSec: pruned / (pruneMs / 1000),
      pruneSeconds: pruneMs / 1000,
      pruneDbCpuS,
    };
  },
};
