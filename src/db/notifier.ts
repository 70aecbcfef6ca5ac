// The NOTIFY side: a pool of PGWS_POOL_SIZE connections, separate from the
// LISTEN connection. Payloads travel as parameters of pg_notify (or, with the journal, of
// pgws.publish, which NOTIFYs on the listen channel itself), never as SQL text.
import postgres from 'postgres';

export interface Notifier {
  /** All payloads in one statement, so one transaction: delivered all together or not at all. */
  notifyAll(channel: string, payloads: readonly string[]): Promise<void>;
  /** Fails with the database's error when it cannot be reached. */
  ping(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `journal`: payloads go through pgws.publish (PROTOCOL.md §10), which numbers them in commit
 * order, stores them and NOTIFYs them on the listen channel the SQL was installed for.
 */
export function createNotifier(uri: string, poolSize: number, journal = false): Notifier {
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
      // With the journal: pgws.publish_batch stores and NOTIFYs the whole batch in array order
      // under one lock, set-based; each envelope's channel is read here (pgws encoded it), so
      // PostgreSQL, the busier side, parses no JSON.
      if (journal) {
        const channels = payloads.map((payload) => (JSON.parse(payload) as { channel: string }).channel);
        await sql.unsafe(
          'SELECT pgws.publish_batch(ARRAY(SELECT json_array_elements_text($1::text::json)), ARRAY(SELECT json_array_elements_text($2::text::json)))',
          [JSON.stringify(channels), JSON.stringify(payloads)],
        );
        return;
      }
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
