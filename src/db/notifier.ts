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
      // One statement keeps a multi-channel frame atomic: all its NOTIFYs commit
      // together or not at all. The payloads differ by channel, so PostgreSQL's
      // folding of identical NOTIFYs in a transaction cannot merge them. Only
      // placeholders are generated here; the data travels as parameters.
      const calls = payloads.map((_, i) => `pg_notify($1, $${i + 2})`).join(', ');
      await sql.unsafe(`SELECT ${calls}`, [channel, ...payloads]);
    },
    async ping() {
      await sql`SELECT 1`;
    },
    async stop() {
      await sql.end({ timeout: 2 });
    },
  };
}
