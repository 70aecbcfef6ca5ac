// The NOTIFY side: a pool of PGWS_POOL_SIZE connections, separate from the
// LISTEN connection. Payloads travel as parameters of pg_notify, never as SQL text.
import postgres from 'postgres';

export interface Notifier {
  /** All payloads in one statement, so one transaction: delivered all together or not at all. */
  notifyAll(channel: string, payloads: readonly string[]): Promise<void>;
  /** Fails with the database's error when it cannot be reached. */
  ping(): Promise<void>;
  stop(): Promise<void>;
}

export function createNotifier(uri: string, poolSize: number): Notifier {
  const sql = postgres(uri, {
    max: poolSize,
    connect_timeout: 10,
    fetch_types: false,
    onnotice: () => undefined,
    connection: { application_name: 'pgws-notifier' },
  });

  return {
    async notifyAll(channel, payloads) {
      // One statement is one transaction: a batch commits all together or not
      // at all. The payloads travel as one JSON-array parameter (never as SQL
      // text), and json_array_elements_text yields them in array order, so the
      // NOTIFYs are queued in the order given. One row comes back, whatever the
      // batch size (a SELECT list of one pg_notify per payload would hit
      // PostgreSQL's 1664-column limit).
      // `::text::json`, not `::json`: told the parameter is json, postgres.js
      // would JSON-encode our already-encoded array a second time.
      await sql.unsafe('SELECT count(pg_notify($1, p)) FROM json_array_elements_text($2::text::json) AS p', [
        channel,
        JSON.stringify(payloads),
      ]);
    },
    async ping() {
      await sql`SELECT 1`;
    },
    async stop() {
      await sql.end({ timeout: 2 });
    },
  };
}
