// Command line + environment + .env file + defaults -> one validated, frozen Config.
// Precedence: flag > environment > .env file > default. Every problem is reported at once,
// each naming the variable and the flag, and no secret's value ever appears in one.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { CommanderError, type Command } from 'commander';
import dotenv from 'dotenv';
import {
  DEFAULT_ENV_FILE,
  ENV_FILE_FLAG,
  OPTION_LIST,
  OPTIONS,
  createCommand,
  describeFsError,
  longFlag,
  type AnyOptionSpec,
  type OptionSpec,
  type ParseContext,
  type ParseResult,
} from './options.js';
import type { Config } from './types.js';

export interface LoadConfigInput {
  /** As process.argv: the first two entries (node, script) are skipped. */
  readonly argv: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** Relative paths (the .env file, @files, folders) are resolved against this. */
  readonly cwd: string;
}

export type LoadConfigResult = { ok: true; config: Config } | { ok: false; errors: string[] };

export function loadConfig(input: LoadConfigInput): LoadConfigResult {
  const commandLine = readCommandLine(input.argv);
  const envFile = readEnvFile(commandLine.envFile, input.cwd);
  const lookup = (row: AnyOptionSpec): string | undefined =>
    commandLine.values.get(row.env) ?? input.env[row.env] ?? envFile.values[row.env] ?? row.default;

  const resolved = resolveOptions(lookup, { cwd: input.cwd }, commandLine.reported);
  const errors = [...commandLine.errors, ...envFile.errors, ...resolved.errors, ...crossCheck(resolved.draft)];
  if (errors.length > 0) return { ok: false, errors };
  // No errors means every row assigned its field, so the draft is a complete Config.
  return { ok: true, config: Object.freeze({ ...resolved.draft } as Config) };
}

/**
 * The configuration as it may be logged: every option, secrets hidden. The DB URI keeps its
 * shape with the password replaced by `***`; anything we cannot parse is hidden whole.
 */
export function describeConfig(config: Config): Record<string, string | number | boolean | null> {
  const described: Record<string, string | number | boolean | null> = {};
  for (const row of OPTION_LIST) {
    const value = config[row.key];
    if (value === undefined) described[row.key] = null;
    else if (row.key === 'dbUri' && typeof value === 'string') described[row.key] = maskDbUri(value);
    else if (row.key === 'jwksUrl' && typeof value === 'string') described[row.key] = maskUrlCredentials(value);
    else if (row.secret) described[row.key] = REDACTED;
    else described[row.key] = Array.isArray(value) ? value.join(',') : (value as string | number | boolean);
  }
  return described;
}

const REDACTED = '[redacted]';

/** A URL without what may be a credential: user, password and query string. */
export function maskUrlCredentials(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return REDACTED;
  }
  if (url.username !== '') url.username = '***';
  if (url.password !== '') url.password = '***';
  if (url.search !== '') url.search = '?***';
  return url.toString();
}

function maskDbUri(uri: string): string {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return REDACTED;
  }
  if (url.password !== '') url.password = '***';
  for (const name of [...url.searchParams.keys()]) {
    if (/password/i.test(name)) url.searchParams.set(name, '***');
  }
  return url.toString();
}

// ---------------------------------------------------------------------------------------
// Sources.

interface CommandLine {
  /** Values given as flags, by environment variable name, as text (switches read "true"). */
  readonly values: ReadonlyMap<string, string>;
  readonly envFile: string | undefined;
  readonly errors: readonly string[];
  /** Options already reported (a flag without its value): not validated again. */
  readonly reported: ReadonlySet<keyof Config>;
}

const SILENT = { writeOut: () => undefined, writeErr: () => undefined, outputError: () => undefined };

function readCommandLine(argv: readonly string[]): CommandLine {
  const command = createCommand().exitOverride().configureOutput(SILENT);
  const args = argv.slice(2);
  const errors: string[] = [];
  const reported = new Set<keyof Config>();
  try {
    // parseOptions, not parse: it returns unknown options and stray arguments instead of
    // stopping at the first, so they join the one list of errors.
    const { operands, unknown } = command.parseOptions(args);
    errors.push(...describeLeftovers([...operands, ...unknown], command));
  } catch (err) {
    // Only a value-taking flag at the very end of the line gets here.
    if (!(err instanceof CommanderError)) throw err;
    const row = OPTION_LIST.find((candidate) => longFlag(candidate) === args.at(-1));
    if (row !== undefined) reported.add(row.key);
    errors.push(row === undefined ? describeMissingValue(err, args) : `${label(row)}: the flag needs a value`);
  }
  const values = new Map<string, string>();
  for (const row of OPTION_LIST) {
    const value = flagValue(command, longFlag(row));
    if (value !== undefined) values.set(row.env, value);
  }
  return { values, envFile: flagValue(command, longFlag({ flag: ENV_FILE_FLAG })), errors, reported };
}

function flagValue(command: Command, long: string): string | undefined {
  const option = command.options.find((candidate) => candidate.long === long);
  if (option === undefined) return undefined;
  const value: unknown = command.getOptionValue(option.attributeName());
  if (value === true) return 'true';
  return typeof value === 'string' ? value : undefined;
}

/**
 * Unknown options are named without any `=value` part, and the word after one is taken as
 * its value and not reported. Stray words are counted, never quoted: an unquoted secret with
 * spaces in it ends up here.
 */
export function describeLeftovers(
  leftovers: readonly string[],
  command: Command,
  takesOnly = 'pgws takes only options such as --port 3000',
): string[] {
  const errors: string[] = [];
  let stray = 0;
  let afterUnknownOption = false;
  for (const arg of leftovers) {
    if (arg === '--') continue;
    if (arg.length > 1 && arg.startsWith('-')) {
      errors.push(describeUnknownOption(arg.split('=')[0] ?? arg, command));
      afterUnknownOption = !arg.includes('=');
    } else if (afterUnknownOption) {
      afterUnknownOption = false;
    } else {
      stray += 1;
    }
  }
  if (stray > 0) {
    errors.push(
      `unexpected argument${stray === 1 ? '' : 's'} (${stray}, not shown): ${takesOnly}; quote values that contain spaces`,
    );
  }
  return errors;
}

function describeUnknownOption(flag: string, command: Command): string {
  const known = command.options.flatMap((option) => (option.long === undefined ? [] : [option.long]));
  const suggestion = closest(flag, [...known, '--help', '--version']);
  return `unknown option ${flag}${suggestion === undefined ? '' : ` (did you mean ${suggestion}?)`}`;
}

function describeMissingValue(err: CommanderError, args: readonly string[]): string {
  const last = args.at(-1);
  return last?.startsWith('--') ? `${last}: the flag needs a value` : err.message.replace(/^error: /, '');
}

export interface EnvFile {
  readonly values: Readonly<Record<string, string>>;
  readonly errors: readonly string[];
}

/** A missing default .env is normal; a missing file the user named is a mistake. */
export function readEnvFile(given: string | undefined, cwd: string): EnvFile {
  const path = resolve(cwd, given ?? DEFAULT_ENV_FILE);
  let content: Buffer;
  try {
    content = readFileSync(path);
  } catch (err) {
    const missing = err instanceof Error && 'code' in err && err.code === 'ENOENT';
    if (given === undefined && missing) return { values: {}, errors: [] };
    return { values: {}, errors: [`--env-file: cannot read ${path}: ${describeFsError(err)}`] };
  }
  // dotenv.parse, not dotenv.config: the process environment is never modified.
  return { values: dotenv.parse(content), errors: [] };
}

// ---------------------------------------------------------------------------------------
// Validation.

type Draft = { -readonly [K in keyof Config]?: Config[K] };

function resolveOptions(
  lookup: (row: AnyOptionSpec) => string | undefined,
  context: ParseContext,
  skip: ReadonlySet<keyof Config>,
): { draft: Draft; errors: string[] } {
  const draft: Draft = {};
  const errors: string[] = [];
  for (const row of OPTION_LIST) {
    if (skip.has(row.key)) continue;
    const error = resolveOption(row.key, lookup(row) ?? '', context, draft);
    if (error !== undefined) errors.push(error);
  }
  return { draft, errors };
}

/** Parses one option into the draft; returns the error line if it is invalid. */
function resolveOption<K extends keyof Config>(
  key: K,
  raw: string,
  context: ParseContext,
  draft: Draft,
): string | undefined {
  // Looked up by key, not passed in, so TypeScript ties the row's value type to K.
  const row: OptionSpec<K> = OPTIONS[key];
  const result: ParseResult<Config[K]> = row.parse(raw, context);
  if (result.ok) {
    draft[row.key] = result.value;
    return undefined;
  }
  return `${label(row)}: ${result.error}${row.secret ? '' : `, got ${JSON.stringify(raw)}`}`;
}

/** Rules across options. An option that failed to parse is absent and checked no further. */
function crossCheck(draft: Draft): string[] {
  const errors: string[] = [];
  if (draft.embedded === false) {
    for (const row of OPTION_LIST) {
      const replaced = row.unlessSet !== undefined && draft[row.unlessSet] !== undefined;
      if (row.required !== undefined && !replaced && row.key in draft && draft[row.key] === undefined) {
        errors.push(`${label(row)}: required. ${row.required}`);
      }
    }
  }
  errors.push(...checkPair(draft, OPTIONS.certificateFile, OPTIONS.keyFile));
  errors.push(...checkPair(draft, OPTIONS.keyFile, OPTIONS.certificateFile));
  if (draft.jwtCookie !== undefined && 'allowedOrigins' in draft && draft.allowedOrigins === undefined) {
    errors.push(
      `${label(OPTIONS.jwtCookie)}: needs ${label(OPTIONS.allowedOrigins)}: a browser sends the cookie with a socket opened by any page, so only the origin check stops other sites from using it (cross-site WebSocket hijacking)`,
    );
  }
  if (draft.adminPort !== undefined && draft.adminPort !== 0 && draft.adminPort === draft.port) {
    errors.push(`${label(OPTIONS.adminPort)}: must differ from ${label(OPTIONS.port)} (${draft.port}): the admin endpoints need a port of their own`);
  }
  return errors;
}

/** TLS needs the certificate and its key together. */
function checkPair(draft: Draft, given: AnyOptionSpec, needed: AnyOptionSpec): string[] {
  const isGiven = draft[given.key] !== undefined;
  const isMissing = needed.key in draft && draft[needed.key] === undefined;
  if (!isGiven || !isMissing) return [];
  return [`${label(needed)}: required when ${label(given)} is set, since serving wss:// needs both`];
}

function label(row: { readonly env: string; readonly flag: string }): string {
  return `${row.env} (${longFlag(row)})`;
}

/** The nearest known flag, if it is close enough to be a likely typo. */
function closest(flag: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.min(3, Math.floor(flag.length / 3));
  for (const candidate of candidates) {
    const distance = editDistance(flag, candidate);
    if (distance <= bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
