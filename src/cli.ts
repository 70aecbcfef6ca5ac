// The command line: a sub-command named by the first argument (`pgws token ...`), else
// --help, --version, configuration errors (exit 2), then the daemon. Nothing else lives
// here; options are defined in options.ts and validated in config.ts, and each sub-command
// lives in its own module under commands/.
import { CommanderError } from 'commander';
import { EXIT_CONFIG_ERROR } from './commands/command.js';
import type { CommandModule } from './commands/command.js';
import { loadConfig } from './config.js';
import { createCommand, TRANSPORT_CHOICES } from './options.js';
import { VERSION } from './version.js';

interface SubCommand {
  /** One line for `pgws --help`. */
  readonly summary: string;
  /** Imported only when the command runs, so the daemon never loads it. */
  load(): Promise<CommandModule>;
}

/** The sub-commands, by the name given as the first argument. Adding one is adding a row. */
const SUB_COMMANDS: Readonly<Record<string, SubCommand>> = {
  token: {
    summary: 'print a JWT signed with PGWS_JWT_SECRET, for development and scripts (no database needed)',
    load: () => import('./commands/token.js'),
  },
  sql: {
    summary: 'print (or run, with --apply) the SQL of the journal (install) and of table feeds (feed, unfeed)',
    load: () => import('./commands/sql.js'),
  },
};

export async function main(argv: string[]): Promise<void> {
  // `pgws --help | head` closes the pipe early: that is not an error worth a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  const name = argv[2];
  const subCommand = name !== undefined && Object.hasOwn(SUB_COMMANDS, name) ? SUB_COMMANDS[name] : undefined;
  if (subCommand !== undefined) {
    const { run } = await subCommand.load();
    process.exitCode = await run(argv.slice(3), {
      env: process.env,
      cwd: process.cwd(),
      writeOut: (text) => process.stdout.write(text),
      writeErr: (text) => process.stderr.write(text),
    });
    return;
  }
  if (answeredHelpOrVersion(argv, await versionText(argv))) return;

  const loaded = loadConfig({ argv, env: process.env, cwd: process.cwd() });
  if (!loaded.ok) {
    reportConfigErrors(loaded.errors);
    process.exitCode = EXIT_CONFIG_ERROR;
    return;
  }
  // Imported late so --help, --version and configuration errors never load the native
  // WebSocket addon or the database driver.
  const { runDaemon } = await import('./daemon.js');
  await runDaemon(loaded.config);
}

/**
 * Prints help or the version when asked, whatever else is on the line. Other commander
 * complaints are silenced here: loadConfig reports them with the rest.
 */
function answeredHelpOrVersion(argv: string[], version: string): boolean {
  const command = createCommand()
    .version(version, '-V, --version', 'print the version and exit')
    .helpOption('-h, --help', 'print this help and exit')
    .addHelpText('after', describeSubCommands())
    .exitOverride()
    .configureOutput({ writeErr: () => undefined, outputError: () => undefined });
  try {
    command.parse(argv);
    return false;
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    return err.code === 'commander.helpDisplayed' || err.code === 'commander.version';
  }
}

function describeSubCommands(): string {
  const names = Object.keys(SUB_COMMANDS);
  const width = Math.max(...names.map((name) => name.length));
  const lines = Object.entries(SUB_COMMANDS).map(([name, command]) => `  pgws ${name.padEnd(width)}  ${command.summary}`);
  return ['', 'Commands (pgws <command> --help for each):', ...lines].join('\n');
}

/**
 * `pgws 0.1.0` and, when the version is asked for, a second line naming the transport the
 * given --transport / PGWS_TRANSPORT (and TLS flags) get on this system. Only then is the
 * native addon probed, so --help and configuration errors stay free of it.
 */
async function versionText(argv: readonly string[]): Promise<string> {
  const head = `pgws ${VERSION}`;
  if (!argv.slice(2).some((arg) => arg === '-V' || arg === '--version')) return head;
  const given = (flag: string, env: string): string | undefined => {
    const index = argv.indexOf(flag);
    const inline = argv.find((arg) => arg.startsWith(`${flag}=`));
    return (index >= 0 ? argv[index + 1] : inline?.slice(flag.length + 1)) ?? process.env[env];
  };
  const choice = TRANSPORT_CHOICES.find((candidate) => candidate === given('--transport', 'PGWS_TRANSPORT')?.toLowerCase()) ?? 'auto';
  const tls = (given('--certificate-file', 'PGWS_CERTIFICATE_FILE') ?? '') !== '';
  const { describeTransport } = await import('./transport/select.js');
  return `${head}\n${describeTransport(choice, tls)}`;
}

function reportConfigErrors(errors: readonly string[]): void {
  const lines = ['pgws: configuration error', ...errors.map((error) => `  - ${error}`), 'Run pgws --help for the list of options.'];
  process.stderr.write(lines.join('\n') + '\n');
}
