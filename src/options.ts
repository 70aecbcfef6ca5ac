// The one table of pgws options (STYLE.md, "One options table"). Command-line flags,
// environment and .env reading, --help, sample.env and the README table all come from
// OPTIONS, so adding an option means adding one row here and nowhere else.
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { parseAllowedOrigins } from './auth/origins.js';
import type { Config, LogLevel, Mode, TransportChoice } from './types.js';

export type ParseResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

/** What a parser may need besides the text: relative paths are relative to `cwd`. */
export interface ParseContext {
  readonly cwd: string;
}

export interface OptionSpec<K extends keyof Config> {
  /** The Config field this option fills. */
  readonly key: K;
  /** Environment variable, also looked up in the .env file. */
  readonly env: `PGWS_${string}`;
  /** commander flag spec: `--port <port>` takes a value, `--embedded` is a switch. */
  readonly flag: string;
  /**
   * The value used when no source sets the option, written as an environment variable would
   * hold it. Only options whose Config field may be undefined can leave it unset.
   */
  readonly default: undefined extends Config[K] ? string | undefined : string;
  /**
   * Text -> value, or what is wrong with the text. The error never repeats the text: the
   * caller adds `got "..."` unless the option is secret. Options without a default read an
   * empty text as unset.
   */
  readonly parse: (raw: string, context: ParseContext) => ParseResult<Config[K]>;
  /** One line for --help, sample.env and the README. */
  readonly doc: string;
  /** A secret's value must never appear in errors, logs or describeConfig output. */
  readonly secret: boolean;
  /** Set on options required unless `--embedded`: how to fix the omission. */
  readonly required?: string;
  /** Another option that makes this required one unnecessary when set. */
  readonly unlessSet?: keyof Config;
  /** A sample value for sample.env when the option has no default. */
  readonly example?: string;
}

/** Any row of the table, each with its own value type. */
export type AnyOptionSpec = { [K in keyof Config]: OptionSpec<K> }[keyof Config];

export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** PostgreSQL truncates identifiers (channel names included) to NAMEDATALEN - 1 bytes. */
const MAX_IDENTIFIER_BYTES = 63;

// ---------------------------------------------------------------------------------------
// The table. Same variable names and defaults as postgres-websockets (PROTOCOL.md §7).

export const OPTIONS: { readonly [K in keyof Config]: OptionSpec<K> } = {
  dbUri: {
    key: 'dbUri',
    env: 'PGWS_DB_URI',
    flag: '--db-uri <uri>',
    default: undefined,
    parse: optional(fileOrText(postgresUri)),
    doc: 'PostgreSQL URI; @/path/to/file reads it from a file',
    secret: true,
    required:
      'Give a PostgreSQL URI such as postgres://user:pass@localhost:5432/db (or @/path/to/file), or run with --embedded for a throwaway development database',
    example: 'postgres://user:pass@localhost:5432/db',
  },
  jwtSecret: {
    key: 'jwtSecret',
    env: 'PGWS_JWT_SECRET',
    flag: '--jwt-secret <secret>',
    default: undefined,
    parse: optional(fileOrText(nonEmptySecret)),
    doc: 'JWT key: an HMAC secret, a JWK or a JWK Set as JSON; @/path/to/file reads it from a file (safer than a flag, which other users can see)',
    secret: true,
    required:
      'Give the HMAC secret, a JWK or a JWK Set as JSON (or @/path/to/file), or PGWS_JWKS_URL (--jwks-url) for keys from an identity provider, or run with --embedded to have a random secret generated',
    unlessSet: 'jwksUrl',
    example: 'change-me-to-a-long-random-secret',
  },
  jwtSecretIsBase64: {
    key: 'jwtSecretIsBase64',
    env: 'PGWS_JWT_SECRET_BASE64',
    flag: '--jwt-secret-base64',
    default: 'false',
    parse: boolean,
    doc: 'the JWT secret is base64-encoded (base64url characters accepted)',
    secret: false,
  },
  // Access (PROTOCOL.md §8).
  jwksUrl: {
    key: 'jwksUrl',
    env: 'PGWS_JWKS_URL',
    flag: '--jwks-url <url>',
    default: undefined,
    parse: optional(httpUrl),
    doc: "URL of an identity provider's JWK Set (https:// or http://): fetched at start (retried like the database), refetched every 10 minutes and when a token names an unknown kid (at most once per 30 s); a failed fetch keeps the keys it has. With PGWS_JWT_SECRET too, a token whose kid is in the set uses the set, any other the secret",
    secret: true,
    example: 'https://example.eu.auth0.com/.well-known/jwks.json',
  },
  jwtAudience: {
    key: 'jwtAudience',
    env: 'PGWS_JWT_AUDIENCE',
    flag: '--jwt-audience <list>',
    default: undefined,
    parse: optional(commaList('audience')),
    doc: 'comma-separated audiences: a token\'s aud (string or array) must contain one of them, else 401 "Token audience not allowed"; unset: aud is not checked',
    secret: false,
    example: 'authenticated',
  },
  jwtIssuer: {
    key: 'jwtIssuer',
    env: 'PGWS_JWT_ISSUER',
    flag: '--jwt-issuer <list>',
    default: undefined,
    parse: optional(commaList('issuer')),
    doc: 'comma-separated issuers: a token\'s iss must equal one of them, else 401 "Token issuer not allowed"; unset: iss is not checked',
    secret: false,
    example: 'https://example.eu.auth0.com/',
  },
  modeClaim: {
    key: 'modeClaim',
    env: 'PGWS_MODE_CLAIM',
    flag: '--mode-claim <path>',
    default: 'mode',
    parse: claimPath,
    doc: 'dotted path of the claim holding the mode ("r", "w" or "rw"), e.g. app_metadata.pgws.mode for tokens from identity providers; only that path is read',
    secret: false,
  },
  channelsClaim: {
    key: 'channelsClaim',
    env: 'PGWS_CHANNELS_CLAIM',
    flag: '--channels-claim <path>',
    default: 'channels',
    parse: claimPath,
    doc: 'dotted path of the claim holding the allowed channels (an array of strings); the channel claim keeps its meaning',
    secret: false,
  },
  defaultMode: {
    key: 'defaultMode',
    env: 'PGWS_DEFAULT_MODE',
    flag: '--default-mode <mode>',
    default: undefined,
    parse: optional(mode),
    doc: 'r, w or rw: the mode of tokens without a mode claim; unset: they are refused "Missing mode". A present but invalid mode is always refused',
    secret: false,
    example: 'r',
  },
  jwtCookie: {
    key: 'jwtCookie',
    env: 'PGWS_JWT_COOKIE',
    flag: '--jwt-cookie <name>',
    default: undefined,
    parse: optional(cookieName),
    doc: 'name of a cookie that may carry the token (e.g. an httpOnly session cookie); needs PGWS_ALLOWED_ORIGINS, since a browser sends cookies to sockets opened by any page; unset: cookies are never read',
    secret: false,
    example: 'access_token',
  },
  allowedOrigins: {
    key: 'allowedOrigins',
    env: 'PGWS_ALLOWED_ORIGINS',
    flag: '--allowed-origins <list>',
    default: undefined,
    parse: optional(origins),
    doc: 'comma-separated origins whose pages may open sockets: scheme://host[:port], a host may start with *. (any subdomain), * alone allows any; others get 403 "Origin not allowed"; requests without Origin (not browsers) are not checked; unset: any origin',
    secret: false,
    example: 'https://app.example.com,https://*.example.com',
  },
  host: {
    key: 'host',
    env: 'PGWS_HOST',
    flag: '--host <host>',
    default: '*4',
    parse: host,
    doc: 'listen address: *4 = all IPv4, *6 or * = all IPv6 and IPv4, else an address or host name',
    secret: false,
  },
  port: {
    key: 'port',
    env: 'PGWS_PORT',
    flag: '--port <port>',
    default: '3000',
    parse: integer(0, 65535),
    doc: 'listen port; 0 picks any free port',
    secret: false,
  },
  listenChannel: {
    key: 'listenChannel',
    env: 'PGWS_LISTEN_CHANNEL',
    flag: '--listen-channel <name>',
    default: 'postgres-websockets-listener',
    parse: channelIdentifier,
    doc: 'the one database channel pgws LISTENs and NOTIFYs on',
    secret: false,
  },
  metaChannel: {
    key: 'metaChannel',
    env: 'PGWS_META_CHANNEL',
    flag: '--meta-channel <name>',
    default: undefined,
    parse: optional(text),
    doc: 'channel that receives a ConnectionOpen/ConnectionClose event for every socket; unset = no events',
    secret: false,
    example: 'meta',
  },
  rootPath: {
    key: 'rootPath',
    env: 'PGWS_ROOT_PATH',
    flag: '--root-path <dir>',
    default: undefined,
    parse: optional(existingDirectory),
    doc: 'folder of static files served over HTTP on the same port',
    secret: false,
    example: './client-example',
  },
  poolSize: {
    key: 'poolSize',
    env: 'PGWS_POOL_SIZE',
    flag: '--pool-size <n>',
    default: '10',
    parse: integer(1),
    doc: 'database connections used for NOTIFY (the LISTEN connection is separate)',
    secret: false,
  },
  retries: {
    key: 'retries',
    env: 'PGWS_RETRIES',
    flag: '--retries <n>',
    default: '5',
    parse: integer(0),
    doc: 'start-up attempts to reach the database before exiting non-zero',
    secret: false,
  },
  checkListenerInterval: {
    key: 'checkListenerInterval',
    env: 'PGWS_CHECK_LISTENER_INTERVAL',
    flag: '--check-listener-interval <ms>',
    default: '0',
    parse: integer(0),
    doc: 'ms between checks of the LISTEN connection, which is re-opened when lost; 0 = off: a lost listener makes pgws exit non-zero',
    secret: false,
  },
  // Limits (issue 4). Each default says why in its doc line and in the README.
  maxMessageSize: {
    key: 'maxMessageSize',
    env: 'PGWS_MAX_MESSAGE_SIZE',
    flag: '--max-message-size <bytes>',
    default: '7999',
    parse: integer(1, 1024 * 1024),
    doc: 'largest frame a socket may send, in bytes; bigger closes it with 1009. Default 7999: a NOTIFY payload must be under 8000 bytes, so a bigger frame could never be delivered',
    secret: false,
  },
  maxBackpressure: {
    key: 'maxBackpressure',
    env: 'PGWS_MAX_BACKPRESSURE',
    flag: '--max-backpressure <bytes>',
    default: '1048576',
    parse: integer(1024),
    doc: 'bytes waiting to be written to one socket before it is closed with 1008 as a slow reader. Default 1 MiB: over 100 of the largest notifications, far more than a reader that keeps up ever holds; memory per socket stays bounded',
    secret: false,
  },
  maxConnections: {
    key: 'maxConnections',
    env: 'PGWS_MAX_CONNECTIONS',
    flag: '--max-connections <n>',
    default: '10000',
    parse: integer(0),
    doc: 'sockets open or opening at once; over it, new upgrades get 503 and open sockets are untouched; 0 = no limit. Default 10000: below common file-descriptor limits, so pgws refuses cleanly instead of failing to accept',
    secret: false,
  },
  handshakeTimeout: {
    key: 'handshakeTimeout',
    env: 'PGWS_HANDSHAKE_TIMEOUT',
    flag: '--handshake-timeout <ms>',
    default: '10000',
    parse: integer(1),
    doc: 'ms an upgrade may take to be decided (token checked, JWKS key found) before it is answered 503, so stuck upgrades cannot pile up. Default 10000, the same as the HTTP engine gives an incomplete request',
    secret: false,
  },
  maxMessagesPerSecond: {
    key: 'maxMessagesPerSecond',
    env: 'PGWS_MAX_MESSAGES_PER_SECOND',
    flag: '--max-messages-per-second <n>',
    default: '0',
    parse: integer(0),
    doc: 'frames per second one socket may send (bursts of one second allowed); over it, closed with 1008; 0 = no limit. Default off, as in postgres-websockets: what is abuse depends on the application',
    secret: false,
  },
  maxQueuedMessages: {
    key: 'maxQueuedMessages',
    env: 'PGWS_MAX_QUEUED_MESSAGES',
    flag: '--max-queued-messages <n>',
    default: '256',
    parse: integer(1),
    doc: 'frames one socket may have waiting for the database; at this many pgws stops reading from the socket (TCP then slows the client down) until half are sent. Where reading cannot stop (uws), frames are held meanwhile up to this many times PGWS_MAX_MESSAGE_SIZE characters, then 1013. Default 256: several batches of headroom for a fast writer',
    secret: false,
  },
  maxSubscriptions: {
    key: 'maxSubscriptions',
    env: 'PGWS_MAX_SUBSCRIPTIONS',
    flag: '--max-subscriptions <n>',
    default: '100',
    parse: integer(1),
    doc: 'subscriptions one pgws.v2 socket may hold at once; one more is answered with error too_many_subscriptions (the socket stays open). Default 100',
    secret: false,
  },
  journal: {
    key: 'journal',
    env: 'PGWS_JOURNAL',
    flag: '--journal <on|off>',
    default: 'off',
    parse: onOff,
    doc: 'on: socket frames and meta events go through pgws.publish into the journal table, and a v2 subscribe may ask for what it missed with since (PROTOCOL.md section 10). Needs `pgws sql install --apply` first',
    secret: false,
  },
  journalRetention: {
    key: 'journalRetention',
    env: 'PGWS_JOURNAL_RETENTION',
    flag: '--journal-retention <duration>',
    default: '24h',
    parse: duration,
    doc: 'how long journal rows are kept: a number and s, m, h or d (30s, 15m, 24h, 7d); pruned in the background by one pgws process at a time',
    secret: false,
  },
  rpcSchema: {
    key: 'rpcSchema',
    env: 'PGWS_RPC_SCHEMA',
    flag: '--rpc-schema <schema>',
    default: undefined,
    parse: optional(sqlIdentifier),
    doc: 'schema whose functions a v2 `call` may run, <schema>.<fn>(args jsonb), as PostgREST runs an RPC (PROTOCOL.md section 12); unset: every call is answered not_found',
    secret: false,
  },
  rpcDefaultRole: {
    key: 'rpcDefaultRole',
    env: 'PGWS_RPC_DEFAULT_ROLE',
    flag: '--rpc-default-role <role>',
    default: undefined,
    parse: optional(sqlIdentifier),
    doc: 'role a call runs as when the token has no `role` claim; unset: such calls are refused forbidden',
    secret: false,
  },
  rpcTimeout: {
    key: 'rpcTimeout',
    env: 'PGWS_RPC_TIMEOUT',
    flag: '--rpc-timeout <ms>',
    default: '5000',
    parse: integer(1),
    doc: 'statement_timeout of a call, in milliseconds; over it the call is answered db_error 57014',
    secret: false,
  },
  certificateFile: {
    key: 'certificateFile',
    env: 'PGWS_CERTIFICATE_FILE',
    flag: '--certificate-file <path>',
    default: undefined,
    parse: optional(readableFile),
    doc: 'TLS certificate (PEM) to serve wss://; needs PGWS_KEY_FILE too',
    secret: false,
    example: '/etc/pgws/cert.pem',
  },
  keyFile: {
    key: 'keyFile',
    env: 'PGWS_KEY_FILE',
    flag: '--key-file <path>',
    default: undefined,
    parse: optional(readableFile),
    doc: 'TLS private key (PEM) for PGWS_CERTIFICATE_FILE',
    secret: false,
    example: '/etc/pgws/key.pem',
  },
  // Operations (PROTOCOL.md §13).
  adminPort: {
    key: 'adminPort',
    env: 'PGWS_ADMIN_PORT',
    flag: '--admin-port <port>',
    default: undefined,
    parse: optional(integer(0, 65535)),
    doc: 'port for /health, /ready and /metrics (plain HTTP); unset: /health and /ready are served on the main port and /metrics is not served',
    secret: false,
    example: '9090',
  },
  adminHost: {
    key: 'adminHost',
    env: 'PGWS_ADMIN_HOST',
    flag: '--admin-host <host>',
    default: '127.0.0.1',
    parse: host,
    doc: 'listen address of PGWS_ADMIN_PORT (same forms as PGWS_HOST). Default 127.0.0.1: metrics stay private unless asked for; the Docker image sets 0.0.0.0',
    secret: false,
  },
  transport: {
    key: 'transport',
    env: 'PGWS_TRANSPORT',
    flag: '--transport <name>',
    default: 'auto',
    parse: transportChoice,
    doc: 'WebSocket engine: auto = uWebSockets.js when a build loads here and has what the config needs (TLS), else ws; uws or ws forces one',
    secret: false,
  },
  logLevel: {
    key: 'logLevel',
    env: 'PGWS_LOG_LEVEL',
    flag: '--log-level <level>',
    default: 'info',
    parse: logLevel,
    doc: `log level: ${LOG_LEVELS.join(', ')}`,
    secret: false,
  },
  embedded: {
    key: 'embedded',
    env: 'PGWS_EMBEDDED',
    flag: '--embedded',
    default: 'false',
    parse: boolean,
    doc: 'development only: with no PGWS_DB_URI, start a throwaway embedded PostgreSQL (and generate a JWT secret if none is set)',
    secret: false,
  },
};

/** The table as a list, in a stable order, for code that iterates it. */
export const OPTION_LIST: readonly AnyOptionSpec[] = Object.values(OPTIONS);

/** Not an option of the daemon but of loading: which .env file to read. */
export const ENV_FILE_FLAG = '--env-file <path>';
export const DEFAULT_ENV_FILE = '.env';

/** `--db-uri` from `--db-uri <uri>`. */
export function longFlag(row: { readonly flag: string }): string {
  return row.flag.split(' ')[0] ?? row.flag;
}

/** How --help and sample.env state what happens when the option is not set. */
export function describeDefault(row: AnyOptionSpec): string {
  if (row.required !== undefined) {
    return row.unlessSet === undefined ? 'required unless --embedded' : `required unless ${OPTIONS[row.unlessSet].env} is set or --embedded`;
  }
  return row.default === undefined ? 'default: unset' : `default: ${row.default}`;
}

// ---------------------------------------------------------------------------------------
// Renderings of the table.

/**
 * The commander program for pgws, one flag per row plus --env-file. No commander defaults
 * and no commander env lookups: precedence is decided in config.ts, so a value commander
 * holds always came from the command line.
 */
export function createCommand(): Command {
  const command = new Command('pgws')
    .description('PostgreSQL LISTEN/NOTIFY to WebSockets with JWT auth (a drop-in for postgres-websockets)')
    .usage('[options]');
  for (const row of OPTION_LIST) {
    command.addOption(new Option(row.flag, `${row.doc} (env: ${row.env}; ${describeDefault(row)})`));
  }
  command.addOption(
    new Option(ENV_FILE_FLAG, `read variables from this file (default: ${DEFAULT_ENV_FILE} in the current folder, if present)`),
  );
  command.addHelpText(
    'after',
    '\nEvery option can also be set by its environment variable or in the .env file.\n' +
      'A flag wins over the environment, which wins over the .env file, which wins over the default.\n' +
      'See sample.env for a commented example.',
  );
  return command;
}

/** The text of sample.env: every variable, commented out, with its default and doc. */
export function renderSampleEnv(): string {
  const header = [
    '# pgws configuration. Copy this file to .env and uncomment what you need.',
    '# A command-line flag wins over the environment, which wins over this file,',
    '# which wins over the default. `pgws --help` lists the same options.',
  ];
  const blocks = OPTION_LIST.map((row) => [
    '',
    `# ${row.doc}`,
    `# Flag ${longFlag(row)}; ${describeDefault(row)}.`,
    `#${row.env}=${row.default ?? row.example ?? ''}`,
  ]);
  return [...header, ...blocks.flat()].join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------
// Parsers. Each returns what is wrong without repeating the text it was given.

function ok<T>(value: T): ParseResult<T> {
  return { ok: true, value };
}

function fail(error: string): { readonly ok: false; readonly error: string } {
  return { ok: false, error };
}

/** Options without a default: an empty value means unset, as docker-compose often passes one. */
function optional<T>(parse: (raw: string, context: ParseContext) => ParseResult<T>) {
  return (raw: string, context: ParseContext): ParseResult<T | undefined> =>
    raw === '' ? ok(undefined) : parse(raw, context);
}

/** `@path` reads the value from a file (one trailing newline stripped), as postgres-websockets does. */
function fileOrText(parse: (value: string) => ParseResult<string>) {
  return (raw: string, context: ParseContext): ParseResult<string> => {
    if (!raw.startsWith('@')) return parse(raw);
    const path = resolve(context.cwd, raw.slice(1));
    let content: string;
    try {
      content = readFileSync(path, 'utf8');
    } catch (err) {
      return fail(`cannot read ${path}: ${describeFsError(err)}`);
    }
    const value = content.replace(/\r?\n$/, '');
    if (value === '') return fail(`${path} is empty`);
    const parsed = parse(value);
    return parsed.ok ? parsed : fail(`${parsed.error} (read from ${path})`);
  };
}

function postgresUri(value: string): ParseResult<string> {
  // Only the scheme is checked: postgres.js also takes forms WHATWG URL rejects
  // (several hosts, a Unix socket folder in ?host=).
  if (/^postgres(ql)?:\/\//i.test(value.trim())) return ok(value.trim());
  return fail('must start with postgres:// or postgresql:// (the value is not shown: it may hold a password)');
}

function nonEmptySecret(value: string): ParseResult<string> {
  return value.trim() === '' ? fail('must not be blank') : ok(value);
}

function httpUrl(raw: string): ParseResult<string> {
  const value = raw.trim();
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return fail('must be an https:// or http:// URL (the value is not shown: it may hold credentials)');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return fail('must be an https:// or http:// URL');
  return ok(value);
}

function commaList(what: string) {
  return (raw: string): ParseResult<readonly string[]> => {
    const entries = raw
      .split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry !== '');
    return entries.length === 0 ? fail(`expected one ${what} or more, comma-separated`) : ok(entries);
  };
}

function claimPath(raw: string): ParseResult<string> {
  const value = raw.trim();
  if (value === '' || value.split('.').some((name) => name === '')) {
    return fail('must be a claim name or a dotted path of names, such as app_metadata.pgws.mode');
  }
  return ok(value);
}

const MODES: readonly Mode[] = ['r', 'w', 'rw'];

function mode(raw: string): ParseResult<Mode> {
  const value = raw.trim();
  const found = MODES.find((candidate) => candidate === value);
  return found === undefined ? fail('must be r, w or rw') : ok(found);
}

/** RFC 6265 cookie names are HTTP tokens. */
function cookieName(raw: string): ParseResult<string> {
  const value = raw.trim();
  return /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(value) ? ok(value) : fail('must be a cookie name (letters, digits and !#$%&\'*+-.^_`|~)');
}

function origins(raw: string): ParseResult<readonly string[]> {
  const parsed = parseAllowedOrigins(raw);
  return parsed.ok ? ok(parsed.value) : fail(parsed.error);
}

function text(raw: string): ParseResult<string> {
  return ok(raw);
}

const TRUE_WORDS = ['true', '1', 'yes'];
const FALSE_WORDS = ['false', '0', 'no'];

function boolean(raw: string): ParseResult<boolean> {
  const word = raw.trim().toLowerCase();
  if (TRUE_WORDS.includes(word)) return ok(true);
  if (FALSE_WORDS.includes(word)) return ok(false);
  return fail('must be true or false (1/0 and yes/no work too)');
}

/** A PostgreSQL identifier as written unquoted or quoted: 1 to 63 bytes, no NUL. */
function sqlIdentifier(raw: string): ParseResult<string> {
  const name = raw.trim();
  if (name === '' || Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES || name.includes('\0')) {
    return fail(`must be a PostgreSQL name of 1 to ${MAX_IDENTIFIER_BYTES} bytes`);
  }
  return ok(name);
}

/** `on`/`off`, and every word `boolean` takes. */
function onOff(raw: string): ParseResult<boolean> {
  const word = raw.trim().toLowerCase();
  if (word === 'on') return ok(true);
  if (word === 'off') return ok(false);
  const parsed = boolean(word);
  return parsed.ok ? parsed : fail('must be on or off');
}

const DURATION_UNITS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `30s`, `15m`, `24h`, `7d` -> seconds (at least one). */
function duration(raw: string): ParseResult<number> {
  const match = /^(\d+)\s*([smhd])$/.exec(raw.trim().toLowerCase());
  const unit = match?.[2];
  const seconds = match && unit ? Number(match[1]) * (DURATION_UNITS[unit] ?? 0) : 0;
  if (!Number.isSafeInteger(seconds) || seconds < 1) return fail('must be a duration: a whole number and s, m, h or d (30s, 15m, 24h, 7d)');
  return ok(seconds);
}

function integer(min: number, max: number = Number.MAX_SAFE_INTEGER) {
  const expected =
    max === Number.MAX_SAFE_INTEGER ? `must be an integer of at least ${min}` : `must be an integer from ${min} to ${max}`;
  return (raw: string): ParseResult<number> => {
    const digits = raw.trim();
    if (!/^\d+$/.test(digits)) return fail(expected);
    const value = Number(digits);
    return value >= min && value <= max ? ok(value) : fail(expected);
  };
}

function host(raw: string): ParseResult<string> {
  const value = raw.trim();
  if (value === '' || /\s/.test(value)) return fail('must be *4, *6, *, an IP address or a host name');
  return ok(value);
}

function channelIdentifier(raw: string): ParseResult<string> {
  if (raw === '') return fail('must not be empty');
  const bytes = Buffer.byteLength(raw, 'utf8');
  if (bytes > MAX_IDENTIFIER_BYTES) {
    return fail(`must be at most ${MAX_IDENTIFIER_BYTES} bytes (a PostgreSQL identifier), this one has ${bytes}`);
  }
  return ok(raw);
}

function logLevel(raw: string): ParseResult<LogLevel> {
  const word = raw.trim().toLowerCase();
  const level = LOG_LEVELS.find((candidate) => candidate === word);
  return level === undefined ? fail(`must be one of ${LOG_LEVELS.join(', ')}`) : ok(level);
}

export const TRANSPORT_CHOICES: readonly TransportChoice[] = ['auto', 'uws', 'ws'];

function transportChoice(raw: string): ParseResult<TransportChoice> {
  const word = raw.trim().toLowerCase();
  const choice = TRANSPORT_CHOICES.find((candidate) => candidate === word);
  return choice === undefined ? fail(`must be one of ${TRANSPORT_CHOICES.join(', ')}`) : ok(choice);
}

/** Resolved to an absolute path so the daemon does not depend on the working folder. */
function existingDirectory(raw: string, context: ParseContext): ParseResult<string> {
  const path = resolve(context.cwd, raw);
  try {
    if (statSync(path).isDirectory()) return ok(path);
    return fail(`must be an existing directory; ${path} is not a directory`);
  } catch (err) {
    return fail(`must be an existing directory; ${path}: ${describeFsError(err)}`);
  }
}

function readableFile(raw: string, context: ParseContext): ParseResult<string> {
  const path = resolve(context.cwd, raw);
  try {
    if (!statSync(path).isFile()) return fail(`must be a readable file; ${path} is not a file`);
    accessSync(path, constants.R_OK);
    return ok(path);
  } catch (err) {
    return fail(`must be a readable file; ${path}: ${describeFsError(err)}`);
  }
}

/** A short reason for a failed file operation, without the stack of a Node error message. */
export function describeFsError(err: unknown): string {
  const code = err instanceof Error && 'code' in err ? err.code : undefined;
  switch (code) {
    case 'ENOENT':
      return 'no such file or directory';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    case 'ENOTDIR':
      return 'a part of the path is not a directory';
    default:
      return err instanceof Error ? err.message : String(err);
  }
}
