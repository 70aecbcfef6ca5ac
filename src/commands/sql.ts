// `pgws sql install | feed | unfeed` (PROTOCOL.md §10, §11): prints the SQL pgws relies on in
// the database, alone on stdout, so `pgws sql install > journal.sql` or `pgws sql install | psql`
// works; with --apply, runs it against PGWS_DB_URI instead and says on stderr what it did.
// It reads only what it needs, from the same places and with the same parsers as the daemon
// (flag > environment > .env file > default; `@path` reads a file): PGWS_LISTEN_CHANNEL for
// install and feed, PGWS_DB_URI only with --apply. The URI's credentials are never printed.
//
// Exit codes: 0 done; 1 --apply failed (database unreachable, SQL error); 2 a bad command line.
import { Command, CommanderError, Option } from 'commander';
import postgres from 'postgres';
import { describeLeftovers, maskUrlCredentials, readEnvFile } from '../config.js';
import { describeDbError } from '../db/errors.js';
import { DEFAULT_ENV_FILE, ENV_FILE_FLAG, OPTIONS, longFlag } from '../options.js';
import { FEED_TRIGGER, defaultFeedChannel, feedSql, parseColumnList, parseTableName, qualified, unfeedSql } from '../sql/feed.js';
import type { QualifiedName } from '../sql/feed.js';
import { installSql, sqlLiteral } from '../sql/journal.js';
import { EXIT_CONFIG_ERROR } from './command.js';
import type { CommandIo, RunCommand } from './command.js';

/** Exit code when --apply fails: the command line was fine, the database said no. */
export const EXIT_APPLY_FAILED = 1;

const DB_URI_ROW = OPTIONS.dbUri;
const LISTEN_CHANNEL_ROW = OPTIONS.listenChannel;

type SubCommandName = 'install' | 'feed' | 'unfeed';
const SUB_COMMAND_NAMES: readonly SubCommandName[] = ['install', 'feed', 'unfeed'];

const OVERVIEW = `Usage: pgws sql <command> [options]

Print the SQL pgws relies on in the database, alone on stdout (pipe it to psql, or keep it in
your migrations), or run it with --apply against PGWS_DB_URI. Every script is idempotent.

Commands:
  install                 the journal (PROTOCOL.md section 10): schema pgws, table pgws.journal,
                          functions pgws.publish(message) and pgws.send(channel, payload)
  feed <schema.table>     a trigger sending each committed INSERT, UPDATE and DELETE of the table
                          as a message (PROTOCOL.md section 11)
  unfeed <schema.table>   remove that trigger

Run pgws sql <command> --help for its options.
Exit codes: 0 done; 1 --apply failed (database unreachable, SQL error); 2 a bad command line.
`;

const LISTEN_CHANNEL_NOTE = `
The listen channel is read as the server reads it: --listen-channel, then PGWS_LISTEN_CHANNEL
in the environment, then the .env file, then the default (postgres-websockets-listener).`;

const COMMON_AFTER = `
PGWS_DB_URI (or --db-uri; @/path/to/file reads it from a file) is read only with --apply.
Without --apply nothing connects to a database: the SQL alone is printed on stdout.
With --apply nothing goes to stdout; what was done, or why not, goes to stderr.

Exit codes: 0 done; 1 --apply failed (database unreachable, SQL error); 2 a bad command line.`;

const HELP_AFTER: Readonly<Record<SubCommandName, string>> = {
  install: `
Examples:
  pgws sql install > migrations/001_pgws_journal.sql
  pgws sql install | psql "$DATABASE_URL" -v ON_ERROR_STOP=1
  PGWS_DB_URI=postgres://app@db/app pgws sql install --apply

Creates schema pgws, table pgws.journal, and the functions pgws.publish(message text) and
pgws.send(channel text, payload text), both returning the message's offset. Running it again
(after an upgrade of pgws, or for another listen channel) replaces the functions and keeps the rows.
${LISTEN_CHANNEL_NOTE}${COMMON_AFTER}`,
  feed: `
Examples:
  pgws sql feed public.todos > migrations/002_feed_todos.sql
  pgws sql feed public.todos --channel todos --columns id,title,done --apply
  pgws sql feed 'app."Order Items"'        (quote a name as in SQL; unquoted names are lower-cased)

Each committed change becomes, on channel NAME (default <schema>.<table>):
  {"channel":"public.todos","payload":{"op":"UPDATE","schema":"public","table":"todos","new":{...},"old":{...}}}
"new" is null for DELETE and "old" null for INSERT. A change whose message would not fit in a
notification (8000 bytes) is sent with the primary key columns only and "truncated":true.
The trigger calls pgws.publish when the journal is installed at the time of the change
(pgws sql install), else pg_notify on the listen channel baked in here: installing the journal
later needs no new feed. Running it again replaces the feed (one trigger per table).
${LISTEN_CHANNEL_NOTE}${COMMON_AFTER}`,
  unfeed: `
Examples:
  pgws sql unfeed public.todos --apply

Drops the trigger and the function pgws sql feed made for the table; nothing there is fine.
${COMMON_AFTER}`,
};

function createSqlCommand(name: SubCommandName): Command {
  const command = new Command(`pgws sql ${name}`).helpOption('-h, --help', 'print this help and exit');
  if (name === 'install') {
    command.usage('[--apply] [options]').description('Print (or run, with --apply) the SQL of the journal.');
  } else if (name === 'feed') {
    command
      .usage('<schema.table> [--channel <name>] [--columns <a,b,c>] [--apply] [options]')
      .description("Print (or run, with --apply) a trigger that sends each committed change of the table as a message.")
      .addOption(new Option('--channel <name>', 'the channel of the messages (default: <schema>.<table>)'))
      .addOption(new Option('--columns <a,b,c>', 'only these columns in "new" and "old" (default: every column)'));
  } else {
    command.usage('<schema.table> [--apply] [options]').description('Print (or run, with --apply) the SQL removing the feed of the table.');
  }
  command.addOption(new Option('--apply', 'run the SQL against PGWS_DB_URI instead of printing it'));
  if (name !== 'unfeed') command.addOption(new Option(LISTEN_CHANNEL_ROW.flag, `${LISTEN_CHANNEL_ROW.doc} (env: ${LISTEN_CHANNEL_ROW.env}; default: ${LISTEN_CHANNEL_ROW.default})`));
  command
    .addOption(new Option(DB_URI_ROW.flag, `${DB_URI_ROW.doc}, used with --apply (env: ${DB_URI_ROW.env})`))
    .addOption(new Option(ENV_FILE_FLAG, `read variables from this file (default: ${DEFAULT_ENV_FILE} in the current folder, if present)`))
    .addHelpText('after', HELP_AFTER[name]);
  return command;
}

export const run: RunCommand = async (args, io) => {
  const [name, ...rest] = args;
  if (name === '-h' || name === '--help' || name === 'help') {
    io.writeOut(OVERVIEW);
    return 0;
  }
  const subCommand = SUB_COMMAND_NAMES.find((candidate) => candidate === name);
  if (subCommand === undefined) {
    const said = name === undefined ? 'a command is needed' : `unknown command ${JSON.stringify(name)}${suggest(name)}`;
    io.writeErr(`pgws sql: ${said}: install, feed or unfeed.\nRun pgws sql --help for the commands.\n`);
    return EXIT_CONFIG_ERROR;
  }
  const command = createSqlCommand(subCommand);
  // Help wins over anything else on the line, as for the daemon.
  if (rest.some((arg) => arg === '-h' || arg === '--help')) {
    command.configureOutput({ writeOut: (text) => io.writeOut(text) }).outputHelp();
    return 0;
  }
  const request = readRequest(subCommand, command, rest, io);
  if (!request.ok) {
    const lines = [`pgws sql ${subCommand}: nothing done`, ...request.errors.map((error) => `  - ${error}`), `Run pgws sql ${subCommand} --help for its options.`];
    io.writeErr(lines.join('\n') + '\n');
    return EXIT_CONFIG_ERROR;
  }
  if (request.dbUri === undefined) {
    io.writeOut(request.sql);
    return 0;
  }
  return apply(request, request.dbUri, io);
};

function suggest(name: string): string {
  const near = SUB_COMMAND_NAMES.find((candidate) => editDistance(name, candidate) <= 2);
  return near === undefined ? '' : ` (did you mean ${near}?)`;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1)));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

// ---------------------------------------------------------------------------------------
// The command line.

interface SqlRequest {
  readonly ok: true;
  readonly name: SubCommandName;
  readonly sql: string;
  /** The table of feed and unfeed. */
  readonly table: QualifiedName | undefined;
  readonly channel: string | undefined;
  readonly listenChannel: string;
  /** Set only with --apply. */
  readonly dbUri: string | undefined;
}

const SILENT = { writeOut: () => undefined, writeErr: () => undefined, outputError: () => undefined };

function readRequest(name: SubCommandName, command: Command, args: readonly string[], io: CommandIo): SqlRequest | { ok: false; errors: string[] } {
  const errors: string[] = [];
  const parsed = parseLine(command, args);
  errors.push(...parsed.errors);
  const option = (long: string): string | undefined => {
    const found = command.options.find((candidate) => candidate.long === long);
    const value: unknown = found === undefined ? undefined : command.getOptionValue(found.attributeName());
    return value === true ? 'true' : typeof value === 'string' ? value : undefined;
  };

  let table: QualifiedName | undefined;
  if (name === 'install') {
    if (parsed.operands.length > 0) errors.push(...describeLeftovers(parsed.operands, command, 'pgws sql install takes only options'));
  } else if (parsed.operands.length === 0) {
    errors.push(`<schema.table>: required, such as pgws sql ${name} public.todos`);
  } else {
    const [given, ...stray] = parsed.operands;
    const result = parseTableName(given ?? '');
    if (result.ok) table = result.value;
    else errors.push(`<schema.table>: ${result.error}, got ${JSON.stringify(given)}`);
    if (stray.length > 0) errors.push(...describeLeftovers(stray, command, `pgws sql ${name} takes one <schema.table>`));
  }

  const channel = option('--channel');
  if (channel === '') errors.push('--channel: must not be empty');
  let columns: string[] | undefined;
  const columnsText = option('--columns');
  if (columnsText !== undefined) {
    const result = parseColumnList(columnsText);
    if (result.ok) columns = result.value;
    else errors.push(`--columns: ${result.error}, got ${JSON.stringify(columnsText)}`);
  }

  const envFile = readEnvFile(option(longFlag({ flag: ENV_FILE_FLAG })), io.cwd);
  errors.push(...envFile.errors);
  const lookup = (row: { readonly env: string; readonly flag: string }): string | undefined =>
    option(longFlag(row)) ?? io.env[row.env] ?? envFile.values[row.env];
  const context = { cwd: io.cwd };

  const listenRaw = lookup(LISTEN_CHANNEL_ROW) ?? LISTEN_CHANNEL_ROW.default;
  const listen = LISTEN_CHANNEL_ROW.parse(listenRaw, context);
  if (name !== 'unfeed' && !listen.ok) errors.push(`${label(LISTEN_CHANNEL_ROW)}: ${listen.error}, got ${JSON.stringify(listenRaw)}`);
  const listenChannel = listen.ok ? listen.value : LISTEN_CHANNEL_ROW.default;

  let dbUri: string | undefined;
  const applying = option('--apply') === 'true';
  if (applying) {
    // A secret: its text is never repeated, only what is wrong with it.
    const uri = DB_URI_ROW.parse(lookup(DB_URI_ROW) ?? '', context);
    if (!uri.ok) errors.push(`${label(DB_URI_ROW)}: ${uri.error}`);
    else if (uri.value === undefined) errors.push(`${label(DB_URI_ROW)}: required with --apply: give a PostgreSQL URI such as postgres://user:pass@localhost:5432/db (or @/path/to/file)`);
    else dbUri = uri.value;
  } else if (option(longFlag(DB_URI_ROW)) !== undefined) {
    io.writeErr(`pgws sql ${name}: ${longFlag(DB_URI_ROW)} is read only with --apply: the SQL is printed, not run\n`);
  }

  if (errors.length > 0) return { ok: false, errors };
  const sql =
    name === 'install'
      ? installSql(listenChannel)
      : name === 'feed' && table !== undefined
        ? feedSql({ ...table, listenChannel, ...(channel === undefined ? {} : { channel }), ...(columns === undefined ? {} : { columns }) })
        : unfeedSql(table ?? { schema: '', table: '' });
  return { ok: true, name, sql, table, channel: table === undefined ? undefined : (channel ?? defaultFeedChannel(table)), listenChannel, dbUri };
}

/**
 * Operands and every problem of the line. commander's parseOptions stops at the first unknown
 * option; the rest of the line is parsed again after it, so a known flag after a typo still counts.
 */
function parseLine(command: Command, args: readonly string[]): { operands: string[]; errors: string[] } {
  command.exitOverride().configureOutput(SILENT);
  const operands: string[] = [];
  const errors: string[] = [];
  let remaining = [...args];
  while (remaining.length > 0) {
    let unknown: string[];
    try {
      const result = command.parseOptions(remaining);
      operands.push(...result.operands);
      unknown = result.unknown;
    } catch (err) {
      // Only a value-taking flag at the very end of the line gets here: the line without it
      // is read again, so its operands still count.
      if (!(err instanceof CommanderError)) throw err;
      errors.push(`${remaining.at(-1)?.split('=')[0] ?? 'an option'}: the flag needs a value`);
      remaining = remaining.slice(0, -1);
      continue;
    }
    const [flag, next, ...after] = unknown;
    if (flag === undefined) break;
    if (flag === '--') {
      operands.push(...unknown.slice(1));
      break;
    }
    errors.push(...describeLeftovers([flag], command));
    // As describeLeftovers reads it: the word after an unknown `--flag` is its value.
    remaining = !flag.includes('=') && next !== undefined && !next.startsWith('-') ? after : unknown.slice(1);
  }
  return { operands, errors };
}

function label(row: { readonly env: string; readonly flag: string }): string {
  return `${row.env} (${longFlag(row)})`;
}

// ---------------------------------------------------------------------------------------
// --apply.

async function apply(request: SqlRequest, uri: string, io: CommandIo): Promise<number> {
  const prefix = `pgws sql ${request.name}`;
  const where = maskUrlCredentials(uri);
  const scrub = passwordScrubber(uri);
  const own = (message: string): string => scrub(message.replace(/^pgws sql \w+: /, '').replace(/\s*\n\s*/g, ' '));
  const sql = postgres(uri, {
    // One connection: a pool refuses a script with BEGIN in it.
    max: 1,
    connect_timeout: 10,
    fetch_types: false,
    connection: { application_name: 'pgws-sql' },
    onnotice: (notice) => {
      // "already exists, skipping" is what idempotent SQL says on every run after the first.
      const message = notice.message ?? '';
      if (notice.severity === 'NOTICE' && / skipping$/.test(message)) return;
      io.writeErr(`${prefix}: ${String(notice.severity).toLowerCase()}: ${own(message)}\n`);
    },
  });
  try {
    const target = request.table === undefined ? undefined : qualified(request.table);
    const existed = await existedBefore(sql, request.name, target);
    await sql.unsafe(request.sql);
    io.writeErr(`${prefix} (${where}): ${await describeDone(sql, request, existed)}\n`);
    return 0;
  } catch (err) {
    io.writeErr(`${prefix}: not applied to ${where}: ${own(describeDbError(err))}\n`);
    return EXIT_APPLY_FAILED;
  } finally {
    await sql.end({ timeout: 5 }).catch(() => undefined);
  }
}

/** Whether the journal (install) or the table's feed (feed, unfeed) was there before. */
async function existedBefore(sql: postgres.Sql, name: SubCommandName, target: string | undefined): Promise<boolean> {
  const [row] =
    name === 'install'
      ? await sql<{ found: boolean }[]>`SELECT to_regclass('pgws.journal') IS NOT NULL AS found`
      : await sql<{ found: boolean }[]>`
          SELECT EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgrelid = to_regclass(${target ?? ''}) AND tgname = ${FEED_TRIGGER}) AS found`;
  return row?.found === true;
}

async function describeDone(sql: postgres.Sql, request: SqlRequest, existed: boolean): Promise<string> {
  const listen = sqlLiteral(request.listenChannel);
  const table = request.table === undefined ? '' : qualified(request.table);
  if (request.name === 'install') {
    return existed
      ? `the journal was there: functions replaced, rows kept; messages are NOTIFYed on the listen channel ${listen}`
      : `installed the journal: schema pgws, table pgws.journal, functions pgws.publish and pgws.send, NOTIFYing on the listen channel ${listen}`;
  }
  if (request.name === 'unfeed') return existed ? `removed the feed of ${table}` : `${table} had no feed: nothing to remove`;
  const [row] = await sql<{ journaled: boolean }[]>`SELECT to_regprocedure('pgws.publish(text)') IS NOT NULL AS journaled`;
  const via =
    row?.journaled === true
      ? 'through pgws.publish (the journal is installed)'
      : `through pg_notify on the listen channel ${listen} (no journal yet: once pgws sql install --apply has run, the feed uses it by itself)`;
  return `${existed ? 'replaced the feed of' : 'fed'} ${table}: each committed change goes to channel ${JSON.stringify(request.channel)} ${via}`;
}

/** Replaces the URI's password wherever it appears: postgres.js never puts it in an error, but a message is no place to find out. */
function passwordScrubber(uri: string): (text: string) => string {
  let password = '';
  try {
    password = new URL(uri).password;
  } catch {
    // A form WHATWG URL rejects (several hosts): nothing to look for.
  }
  const forms = [password, safeDecode(password)].filter((form) => form.length >= 4);
  return (text) => forms.reduce((out, form) => out.split(form).join('***'), text);
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
