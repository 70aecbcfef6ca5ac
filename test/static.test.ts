// Static file handler against a real directory tree: the traversal table is the point.
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { contentTypeFor } from '../src/http/content-types.js';
import { createStaticHandler, type StaticHandler, type StaticResponse } from '../src/http/static.js';

const SECRET = 'TOP-SECRET-do-not-serve';
const EVIL = 'EVIL-sibling-do-not-serve';
const INDEX = '<!doctype html><title>root index</title>';
const SUB_INDEX = '<!doctype html><title>sub index</title>';
const CSS = 'body { color: red; }';
const JS = 'console.log("app");';

let tmp: string;
let root: string;
let rootName: string;
let serve: StaticHandler;

beforeAll(async () => {
  // realpath: on macOS the temp dir is itself behind a symlink (/var -> /private/var).
  tmp = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'pgws-static-')));
  root = path.join(tmp, 'www');
  rootName = path.basename(root);
  await fs.mkdir(path.join(root, 'sub'), { recursive: true });
  await fs.mkdir(path.join(root, 'noindex'));
  await fs.mkdir(path.join(root, 'leaky'));
  await fs.writeFile(path.join(root, 'index.html'), INDEX);
  await fs.writeFile(path.join(root, 'sub', 'index.html'), SUB_INDEX);
  await fs.writeFile(path.join(root, 'style.css'), CSS);
  await fs.writeFile(path.join(root, 'app.js'), JS);
  await fs.writeFile(path.join(root, 'data.bin'), Buffer.from([0, 1, 2, 3]));
  await fs.writeFile(path.join(root, '..dots.txt'), 'dots');
  // Outside the root: the secret in the temp parent, and a sibling sharing the root's prefix.
  await fs.writeFile(path.join(tmp, 'secret.txt'), SECRET);
  await fs.mkdir(path.join(tmp, `${rootName}-evil`));
  await fs.writeFile(path.join(tmp, `${rootName}-evil`, 'file.txt'), EVIL);
  // Symlinks: out of the root (file, directory, and a directory's index), and one inside.
  await fs.symlink(path.join(tmp, 'secret.txt'), path.join(root, 'link-out.txt'));
  await fs.symlink('../secret.txt', path.join(root, 'link-out-relative.txt'));
  await fs.symlink(tmp, path.join(root, 'dir-out'));
  await fs.symlink(path.join(tmp, 'secret.txt'), path.join(root, 'leaky', 'index.html'));
  await fs.symlink('style.css', path.join(root, 'link-in.txt'));
  await fs.symlink('sub', path.join(root, 'sub-link'));
  await fs.symlink('loop-b', path.join(root, 'loop-a'));
  await fs.symlink('loop-a', path.join(root, 'loop-b'));
  serve = await createStaticHandler(root);
});

afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

function bodyText(res: StaticResponse): string {
  return Buffer.isBuffer(res.body) ? res.body.toString('utf8') : res.body;
}

describe('traversal attempts', () => {
  // `<root>` stands for the root's basename, filled in once the tree exists.
  it.each([
    '/../secret.txt',
    '/%2e%2e/secret.txt',
    '/%2E%2E/secret.txt',
    '/..%2fsecret.txt',
    '/%2e%2e%2fsecret.txt',
    '/sub/../../secret.txt',
    '/sub/%2e%2e/%2e%2e/secret.txt',
    '/..\\secret.txt',
    '/..%5csecret.txt',
    '/%5c..%5csecret.txt',
    '/%5C..%5Csecret.txt',
    '//etc/passwd',
    '/%2fetc%2fpasswd',
    '/etc/passwd',
    '/index.html%00.png',
    '/index.html\u0000',
    '/link-out.txt',
    '/link-out-relative.txt',
    '/dir-out/secret.txt',
    '/leaky/',
    '/leaky',
    '/../<root>-evil/file.txt',
    '/%2e%2e/<root>-evil/file.txt',
    '/..%2f<root>-evil%2ffile.txt',
    '/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd',
  ])('%s is refused', async (template) => {
    const rawPath = template.replaceAll('<root>', rootName);
    for (const method of ['GET', 'HEAD'] as const) {
      const res = await serve(rawPath, method);
      expect([400, 404]).toContain(res.status);
      expect(res.headers['Content-Type']).toBe('text/plain; charset=utf-8');
      const text = bodyText(res);
      expect(text).not.toContain(SECRET);
      expect(text).not.toContain(EVIL);
      expect(text).not.toContain('root:');
      expect(text).not.toContain(tmp); // no server paths in error bodies
    }
  });

  it('answers 400 for NUL bytes and backslashes, 404 for outside paths', async () => {
    expect((await serve('/index.html%00.png', 'GET')).status).toBe(400);
    expect((await serve('/index.html\u0000', 'GET')).status).toBe(400);
    expect((await serve('/..\\secret.txt', 'GET')).status).toBe(400);
    expect((await serve('/..%5csecret.txt', 'GET')).status).toBe(400);
    expect((await serve('/../secret.txt', 'GET')).status).toBe(404);
    expect((await serve('/link-out.txt', 'GET')).status).toBe(404);
    expect((await serve(`/../${rootName}-evil/file.txt`, 'GET')).status).toBe(404);
  });
});

describe('serving files', () => {
  it('serves / as index.html with text/html and the standard headers', async () => {
    const res = await serve('/', 'GET');
    expect(res.status).toBe(200);
    expect(bodyText(res)).toBe(INDEX);
    expect(res.headers).toEqual({
      'Content-Type': 'text/html; charset=utf-8',
      'Content-Length': String(Buffer.byteLength(INDEX)),
      'X-Content-Type-Options': 'nosniff',
      'Cache-Control': 'no-cache',
    });
  });

  it.each(['/sub/', '/sub', '/sub/index.html', '/sub-link/', '/%73ub/'])('serves %s as sub/index.html', async (p) => {
    const res = await serve(p, 'GET');
    expect(res.status).toBe(200);
    expect(bodyText(res)).toBe(SUB_INDEX);
    expect(res.headers['Content-Type']).toBe('text/html; charset=utf-8');
  });

  it('serves CSS and JS with their types', async () => {
    const css = await serve('/style.css', 'GET');
    expect(css.status).toBe(200);
    expect(bodyText(css)).toBe(CSS);
    expect(css.headers['Content-Type']).toBe('text/css; charset=utf-8');

    const js = await serve('/app.js', 'GET');
    expect(js.status).toBe(200);
    expect(bodyText(js)).toBe(JS);
    expect(js.headers['Content-Type']).toMatch(/^(text|application)\/javascript; charset=utf-8$/);
  });

  it('follows a symlink that stays inside the root', async () => {
    const res = await serve('/link-in.txt', 'GET');
    expect(res.status).toBe(200);
    expect(bodyText(res)).toBe(CSS);
    // The type follows the requested name, not the link target.
    expect(res.headers['Content-Type']).toBe('text/plain; charset=utf-8');
  });

  it('serves binary files byte for byte as octet-stream', async () => {
    const res = await serve('/data.bin', 'GET');
    expect(res.status).toBe(200);
    expect(Buffer.isBuffer(res.body)).toBe(true);
    expect(res.body).toEqual(Buffer.from([0, 1, 2, 3]));
    expect(res.headers['Content-Type']).toBe('application/octet-stream');
  });

  it('allows names that merely start with two dots', async () => {
    const res = await serve('/..dots.txt', 'GET');
    expect(res.status).toBe(200);
    expect(bodyText(res)).toBe('dots');
  });

  it('ignores a query string or fragment left on the path', async () => {
    expect(bodyText(await serve('/style.css?v=1', 'GET'))).toBe(CSS);
    expect(bodyText(await serve('/style.css#x', 'GET'))).toBe(CSS);
    expect(bodyText(await serve('/../secret.txt?x', 'GET'))).not.toContain(SECRET);
  });

  it('HEAD gives the length and an empty body', async () => {
    const res = await serve('/style.css', 'HEAD');
    expect(res.status).toBe(200);
    expect(res.headers['Content-Length']).toBe(String(Buffer.byteLength(CSS)));
    expect(res.headers['Content-Type']).toBe('text/css; charset=utf-8');
    expect(res.body.length).toBe(0);

    const missing = await serve('/missing', 'HEAD');
    expect(missing.status).toBe(404);
    expect(missing.body.length).toBe(0);
  });
});

describe('errors', () => {
  it('answers 404 "Not found" for a missing file', async () => {
    const res = await serve('/missing', 'GET');
    expect(res.status).toBe(404);
    expect(bodyText(res)).toBe('Not found');
    expect(res.headers['Content-Type']).toBe('text/plain; charset=utf-8');
    expect(res.headers['Content-Length']).toBe('9');
  });

  it.each(['/noindex/', '/noindex', '/style.css/', '/style.css/x', '/loop-a'])('answers 404 for %s', async (p) => {
    expect((await serve(p, 'GET')).status).toBe(404);
  });

  it.each(['/%zz', '/%', '/a%2', '/%c3%28'])('answers 400 for the malformed escape %s', async (p) => {
    const res = await serve(p, 'GET');
    expect(res.status).toBe(400);
    expect(res.headers['Content-Type']).toBe('text/plain; charset=utf-8');
  });

  it('answers 404 for an over-long path rather than 500', async () => {
    expect((await serve(`/${'a'.repeat(5000)}`, 'GET')).status).toBe(404);
  });

  it('never serves a FIFO (and does not hang on one)', async (ctx) => {
    const fifo = path.join(root, 'pipe.txt');
    try {
      execFileSync('mkfifo', [fifo]);
    } catch {
      ctx.skip(); // no mkfifo on this platform
    }
    try {
      expect((await serve('/pipe.txt', 'GET')).status).toBe(404);
    } finally {
      await fs.rm(fifo, { force: true });
    }
  });

  it('answers 500 without details when a file cannot be read', async () => {
    // Simulated: permission bits cannot produce EACCES when the tests run as root.
    const failure = Object.assign(new Error(`EACCES: permission denied, open '${tmp}/x'`), { code: 'EACCES' });
    const spy = vi.spyOn(fs, 'open').mockRejectedValueOnce(failure);
    try {
      const res = await serve('/style.css', 'GET');
      expect(res.status).toBe(500);
      expect(bodyText(res)).toBe('Internal error');
      expect(res.headers['Content-Type']).toBe('text/plain; charset=utf-8');
    } finally {
      spy.mockRestore();
    }
    expect((await serve('/style.css', 'GET')).status).toBe(200);
  });
});

describe('createStaticHandler', () => {
  it('rejects a root that does not exist', async () => {
    await expect(createStaticHandler(path.join(tmp, 'nope'))).rejects.toThrow(/Static root .* cannot be used: ENOENT/);
  });

  it('rejects a root that is a file', async () => {
    await expect(createStaticHandler(path.join(root, 'style.css'))).rejects.toThrow(/is not a directory/);
  });

  it('accepts a root given through a symlink and still confines to it', async () => {
    const alias = path.join(tmp, 'www-alias');
    await fs.symlink(root, alias);
    const viaAlias = await createStaticHandler(alias);
    expect(bodyText(await viaAlias('/style.css', 'GET'))).toBe(CSS);
    expect(bodyText(await viaAlias('/link-in.txt', 'GET'))).toBe(CSS);
    expect((await viaAlias('/link-out.txt', 'GET')).status).toBe(404);
    expect((await viaAlias('/../secret.txt', 'GET')).status).toBe(404);
  });

  it('accepts a relative root', async () => {
    const relative = path.relative(process.cwd(), root);
    const viaRelative = await createStaticHandler(relative);
    expect(bodyText(await viaRelative('/', 'GET'))).toBe(INDEX);
  });
});

describe('contentTypeFor', () => {
  it.each([
    ['a.html', 'text/html; charset=utf-8'],
    ['a.CSS', 'text/css; charset=utf-8'],
    ['a.mjs', 'text/javascript; charset=utf-8'],
    ['a.json', 'application/json; charset=utf-8'],
    ['a.js.map', 'application/json; charset=utf-8'],
    ['a.svg', 'image/svg+xml; charset=utf-8'],
    ['a.png', 'image/png'],
    ['a.jpg', 'image/jpeg'],
    ['a.jpeg', 'image/jpeg'],
    ['a.gif', 'image/gif'],
    ['a.ico', 'image/x-icon'],
    ['a.webp', 'image/webp'],
    ['a.txt', 'text/plain; charset=utf-8'],
    ['a.wasm', 'application/wasm'],
    ['a.woff', 'font/woff'],
    ['a.woff2', 'font/woff2'],
    ['a.exe', 'application/octet-stream'],
    ['Makefile', 'application/octet-stream'],
    ['a.constructor', 'application/octet-stream'],
    ['a.__proto__', 'application/octet-stream'],
  ])('%s -> %s', (name, type) => {
    expect(contentTypeFor(name)).toBe(type);
  });
});
