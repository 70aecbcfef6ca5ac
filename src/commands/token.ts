// `pgws token`: prints a token signed with the configured HMAC secret, for development and
// scripts (PROTOCOL.md §13). It reads only PGWS_JWT_SECRET and PGWS_JWT_SECRET_BASE64, from
// the same places, in the same order and with the same parsers as the daemon (flag >
// environment > .env file; `@path` reads a file), and never touches the database.
// stdout gets the token and a newline, nothing else, so `TOKEN=$(pgws token ...)` works;
// every problem goes to stderr at once and exits 2, like a configuration error of the daemon.
// The secret is never printed.
import { Command, CommanderError, Option } from 'commander';
import { SignJWT } from 'jose';
import type { JWTPayload } from 'jose';
import { loadSigningKey } from '../auth/keys.js';
import type { HmacSigningKey } from '../auth/keys.js';
import { describeLeftovers, readEnvFile } from '../config.js';
import { DEFAULT_ENV_FILE, ENV_FILE_FLAG, OPTIONS, longFlag } from '../options.js';
import type { ParseResult } from '../options.js';
import type { Mode } from '../types.js';
import { EXIT_CONFIG_ERROR } from './command.js';
import type { CommandIo, RunCommand } from './command.js';

const MODES: readonly Mode[] = ['r', 'w', 'rw'];
const ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const;
const DEFAULT_EXP = '1h';
const SECONDS_PER_UNIT: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86_400 };
/** Claims that have a flag of their own: `--claim` may not set them behind its back. */
const CLAIMS_WITH_FLAGS: Readonly<Record<string, string>> = { mode: '--mode', channel: '--channel', channels: '--channel', exp: '--exp' };

/** The rows of the options table that `pgws token` reads. */
const SECRET_ROW = OPTIONS.jwtSecret;
const BASE64_ROW = OPTIONS.jwtSecretIsBase64;

const EXAMPLES = `
Examples:
  pgws token --mode rw --channel chat
  pgws token --mode r --channel news --channel alerts --exp 15m
  pgws token --mode rw --channel chat --claim role=web_user --claim 'tenant={"id":7}'
  TOKEN=$(pgws token --mode r --channel chat) && echo "ws://localhost:3000/chat/$TOKEN"

Claims: {"mode": ..., "channel": "<name>"} with one --channel, {"mode": ..., "channels": [...]}
with several, neither without one (such a token may open ANY channel by /<channel>/<jwt>),
then the --claim claims, "iat" (now) and "exp" (unless --exp never).

The token is signed with PGWS_JWT_SECRET, read as the server reads it: --jwt-secret, then the
environment, then the .env file; @/path/to/file reads it from a file. A plain or base64 secret,
an oct JWK (its "alg" and "kid" are used) or a JWK Set's first oct key (its "kid" goes in the
header) can sign; an RSA, EC or OKP key cannot: pgws holds only public keys.
No database is needed. The token alone is printed on stdout, followed by a newline.

Exit codes: 0 token printed; 2 a missing or invalid option, or a secret that cannot sign.`;

/** The commander program of `pgws token`, also what `pgws token --help` prints. */
export function createTokenCommand(): Command {
  const command = new Command('pgws token')
    .description('Print a JWT signed with the configured HMAC secret, for development and scripts.')
    .usage('--mode <r|w|rw> [--channel <name>]... [options]')
    .helpOption('-h, --help', 'print this help and exit')
    .addOption(new Option('--mode <mode>', 'the "mode" claim: r, w or rw (required)'))
    .addOption(
      new Option('--channel <name>', 'a channel the token allows; repeat for several (one: "channel" claim, several: "channels")').argParser(
        collect,
      ),
    )
    .addOption(new Option('--exp <duration>', `lifetime: 30s, 15m, 1h, 7d; never (or 0) for no "exp" claim (default: ${DEFAULT_EXP})`))
    .addOption(
      new Option('--claim <key=value>', 'an extra claim, e.g. role=web_user; the value is JSON when it parses as JSON, else a string; repeatable').argParser(
        collect,
      ),
    )
    .addOption(new Option('--alg <alg>', `${ALGORITHMS.join(', ')} (default: the JWK's "alg" when it has one, else HS256)`))
    .addOption(new Option(SECRET_ROW.flag, `${SECRET_ROW.doc} (env: ${SECRET_ROW.env})`))
    .addOption(new Option(BASE64_ROW.flag, `${BASE64_ROW.doc} (env: ${BASE64_ROW.env}; default: ${BASE64_ROW.default})`))
    .addOption(new Option(ENV_FILE_FLAG, `read variables from this file (default: ${DEFAULT_ENV_FILE} in the current folder, if present)`))
    .addHelpText('after', EXAMPLES);
  return command;
}

export const run: RunCommand = async (args, io) => {
  const command = createTokenCommand();
  // Help wins over anything else on the line, as for the daemon.
  if (args.some((arg) => arg === '-h' || arg === '--help')) {
    command.configureOutput({ writeOut: (text) => io.writeOut(text) }).outputHelp();
    return 0;
  }
  const made = await makeToken(command, args, io);
  if (!made.ok) {
    io.writeErr(['pgws token: no token made', ...made.errors.map((error) => `  - ${error}`), 'Run pgws token --help for its options.'].join('\n') + '\n');
    return EXIT_CONFIG_ERROR;
  }
  io.writeOut(`${made.token}\n`);
  return 0;
};

/** Reads everything, then signs; every problem is collected, so one run reports them all. */
async function makeToken(command: Command, args: readonly string[], io: CommandIo): Promise<{ ok: true; token: string } | { ok: false; errors: string[] }> {
  const request = readRequest(command, args, io);
  const errors = [...request.errors];
  const key = request.secret === undefined ? undefined : await signingKeyOf(request.secret);
  if (key?.ok === false) errors.push(key.error);
  const alg = key?.ok ? chooseAlgorithm(request.alg, key.value) : undefined;
  if (alg?.ok === false) errors.push(alg.error);
  if (errors.length > 0 || !key?.ok || !alg?.ok || request.claims === undefined) return { ok: false, errors };

  const { secret, kid } = key.value;
  const header = { alg: alg.value, typ: 'JWT', ...(kid === undefined ? {} : { kid }) };
  return { ok: true, token: await new SignJWT(request.claims).setProtectedHeader(header).sign(secret) };
}

// ---------------------------------------------------------------------------------------
// The command line and the secret's sources.

interface TokenRequest {
  /** Every claim, ready to sign; undefined when an option is wrong. */
  readonly claims: JWTPayload | undefined;
  readonly alg: string | undefined;
  readonly secret: { readonly value: string; readonly isBase64: boolean } | undefined;
  readonly errors: readonly string[];
}

const SILENT = { writeOut: () => undefined, writeErr: () => undefined, outputError: () => undefined };

function readRequest(command: Command, args: readonly string[], io: CommandIo): TokenRequest {
  const errors: string[] = [];
  /** A flag reported as missing its value: not reported again as missing. */
  let valueless: string | undefined;
  command.exitOverride().configureOutput(SILENT);
  try {
    // parseOptions, not parse: it hands back unknown options and stray words, so they join the list.
    const { operands, unknown } = command.parseOptions([...args]);
    errors.push(...describeLeftovers([...operands, ...unknown], command, 'pgws token takes only options'));
  } catch (err) {
    // Only a value-taking flag at the very end of the line gets here.
    if (!(err instanceof CommanderError)) throw err;
    valueless = args.at(-1)?.split('=')[0];
    errors.push(`${valueless ?? 'an option'}: the flag needs a value`);
  }
  const valueOf = (long: string): unknown => {
    const found = command.options.find((candidate) => candidate.long === long);
    return found === undefined ? undefined : command.getOptionValue(found.attributeName());
  };
  /** A flag's value as text (a switch reads "true"), as config.ts hands flags to the parsers. */
  const option = (long: string): string | undefined => {
    const value = valueOf(long);
    return value === true ? 'true' : typeof value === 'string' ? value : undefined;
  };
  const list = (long: string): string[] => {
    const value = valueOf(long);
    return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
  };

  const mode = parseMode(option('--mode'));
  const channels = parseChannels(list('--channel'));
  const lifetime = parseLifetime(option('--exp') ?? DEFAULT_EXP);
  const extra = parseExtraClaims(list('--claim'));
  const alg = option('--alg');
  const algError = alg === undefined || (ALGORITHMS as readonly string[]).includes(alg) ? [] : [`--alg: must be ${ALGORITHMS.join(', ')}, got ${JSON.stringify(alg)}`];
  const secret = readSecret(option, io, valueless === longFlag(SECRET_ROW));
  // `--mode` last on the line, without its value, is reported once, above.
  if (!mode.ok && valueless !== '--mode') errors.push(mode.error);
  for (const result of [channels, lifetime, extra]) if (!result.ok) errors.push(result.error);
  errors.push(...algError, ...secret.errors);

  const claims =
    mode.ok && channels.ok && lifetime.ok && extra.ok ? buildClaims(mode.value, channels.value, lifetime.value, extra.value) : undefined;
  // A refused --alg is reported once, here, not again against the key.
  return { claims, alg: algError.length === 0 ? alg : undefined, secret: secret.value, errors };
}

/**
 * PGWS_JWT_SECRET and PGWS_JWT_SECRET_BASE64 as the daemon resolves them: flag, environment,
 * .env file, default, each text parsed by the options table's own parser.
 */
function readSecret(
  option: (long: string) => string | undefined,
  io: CommandIo,
  alreadyReported: boolean,
): { value: { value: string; isBase64: boolean } | undefined; errors: string[] } {
  const envFile = readEnvFile(option(longFlag({ flag: ENV_FILE_FLAG })), io.cwd);
  const lookup = (row: { readonly env: string; readonly flag: string }): string | undefined =>
    option(longFlag(row)) ?? io.env[row.env] ?? envFile.values[row.env];
  const context = { cwd: io.cwd };
  const errors = [...envFile.errors];

  const isBase64 = BASE64_ROW.parse(lookup(BASE64_ROW) ?? BASE64_ROW.default, context);
  if (!isBase64.ok) errors.push(`${label(BASE64_ROW)}: ${isBase64.error}, got ${JSON.stringify(lookup(BASE64_ROW))}`);
  // A secret: its text is never repeated, only what is wrong with it.
  const secret = SECRET_ROW.parse(lookup(SECRET_ROW) ?? '', context);
  if (!secret.ok) errors.push(`${label(SECRET_ROW)}: ${secret.error}`);
  else if (secret.value === undefined && !alreadyReported) {
    errors.push(`${label(SECRET_ROW)}: required. pgws token signs with it: give the HMAC secret, an oct JWK or a JWK Set as JSON (or @/path/to/file)`);
  }
  if (!secret.ok || secret.value === undefined || !isBase64.ok) return { value: undefined, errors };
  return { value: { value: secret.value, isBase64: isBase64.value }, errors };
}

async function signingKeyOf(secret: { value: string; isBase64: boolean }): Promise<ParseResult<HmacSigningKey>> {
  try {
    return { ok: true, value: await loadSigningKey(secret.value, secret.isBase64) };
  } catch (error) {
    // keys.ts words its errors without the secret's value.
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

/** --alg if the key allows it, else the key's own alg, else HS256. */
function chooseAlgorithm(given: string | undefined, key: HmacSigningKey): ParseResult<string> {
  if (given === undefined) {
    const alg = key.algorithms.includes('HS256') ? 'HS256' : key.algorithms[0];
    return alg === undefined ? { ok: false, error: 'PGWS_JWT_SECRET: the key allows no HS algorithm' } : { ok: true, value: alg };
  }
  if (key.algorithms.includes(given)) return { ok: true, value: given };
  return { ok: false, error: `--alg: the key's JWK allows only ${key.algorithms.join(', ')}, so pgws would refuse a token signed with ${given}` };
}

function label(row: { readonly env: string; readonly flag: string }): string {
  return `${row.env} (${longFlag(row)})`;
}

// ---------------------------------------------------------------------------------------
// Claims.

function collect(value: string, previous: unknown): string[] {
  return [...(Array.isArray(previous) ? previous.filter((item): item is string => typeof item === 'string') : []), value];
}

function parseMode(raw: string | undefined): ParseResult<Mode> {
  if (raw === undefined) return { ok: false, error: '--mode: required: r, w or rw' };
  const mode = MODES.find((candidate) => candidate === raw);
  return mode === undefined ? { ok: false, error: `--mode: must be r, w or rw, got ${JSON.stringify(raw)}` } : { ok: true, value: mode };
}

function parseChannels(raw: readonly string[]): ParseResult<string[]> {
  if (raw.some((channel) => channel === '')) return { ok: false, error: '--channel: must not be empty' };
  return { ok: true, value: [...new Set(raw)] };
}

/**
 * `30s`, `15m`, `1h`, `7d` -> seconds; `never` or a zero -> undefined (no `exp` claim).
 * Exported for the tests.
 */
export function parseLifetime(raw: string): ParseResult<number | undefined> {
  const text = raw.trim().toLowerCase();
  if (text === 'never' || text === '0') return { ok: true, value: undefined };
  const match = /^(\d+)([smhd])$/.exec(text);
  const seconds = match === null ? Number.NaN : Number(match[1]) * (SECONDS_PER_UNIT[match[2] ?? ''] ?? Number.NaN);
  if (!Number.isSafeInteger(seconds)) {
    return { ok: false, error: `--exp: must be a duration such as 30s, 15m, 1h or 7d, or never, got ${JSON.stringify(raw)}` };
  }
  return { ok: true, value: seconds === 0 ? undefined : seconds };
}

/** `key=value`: the value is JSON when it parses as JSON (`7`, `true`, `["a"]`), else the text itself. */
function parseExtraClaims(raw: readonly string[]): ParseResult<Record<string, unknown>> {
  const claims: Record<string, unknown> = {};
  for (const pair of raw) {
    const equals = pair.indexOf('=');
    const key = equals < 0 ? '' : pair.slice(0, equals);
    if (key === '') return { ok: false, error: `--claim: expected key=value, such as role=web_user, got ${JSON.stringify(pair)}` };
    const flag = Object.hasOwn(CLAIMS_WITH_FLAGS, key) ? CLAIMS_WITH_FLAGS[key] : undefined;
    if (flag !== undefined) return { ok: false, error: `--claim: "${key}" is set with ${flag}` };
    // defineProperty, not assignment: a claim named __proto__ is a claim, not a prototype.
    Object.defineProperty(claims, key, { value: jsonOrText(pair.slice(equals + 1)), enumerable: true, writable: true, configurable: true });
  }
  return { ok: true, value: claims };
}

function jsonOrText(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

function buildClaims(mode: Mode, channels: readonly string[], lifetime: number | undefined, extra: Record<string, unknown>): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  const [only] = channels;
  const channelClaims = channels.length > 1 ? { channels: [...channels] } : only === undefined ? {} : { channel: only };
  return { mode, ...channelClaims, iat: now, ...extra, ...(lifetime === undefined ? {} : { exp: now + lifetime }) };
}
