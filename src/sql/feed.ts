// The SQL of `pgws sql feed` and `pgws sql unfeed` (PROTOCOL.md §11): a row trigger that turns
// each committed INSERT, UPDATE and DELETE of one table into a message
//   {"channel":NAME,"payload":{"op":"INSERT","schema":"public","table":"todos","new":{...},"old":null}}
// Idempotent: running it again replaces the feed (channel, columns); unfeed removes it.
//
// "Committed only" needs nothing special: NOTIFY is delivered at commit and not at all for a
// rolled-back transaction, and pgws.publish's journal row rolls back with it.
//
// Journal or not is decided by the trigger at each change, not when the SQL is made: it calls
// pgws.publish when `to_regprocedure('pgws.publish(text)')` finds it, else pg_notify on the
// listen channel baked in here. Installing the journal later needs no new feed.
//
// Nothing here needs the database: the SQL checks the table and the columns itself when it
// runs (a DO block before the trigger), so what `pgws sql feed` prints is exactly what
// `--apply` runs. The primary key, needed only for a row too big for one notification, is
// read by the trigger when that happens, from pg_index.
import { createHash } from 'node:crypto';
import { sqlLiteral } from './journal.js';

/** A table as named in the catalog: no quotes, case as stored. */
export interface QualifiedName {
  readonly schema: string;
  readonly table: string;
}

export interface FeedOptions extends QualifiedName {
  /** The pgws channel of the messages (default `<schema>.<table>`). */
  readonly channel?: string;
  /** Only these columns in `new` and `old` (catalog names); undefined: every column. */
  readonly columns?: readonly string[];
  /** Where pg_notify sends when the journal is not installed (PGWS_LISTEN_CHANNEL). */
  readonly listenChannel: string;
}

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

/** The trigger's name on the fed table: one feed per table. */
export const FEED_TRIGGER = 'pgws_feed';
/** A NOTIFY payload must be shorter than 8000 bytes. */
export const MAX_NOTIFY_BYTES = 7999;
/** What pgws.publish inserts: `"pgws_offset":"<id>",`, a bigint id having at most 19 digits. */
export const OFFSET_MEMBER_BYTES = '"pgws_offset":"",'.length + 19;
/** PostgreSQL identifiers are at most NAMEDATALEN - 1 bytes. */
const MAX_IDENTIFIER_BYTES = 63;
const FUNCTION_PREFIX = 'pgws_feed_';

/** The default channel of a feed. */
export function defaultFeedChannel(name: QualifiedName): string {
  return `${name.schema}.${name.table}`;
}

/** `"name"`: always quoted, so keywords and mixed case need no thought; quotes doubled. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function qualified(name: QualifiedName): string {
  return `${quoteIdent(name.schema)}.${quoteIdent(name.table)}`;
}

/**
 * The trigger function's name, in the table's schema: `pgws_feed_<table>`, or, when that would
 * pass 63 bytes, the table name cut short with 8 hex digits of its SHA-256, so two long names
 * never share a function.
 */
export function feedFunctionName(table: string): string {
  const plain = `${FUNCTION_PREFIX}${table}`;
  if (Buffer.byteLength(plain) <= MAX_IDENTIFIER_BYTES) return plain;
  const hash = createHash('sha256').update(table).digest('hex').slice(0, 8);
  return `${FUNCTION_PREFIX}${cutToBytes(table, MAX_IDENTIFIER_BYTES - FUNCTION_PREFIX.length - 1 - hash.length)}_${hash}`;
}

function cutToBytes(text: string, bytes: number): string {
  let out = '';
  for (const char of text) {
    if (Buffer.byteLength(out + char) > bytes) break;
    out += char;
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Names on the command line, read as SQL reads them: `public.todos`, `app."Todo Items"`.

/**
 * Splits `text` at `separator` outside double quotes. An unquoted part is folded to lower case
 * (ASCII, as PostgreSQL folds identifiers); a quoted part is kept as written, `""` being a quote.
 */
export function splitIdentifiers(text: string, separator: '.' | ','): Parsed<string[]> {
  const parts: string[] = [];
  let index = 0;
  for (;;) {
    while (text[index] === ' ') index += 1;
    let part = '';
    if (text[index] === '"') {
      index += 1;
      for (;;) {
        if (index >= text.length) return { ok: false, error: 'a double quote is not closed' };
        if (text[index] === '"') {
          if (text[index + 1] !== '"') break;
          index += 1;
        }
        part += text[index];
        index += 1;
      }
      index += 1;
      if (part === '') return { ok: false, error: 'a quoted name is empty' };
    } else {
      while (index < text.length && text[index] !== separator && text[index] !== '"') {
        part += text[index];
        index += 1;
      }
      part = part.trim().replace(/[A-Z]/g, (letter) => letter.toLowerCase());
      if (part === '') return { ok: false, error: 'a name is empty' };
      if (text[index] === '"') return { ok: false, error: `a double quote inside ${JSON.stringify(part)}: quote the whole name` };
    }
    while (text[index] === ' ') index += 1;
    if (Buffer.byteLength(part) > MAX_IDENTIFIER_BYTES) {
      return { ok: false, error: `${JSON.stringify(part)} is longer than ${MAX_IDENTIFIER_BYTES} bytes, the longest name PostgreSQL keeps` };
    }
    parts.push(part);
    if (index >= text.length) return { ok: true, value: parts };
    if (text[index] !== separator) return { ok: false, error: `unexpected ${JSON.stringify(text[index])} after a quoted name` };
    index += 1;
  }
}

/** `<schema>.<table>`, both parts required. */
export function parseTableName(text: string): Parsed<QualifiedName> {
  const split = splitIdentifiers(text, '.');
  if (!split.ok) return split;
  const [schema, table, ...rest] = split.value;
  if (schema === undefined || table === undefined || rest.length > 0) {
    return { ok: false, error: 'expected <schema>.<table>, such as public.todos (quote a name with a dot in it: app."v1.todos")' };
  }
  return { ok: true, value: { schema, table } };
}

/** `a,b,c`: at least one column, none twice. */
export function parseColumnList(text: string): Parsed<string[]> {
  const split = splitIdentifiers(text, ',');
  if (!split.ok) return split;
  const twice = split.value.find((column, index) => split.value.indexOf(column) !== index);
  if (twice !== undefined) return { ok: false, error: `column ${JSON.stringify(twice)} is listed twice` };
  return split;
}

// ---------------------------------------------------------------------------------------
// The SQL.

/** A dollar quote whose tag does not occur in the body (names and channels are free text). */
function dollarQuote(body: string): string {
  let tag = '$pgws$';
  for (let n = 1; body.includes(tag); n += 1) tag = `$pgws${n}$`;
  return `${tag}${body}${tag}`;
}

function textArray(items: readonly string[]): string {
  return `ARRAY[${items.map(sqlLiteral).join(', ')}]::text[]`;
}

/**
 * SQL, inside the trigger: `row` (json) as text with only the members named in `names` (text[]),
 * in column order; NULL stays NULL.
 */
function pick(row: string, names: string, indent: string): string {
  return `CASE WHEN ${row} IS NOT NULL THEN (
${indent}  SELECT '{' || coalesce(string_agg(to_json(field.name)::text || ':' || field.value::text, ',' ORDER BY field.ord), '') || '}'
${indent}  FROM json_each(${row}) WITH ORDINALITY AS field(name, value, ord)
${indent}  WHERE field.name = ANY (${names})) END`;
}

/** The SQL `pgws sql feed` prints. */
export function feedSql(options: FeedOptions): string {
  const name = qualified(options);
  const functionName = `${quoteIdent(options.schema)}.${quoteIdent(feedFunctionName(options.table))}`;
  const channel = options.channel ?? defaultFeedChannel(options);
  const columns = options.columns;
  const notifyLimit = MAX_NOTIFY_BYTES;
  const journalLimit = MAX_NOTIFY_BYTES - OFFSET_MEMBER_BYTES;

  const check = `
DECLARE
  fed regclass := to_regclass(${sqlLiteral(name)});
  missing text;
BEGIN
  IF fed IS NULL OR NOT EXISTS (SELECT FROM pg_catalog.pg_class WHERE oid = fed AND relkind IN ('r', 'p')) THEN
    RAISE EXCEPTION 'pgws sql feed: there is no table %', ${sqlLiteral(name)} USING ERRCODE = '42P01';
  END IF;${
    columns === undefined
      ? ''
      : `
  SELECT string_agg(format('%I', wanted), ', ') INTO missing
  FROM unnest(${textArray(columns)}) AS wanted
  WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_attribute
                    WHERE attrelid = fed AND attname = wanted AND attnum > 0 AND NOT attisdropped);
  IF missing IS NOT NULL THEN
    RAISE EXCEPTION 'pgws sql feed: table % has no column %', ${sqlLiteral(name)}, missing USING ERRCODE = '42703';
  END IF;`
  }
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_index WHERE indrelid = fed AND indisprimary) THEN
    RAISE WARNING 'pgws sql feed: table % has no primary key: a change too big for one notification will be sent with "new" and "old" null', ${sqlLiteral(name)};
  END IF;
END
`;

  const message = (newText: string, oldText: string, tail: string): string =>
    `format(message_format, to_json(feed_channel), to_json(TG_OP), to_json(fed_schema), to_json(fed_table), ${newText}, ${oldText}, ${tail})`;
  const trigger = `
DECLARE
  -- Baked in by pgws sql feed: run it again to change them.
  feed_channel constant text := ${sqlLiteral(channel)};
  fed_schema constant text := ${sqlLiteral(options.schema)};
  fed_table constant text := ${sqlLiteral(options.table)};
  feed_columns constant text[] := ${columns === undefined ? 'NULL; -- every column' : `${textArray(columns)};`}
  listen_channel constant text := ${sqlLiteral(options.listenChannel)};
  message_format constant text := '{"channel":%s,"payload":{"op":%s,"schema":%s,"table":%s,"new":%s,"old":%s%s}}';
  -- Looked up at each change: installing (or dropping) the journal needs no new feed.
  journaled constant boolean := to_regprocedure('pgws.publish(text)') IS NOT NULL;
  -- A NOTIFY payload must be shorter than 8000 bytes; pgws.publish inserts
  -- "pgws_offset":"<id>", into it (at most ${OFFSET_MEMBER_BYTES} bytes).
  max_bytes constant integer := CASE WHEN journaled THEN ${journalLimit} ELSE ${notifyLimit} END;
  new_row json;
  old_row json;
  new_text text;
  old_text text;
  key_columns text[];
  message text;
BEGIN
  IF TG_OP <> 'DELETE' THEN new_row := to_json(NEW); END IF;
  IF TG_OP <> 'INSERT' THEN old_row := to_json(OLD); END IF;
  -- "new" and "old" as JSON text (NULL for null)${columns === undefined ? '' : ', with only the feed\'s columns'}.
  new_text := ${columns === undefined ? 'new_row::text' : pick('new_row', 'feed_columns', '  ')};
  old_text := ${columns === undefined ? 'old_row::text' : pick('old_row', 'feed_columns', '  ')};
  message := ${message("coalesce(new_text, 'null')", "coalesce(old_text, 'null')", "''")};

  IF octet_length(message) > max_bytes THEN
    -- Too big for one notification: the primary key columns only, and "truncated":true.
    key_columns := ARRAY(
      SELECT attribute.attname::text
      FROM pg_index AS pk
      CROSS JOIN unnest(pk.indkey::int2[]) WITH ORDINALITY AS pk_column(attnum, ord)
      JOIN pg_attribute AS attribute ON attribute.attrelid = pk.indrelid AND attribute.attnum = pk_column.attnum
      WHERE pk.indrelid = TG_RELID AND pk.indisprimary
      ORDER BY pk_column.ord);
    new_text := ${pick('new_row', 'key_columns', '    ')};
    old_text := ${pick('old_row', 'key_columns', '    ')};
    message := ${message("coalesce(new_text, 'null')", "coalesce(old_text, 'null')", `',"truncated":true'`)};
    IF octet_length(message) > max_bytes OR cardinality(key_columns) = 0 THEN
      -- No primary key, or even the key does not fit: the change is still announced.
      message := ${message("'null'", "'null'", `',"truncated":true'`)};
    END IF;
  END IF;

  IF journaled THEN
    PERFORM pgws.publish(message);
  ELSE
    PERFORM pg_notify(listen_channel, message);
  END IF;
  RETURN NULL;
END
`;

  const via = `through pgws.publish when the journal is installed at that moment (pgws sql install), else through pg_notify on the listen channel ${sqlLiteral(options.listenChannel)}`;
  return `-- pgws feed of ${name} (PROTOCOL.md section 11): each committed INSERT, UPDATE and DELETE
-- becomes a message on channel ${sqlLiteral(channel)}, ${via}.
-- Idempotent: run it again to change the channel or the columns; pgws sql unfeed removes it.
BEGIN;

-- Refuse a missing table or column now rather than at the first write.
DO ${dollarQuote(check)};

-- SECURITY DEFINER: every role that may write the table feeds it, including into the journal.
-- The search_path is fixed so nothing the writer defines is called instead.
CREATE OR REPLACE FUNCTION ${functionName}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS ${dollarQuote(trigger)};

COMMENT ON FUNCTION ${functionName}() IS ${sqlLiteral(`pgws feed of ${name} to channel ${channel} (pgws sql feed; pgws sql unfeed removes it)`)};

DROP TRIGGER IF EXISTS ${FEED_TRIGGER} ON ${name};
CREATE TRIGGER ${FEED_TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON ${name}
  FOR EACH ROW EXECUTE FUNCTION ${functionName}();

COMMIT;
`;
}

/** The SQL `pgws sql unfeed` prints: drops the trigger and its function; nothing there is fine. */
export function unfeedSql(name: QualifiedName): string {
  const functionName = `${quoteIdent(name.schema)}.${quoteIdent(feedFunctionName(name.table))}`;
  return `-- Removes the pgws feed of ${qualified(name)} (pgws sql feed). Idempotent.
BEGIN;
DROP TRIGGER IF EXISTS ${FEED_TRIGGER} ON ${qualified(name)};
DROP FUNCTION IF EXISTS ${functionName}();
COMMIT;
`;
}
