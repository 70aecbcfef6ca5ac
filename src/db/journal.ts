// The journal's reads and pruning (PROTOCOL.md §10), on a connection pool of their own, so a
// catch-up never waits behind NOTIFY batches. The SQL that creates the journal is src/sql/journal.ts.
import postgres from 'postgres';
import { JOURNAL_PRUNE_LOCK, MAX_REPLAY_ROWS } from '../sql/journal.js';

/** One journal row: its offset (a bigint, as text) and the message as published. */
export interface JournalRow {
  readonly offset: string;
  readonly message: string;
}

/** What a `since` finds: the rows after it, in order, or that the history is not complete. */
export type Replay = { readonly complete: true; readonly rows: readonly JournalRow[] } | { readonly complete: false };

export interface Journal {
  /** Whether `pgws sql install` ran on this database (pgws.publish exists). */
  installed(): Promise<boolean>;
  /**
   * What this connection's role lacks to use the journal as pgws does (publish frames through
   * pgws.publish_batch, read history, prune), each as "PRIVILEGE on object"; empty when nothing.
   */
  missingRights(): Promise<{ readonly role: string; readonly missing: readonly string[] }>;
  /** The newest offset of a channel, null when it has none. */
  newestOffset(channel: string): Promise<string | null>;
  /**
   * The channel's rows after `since`, when all of them are still there and there are at most
   * MAX_REPLAY_ROWS (counted before any filter); else `complete: false`.
   */
  replay(channel: string, since: string): Promise<Replay>;
  /**
   * Deletes rows older than `retentionSeconds`, `batch` at a time, while this process holds the
   * prune lock (another process pruning: nothing is done). Resolves with the rows deleted.
   */
  prune(retentionSeconds: number, batch?: number): Promise<number>;
  stop(): Promise<void>;
}

/**
 * The newest offset of the whole journal, null when it is empty, not installed (start-up then
 * stops with its own message) or not readable by this role (catch-up reads then fail with
 * db_error, and LISTEN must not). Read on the listener's connection just before its LISTEN: ids
 * follow commit order, so no message at or below it can reach that LISTEN, and a catch-up must
 * not wait for one.
 */
export async function readJournalFloor(sql: postgres.Sql<Record<string, unknown>>): Promise<string | null> {
  // Without USAGE on the schema even naming the table fails: look at the schema by itself first.
  const [table] = await sql<{ ok: boolean }[]>`
    SELECT CASE WHEN to_regnamespace('pgws') IS NULL OR NOT has_schema_privilege('pgws', 'USAGE') THEN false
                WHEN to_regclass('pgws.journal') IS NULL THEN false
                ELSE has_table_privilege(to_regclass('pgws.journal'), 'SELECT') END AS ok`;
  if (table?.ok !== true) return null;
  const [row] = await sql<{ id: string | null }[]>`SELECT max(id)::text AS id FROM pgws.journal`;
  return row?.id ?? null;
}

/** The rights pgws's role needs on the journal's objects (see missingRights), as they are named in GRANT. */
const JOURNAL_RIGHTS = [
  { key: 'schema_usage', right: 'USAGE on schema pgws' },
  { key: 'journal_select', right: 'SELECT on pgws.journal' },
  { key: 'journal_insert', right: 'INSERT on pgws.journal' },
  { key: 'journal_delete', right: 'DELETE on pgws.journal' },
  { key: 'sequence_usage', right: 'USAGE on sequence pgws.journal_id' },
  { key: 'pruned_select', right: 'SELECT on pgws.journal_pruned' },
  { key: 'pruned_update', right: 'UPDATE on pgws.journal_pruned' },
  { key: 'batch_execute', right: 'EXECUTE on function pgws.publish_batch(text[], text[])' },
] as const;

/** The GRANTs that give `role` every right of JOURNAL_RIGHTS (idempotent: run them as the journal's owner). */
export function journalGrants(role: string): string {
  const who = `"${role.replaceAll('"', '""')}"`;
  return [
    `GRANT USAGE ON SCHEMA pgws TO ${who};`,
    `GRANT SELECT, INSERT, DELETE ON pgws.journal TO ${who};`,
    `GRANT USAGE ON SEQUENCE pgws.journal_id TO ${who};`,
    `GRANT SELECT, UPDATE ON pgws.journal_pruned TO ${who};`,
    `GRANT EXECUTE ON FUNCTION pgws.publish_batch(text[], text[]) TO ${who};`,
  ].join(' ');
}

/** Connections of the journal's pool: catch-up reads run at most this many at a time. */
export const JOURNAL_POOL_SIZE = 2;

export function createJournal(uri: string): Journal {
  const sql = postgres(uri, {
    max: JOURNAL_POOL_SIZE,
    connect_timeout: 10,
    fetch_types: false,
    onnotice: () => undefined,
    connection: { application_name: 'pgws-journal' },
  });

  return {
    async installed() {
      // From the catalog: to_regprocedure fails outright for a role without USAGE on schema pgws,
      // which missingRights() reports with the GRANTs to run.
      const [row] = await sql<{ ok: boolean }[]>`
        SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                       WHERE n.nspname = 'pgws' AND p.proname = 'publish' AND oidvectortypes(p.proargtypes) = 'text') AS ok`;
      return row?.ok === true;
    },

    async missingRights() {
      // By OID from the catalogs: naming pgws objects in has_*_privilege fails outright
      // without USAGE on the schema, which is one of the things to report.
      const [row] = await sql<({ role: string } & Record<(typeof JOURNAL_RIGHTS)[number]['key'], boolean | null>)[]>`
        WITH n AS (SELECT oid FROM pg_namespace WHERE nspname = 'pgws'),
             rel AS (SELECT c.oid, c.relname FROM pg_class c JOIN n ON c.relnamespace = n.oid),
             fn AS (SELECT p.oid FROM pg_proc p JOIN n ON p.pronamespace = n.oid
                    WHERE p.proname = 'publish_batch' AND oidvectortypes(p.proargtypes) = 'text[], text[]')
        SELECT current_user::text AS role,
          has_schema_privilege((SELECT oid FROM n), 'USAGE') AS schema_usage,
          has_table_privilege((SELECT oid FROM rel WHERE relname = 'journal'), 'SELECT') AS journal_select,
          has_table_privilege((SELECT oid FROM rel WHERE relname = 'journal'), 'INSERT') AS journal_insert,
          has_table_privilege((SELECT oid FROM rel WHERE relname = 'journal'), 'DELETE') AS journal_delete,
          has_sequence_privilege((SELECT oid FROM rel WHERE relname = 'journal_id'), 'USAGE') AS sequence_usage,
          has_table_privilege((SELECT oid FROM rel WHERE relname = 'journal_pruned'), 'SELECT') AS pruned_select,
          has_table_privilege((SELECT oid FROM rel WHERE relname = 'journal_pruned'), 'UPDATE') AS pruned_update,
          has_function_privilege((SELECT oid FROM fn), 'EXECUTE') AS batch_execute`;
      // NULL: the object is missing (an install older than this pgws): counted as lacking it.
      const missing = JOURNAL_RIGHTS.filter(({ key }) => row?.[key] !== true).map(({ right }) => right);
      return { role: row?.role ?? '', missing };
    },

    async newestOffset(channel) {
      const [row] = await sql<{ id: string | null }[]>`SELECT max(id)::text AS id FROM pgws.journal WHERE channel = ${channel}`;
      return row?.id ?? null;
    },

    async replay(channel, since) {
      // One snapshot for the watermark and the rows: a prune committing meanwhile cannot
      // make a complete-looking history out of a pruned one.
      return sql.begin('ISOLATION LEVEL REPEATABLE READ READ ONLY', async (tx) => {
        const [pruned] = await tx<{ upto: string }[]>`SELECT upto::text AS upto FROM pgws.journal_pruned`;
        if (pruned !== undefined && BigInt(since) < BigInt(pruned.upto)) return { complete: false } as const;
        const rows = await tx<{ offset: string; message: string }[]>`
          SELECT id::text AS offset, message FROM pgws.journal
          WHERE channel = ${channel} AND id > ${since}::bigint
          ORDER BY id LIMIT ${MAX_REPLAY_ROWS + 1}`;
        if (rows.length > MAX_REPLAY_ROWS) return { complete: false } as const;
        return { complete: true, rows: rows.map(({ offset, message }) => ({ offset, message })) } as const;
      });
    },

    async prune(retentionSeconds, batch = 1000) {
      return sql.begin(async (tx) => {
        // Transaction-scoped: released at the commit whatever happens, so a crashed pruner
        // never leaves the lock held. Another process pruning now: skip this round.
        const [lock] = await tx<{ ok: boolean }[]>`SELECT pg_try_advisory_xact_lock(${JOURNAL_PRUNE_LOCK}) AS ok`;
        if (lock?.ok !== true) return 0;
        const deleted = await tx<{ id: string }[]>`
          DELETE FROM pgws.journal WHERE id IN (
            SELECT id FROM pgws.journal WHERE created_at < now() - make_interval(secs => ${retentionSeconds})
            ORDER BY id LIMIT ${batch})
          RETURNING id::text AS id`;
        if (deleted.length === 0) return 0;
        let highest = 0n;
        for (const { id } of deleted) if (BigInt(id) > highest) highest = BigInt(id);
        await tx`UPDATE pgws.journal_pruned SET upto = greatest(upto, ${highest.toString()}::bigint)`;
        return deleted.length;
      });
    },

    async stop() {
      await sql.end({ timeout: 2 });
    },
  };
}
