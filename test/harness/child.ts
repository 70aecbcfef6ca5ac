// bin/pgws.js as a child process, as users and supervisors run it.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';
import { track } from './leftovers.js';

export const BIN = fileURLToPath(new URL('../../bin/pgws.js', import.meta.url));

export interface Child {
  readonly proc: ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  /** Resolves with the first stdout/stderr line matching, already seen or still to come. */
  waitForLine(predicate: (line: string) => boolean): Promise<string>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Environment without any PGWS_ variable of the developer's shell, in a temp cwd with no .env,
 * except PGWS_TRANSPORT: the child runs on the transport this vitest project tests.
 */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PGWS_')) env[k] = v;
  return { ...env, PGWS_TRANSPORT: inject('transport'), ...extra };
}

/**
 * `bin` runs another copy of the launcher (a clone elsewhere); `cwd` defaults to a fresh
 * temp folder, so no .env of the developer's is read.
 */
export function runPgws(
  args: string[],
  env: NodeJS.ProcessEnv = cleanEnv(),
  { bin = BIN, cwd = mkdtempSync(path.join(tmpdir(), 'pgws-cwd-')) }: { bin?: string; cwd?: string } = {},
): Child {
  const proc = spawn(process.execPath, [bin, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const waiters = new Set<{ predicate: (line: string) => boolean; resolve: (line: string) => void }>();
  const feed = (into: string[]) => {
    let partial = '';
    return (chunk: Buffer): void => {
      const parts = (partial + chunk.toString('utf8')).split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        into.push(line);
        for (const w of waiters) {
          if (w.predicate(line)) {
            waiters.delete(w);
            w.resolve(line);
          }
        }
      }
    };
  };
  proc.stdout?.on('data', feed(stdout));
  proc.stderr?.on('data', feed(stderr));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  track(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  return {
    proc,
    stdout,
    stderr,
    exited,
    waitForLine(predicate) {
      const seen = [...stdout, ...stderr].find(predicate);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.add({ predicate, resolve });
        void exited.then(({ code }) => reject(new Error(`pgws exited (${code}) before the expected line; stderr: ${stderr.join('\n')}`)));
      });
    },
  };
}

/** The JSON log line with this msg. */
export const logMsg = (msg: string) => (line: string): boolean => {
  if (!line.startsWith('{')) return false;
  try {
    return (JSON.parse(line) as { msg?: string }).msg === msg;
  } catch {
    return false;
  }
};

/** What a finished command printed, and its exit code. */
export interface Run {
  readonly code: number | null;
  /** Everything written to stdout, byte for byte. */
  readonly stdout: string;
  readonly stderr: string;
}

/** Reads a child's whole output: 'close' comes after the last byte of stdout and stderr. */
export async function collectRun(proc: ChildProcess): Promise<Run> {
  let stdout = '';
  let stderr = '';
  proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const [code] = (await once(proc, 'close')) as [number | null];
  return { code, stdout, stderr };
}
