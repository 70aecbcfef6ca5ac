// The journal's SQL (`pgws sql install`) applied to a test database, for the tests of a pgws
// that runs with PGWS_JOURNAL=on.
import postgres from 'postgres';
import { installSql } from '../../src/sql/journal.js';
import { LISTEN_CHANNEL } from './pgws.js';

/** Installs the journal for the harness's listen channel. Idempotent, as the SQL is. */
export async function installJournal(uri: string): Promise<void> {
  // The SQL has its own BEGIN/COMMIT: one connection, not a pool.
  const one = postgres(uri, { max: 1, onnotice: () => undefined });
  try {
    await one.unsafe(installSql(LISTEN_CHANNEL));
  } finally {
    await one.end();
  }
}
