// The real launcher in a child process: --version, --help and configuration errors (exit 2).
// Needs dist/ built (`npm test` builds first). Deadlines come from the vitest test timeout.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { OPTION_LIST } from '../src/options.js';
import { track } from './harness/leftovers.js';

const BIN = fileURLToPath(new URL('../bin/pgws.js', import.meta.url));
const PACKAGE = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** An empty working folder (no .env) removed after the file's tests. */
function emptyDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgws-cli-'));
  track(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs `node bin/pgws.js ...args` with no PGWS_ variables in its environment. */
function runPgws(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: emptyDir(),
      env: { PATH: process.env.PATH ?? '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Should the test time out, the child must not outlive it.
    track(() => child.kill('SIGKILL'));
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('pgws command line', () => {
  it('prints its version and the transport it would use with --version, and exits 0', async () => {
    const run = await runPgws(['--version']);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const [first, second, ...rest] = run.stdout.split('\n');
    expect(first).toBe(`pgws ${PACKAGE.version}`);
    expect(second).toMatch(/^transport: (uws|ws) \(.+ \d+\.\d+\.\d+.*\)/);
    expect(rest).toEqual(['']);
    expect(PACKAGE.version).toBe('0.1.0');
  });

  it('names the ws transport and its version with --transport ws --version', async () => {
    const run = await runPgws(['--transport', 'ws', '--version']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^transport: ws \(ws \d+\.\d+\.\d+ on node:http\)$/m);
  });

  it('lists every option with its variable and default in --help and exits 0', async () => {
    const run = await runPgws(['--help']);
    expect(run.code).toBe(0);
    for (const row of OPTION_LIST) {
      expect(run.stdout).toContain(row.env);
      expect(run.stdout).toContain(row.flag.split(' ')[0]);
    }
    expect(run.stdout).toContain('default: 3000');
    expect(run.stdout).toContain('--env-file');
  });

  it('prints help even beside other problems', async () => {
    const run = await runPgws(['--port', 'abc', '--no-such-flag', '-h']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('PGWS_PORT');
  });

  it('exits 2 listing every configuration problem, without the secret', async () => {
    const secret = 'cli-secret-that-must-not-appear-0123456789';
    const run = await runPgws(['--port', 'abc', '--jwt-secret', secret]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    const lines = run.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe('pgws: configuration error');
    expect(lines.slice(1, -1)).toEqual([
      '  - PGWS_PORT (--port): must be an integer from 0 to 65535, got "abc"',
      '  - PGWS_DB_URI (--db-uri): required. Give a PostgreSQL URI such as postgres://user:pass@localhost:5432/db (or @/path/to/file), or run with --embedded for a throwaway development database',
    ]);
    expect(lines.at(-1)).toBe('Run pgws --help for the list of options.');
    expect(run.stderr).not.toContain(secret);
  });

  it('exits 2 on an unknown option', async () => {
    const run = await runPgws(['--embedded', '--prot', '1234']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('unknown option --prot (did you mean --port?)');
  });
});
