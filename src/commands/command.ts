// What every sub-command of pgws (`pgws token`, later `pgws sql ...`) is given and returns.
// cli.ts finds the command by its name, the first argument, and hands it the rest.

/** Exit code for a configuration or command line pgws refuses: the same for the daemon and every sub-command. */
export const EXIT_CONFIG_ERROR = 2;

export interface CommandIo {
  /** The process environment (PGWS_ variables are read from it). */
  readonly env: NodeJS.ProcessEnv;
  /** Relative paths (the .env file, @files) are resolved against this. */
  readonly cwd: string;
  /** The command's result, alone, so `X=$(pgws ...)` captures exactly it. */
  writeOut(text: string): void;
  /** Errors and notes. */
  writeErr(text: string): void;
}

/** Runs a sub-command with the arguments after its name; resolves to the exit code. */
export type RunCommand = (args: readonly string[], io: CommandIo) => Promise<number>;

export interface CommandModule {
  readonly run: RunCommand;
}
