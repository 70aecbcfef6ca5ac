// Pieces shared by the journal scenarios (journal-inbound, journal-catchup, journal-growth;
// issue 14): the journal's SQL installed once per run in the bench's database, before the
// first system with PGWS_JOURNAL=on starts, and a short-lived connection for the bench's own
// statements on it (truncating, filling, measuring).
import postgres from 'postgres';
import { installSql } from '../../dist/sql/journal.js';
import { LISTEN_CHANNEL } from '../lib/producer.mjs';

/** The systems of the journal scenarios: pgws (uws) plain, and with PGWS_JOURNAL=on. */
export const PLAIN = 'pgws-uws';
export const JOURNALED = 'pgws-uws-journal';

const installed = new Map();

/**
 * `pgws sql install` for the bench's listen channel (pgws's default, which the raw LISTEN
 * counter listens on too), once per database per run. Idempotent SQL with its own
 * BEGIN/COMMIT, so it goes as one simple-protocol text.
 */
export function ensureJournal(dbUri) {
  let done = installed.get(dbUri);
  if (!done) {
    done = withSql(dbUri, (sql) => sql.unsafe(installSql(LISTEN_CHANNEL)).then(() => undefined));
    installed.set(dbUri, done);
    done.catch(() => installed.delete(dbUri));
  }
  return done;
}

/**
 * Runs `fn(sql)` on one connection of its own, closed afterwards. A statement waits at most
 * 120 s (a TRUNCATE waits for the backends of a system just killed to end their transaction).
 */
export async function withSql(dbUri, fn) {
  const sql = postgres(dbUri, {
    max: 1,
    fetch_types: false,
    onnotice: () => undefined,
    connection: { application_name: 'pgws-bench-journal', statement_timeout: 120_000 },
  });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 2 });
  }
}

/** Empties the journal (the rows; the id sequence and the pruned watermark go on). */
export const truncateJournal = (dbUri) => withSql(dbUri, (sql) => sql.unsafe('TRUNCATE pgws.journal'));

/** Formatting for the notes. */
export const pct = (r) => `${(r * 100).toFixed(0)}%`;
