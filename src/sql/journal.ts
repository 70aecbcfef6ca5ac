// The journal's SQL (PROTOCOL.md §10), as `pgws sql install` prints it and as the server relies
// on it. Idempotent: running it again (after an upgrade of pgws, or for another listen
// channel) replaces the functions and keeps the rows.
//
// Commit order: pgws.publish takes a transaction-scoped advisory lock before it draws the next
// id, so a writer draws its id only after the one before it committed (the lock is released
// after the commit is visible). Ids therefore grow in commit order, and NOTIFY's own queue,
// filled at commit, delivers them in that order too. A rolled-back writer leaves a gap in the
// ids, never a reordering. The lock is held only from the call to the commit; NOTIFY already
// serialises commits that notify on a global lock, so writers lose little to it.

/** Key of the transaction-scoped lock that orders writers (`pg_advisory_xact_lock`): 'pgws' + 1. */
export const JOURNAL_WRITE_LOCK = 1_885_828_979_1;
/** Key of the session lock one pgws process holds while it prunes (`pg_try_advisory_lock`). */
export const JOURNAL_PRUNE_LOCK = 1_885_828_979_2;
/** A `since` with more rows than this after it (counted before the filter) is not replayed. */
export const MAX_REPLAY_ROWS = 10_000;

/** A SQL string literal: the text in single quotes, each quote doubled (standard_conforming_strings is on since 9.1). */
export function sqlLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/** The SQL of `pgws sql install` for this listen channel. */
export function installSql(listenChannel: string): string {
  return `-- pgws journal (PROTOCOL.md section 10), for the listen channel ${sqlLiteral(listenChannel)}.
-- Idempotent: safe to run again; rows are kept.
BEGIN;

CREATE SCHEMA IF NOT EXISTS pgws;

CREATE TABLE IF NOT EXISTS pgws.journal (
  id bigint PRIMARY KEY,
  channel text NOT NULL,
  message text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
-- Catch-up reads one channel's rows after an offset; the newest offset of a channel is its max.
CREATE INDEX IF NOT EXISTS journal_channel_id ON pgws.journal (channel, id);
CREATE INDEX IF NOT EXISTS journal_created_at ON pgws.journal (created_at);
CREATE SEQUENCE IF NOT EXISTS pgws.journal_id;

-- The highest id pruned so far: a since below it cannot be replayed completely.
CREATE TABLE IF NOT EXISTS pgws.journal_pruned (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  upto bigint NOT NULL DEFAULT 0
);
INSERT INTO pgws.journal_pruned (only_row, upto) VALUES (true, 0) ON CONFLICT (only_row) DO NOTHING;

-- message: a JSON object text with a string "channel" (the routing rule of section 2).
-- Numbers it in commit order, stores it as given, and NOTIFYs it on the listen channel with
-- "pgws_offset":"<id>", inserted right after the opening brace.
CREATE OR REPLACE FUNCTION pgws.publish(message text) RETURNS bigint
LANGUAGE plpgsql AS $pgws$
DECLARE
  parsed jsonb;
  new_id bigint;
BEGIN
  BEGIN
    parsed := message::jsonb;
  EXCEPTION WHEN others THEN
    RAISE EXCEPTION 'pgws.publish: the message is not JSON' USING ERRCODE = '22023';
  END;
  IF jsonb_typeof(parsed) IS DISTINCT FROM 'object' OR jsonb_typeof(parsed -> 'channel') IS DISTINCT FROM 'string' THEN
    RAISE EXCEPTION 'pgws.publish: the message must be a JSON object with a string "channel"' USING ERRCODE = '22023';
  END IF;
  PERFORM pg_advisory_xact_lock(${JOURNAL_WRITE_LOCK});
  new_id := nextval('pgws.journal_id');
  INSERT INTO pgws.journal (id, channel, message) VALUES (new_id, parsed ->> 'channel', message);
  PERFORM pg_notify(${sqlLiteral(listenChannel)},
    regexp_replace(message, '^(\\s*)\\{', '\\1{"pgws_offset":"' || new_id || '",'));
  RETURN new_id;
END
$pgws$;

-- pgws's own batches (PGWS_JOURNAL=on): messages[i] goes to channels[i], numbered and NOTIFYed in
-- array order, under one lock, in one set-based statement. For pgws, whose messages are JSON
-- objects it encoded itself (not checked here): use pgws.publish from your own SQL.
CREATE OR REPLACE FUNCTION pgws.publish_batch(channels text[], messages text[]) RETURNS bigint
LANGUAGE plpgsql AS $pgws$
DECLARE
  sent bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(${JOURNAL_WRITE_LOCK});
  -- nextval, a volatile function, is evaluated after the sort: ids follow the array order.
  WITH stored AS (
    INSERT INTO pgws.journal (id, channel, message)
    SELECT nextval('pgws.journal_id'), t.channel, t.message
    FROM unnest(channels, messages) WITH ORDINALITY AS t(channel, message, n)
    ORDER BY t.n
    RETURNING id, message
  )
  SELECT count(pg_notify(${sqlLiteral(listenChannel)}, '{"pgws_offset":"' || id || '",' || substr(message, 2)))
  INTO sent FROM (SELECT id, message FROM stored ORDER BY id) AS ordered;
  RETURN sent;
END
$pgws$;

-- The journaled form of pg_notify(<listen channel>, json_build_object('channel', ..., 'payload', ...)::text).
CREATE OR REPLACE FUNCTION pgws.send(channel text, payload text) RETURNS bigint
LANGUAGE sql AS $pgws$
  SELECT pgws.publish(json_build_object('channel', channel, 'payload', payload)::text)
$pgws$;

COMMIT;
`;
}
