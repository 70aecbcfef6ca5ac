// Static files from PGWS_ROOT_PATH (PROTOCOL.md section 5), independent of the HTTP engine:
// the server hands us the raw request path and writes whatever we answer.
//
// The one hard rule is "nothing outside the root, however the path is spelled or linked".
// It is enforced twice: lexically (decode, normalize, check the joined path is under the
// root) and physically (realpath the target, check it is still under the real root), so
// neither an encoded `..` nor a symlink can step out. Anything outside answers 404, the same
// as a missing file, so probing reveals nothing about the rest of the disk.
//
// Files are read whole into memory with readFile: fine for the small client folder this is
// meant for; streaming large files (and ranges, ETags) is out of scope.
import { constants as fsConstants, promises as fs, type Stats } from 'node:fs';
import path from 'node:path';
import { contentTypeFor } from './content-types.js';

export interface StaticResponse {
  status: number;
  headers: Record<string, string>;
  /** Empty for HEAD; Content-Length still gives the size a GET would send. */
  body: Buffer | string;
}

export type StaticHandler = (rawPath: string, method: 'GET' | 'HEAD') => Promise<StaticResponse>;

const INDEX_FILE = 'index.html';
const TEXT_PLAIN = 'text/plain; charset=utf-8';

/** Filesystem errors that mean "there is nothing servable here", i.e. 404 rather than 500. */
const NOT_FOUND_CODES = new Set([
  'ENOENT',
  'ENOTDIR',
  // Client-controlled: a very long path or a symlink loop is the client's problem, not ours.
  'ENAMETOOLONG',
  'ELOOP',
]);

/** Open flags for the final read. O_NOFOLLOW: the realpath we checked must not have been
 * swapped for a symlink since. O_NONBLOCK: never hang on a FIFO. Both are 0 where unsupported. */
const OPEN_FLAGS = fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0) | (fsConstants.O_NONBLOCK ?? 0);

/** Raised inside the handler for an answer that is not a file; carries its status. */
class HttpError extends Error {
  constructor(readonly status: 400 | 404) {
    super(status === 400 ? 'Bad request' : 'Not found');
  }
}

/**
 * Build a handler serving files under `root`. The root is resolved once, here: a missing
 * root or one that is not a directory is a configuration error, reported at startup.
 */
export async function createStaticHandler(root: string): Promise<StaticHandler> {
  const realRoot = await resolveRoot(root);
  return async (rawPath, method) => {
    const answer = await answerFor(realRoot, rawPath, method);
    // HEAD gets the same status and headers (Content-Length included), never a body.
    return method === 'HEAD' ? { ...answer, body: '' } : answer;
  };
}

async function resolveRoot(root: string): Promise<string> {
  let realRoot: string;
  let stats: Stats;
  try {
    realRoot = await fs.realpath(root);
    stats = await fs.stat(realRoot);
  } catch (err) {
    throw new Error(`Static root ${JSON.stringify(root)} cannot be used: ${errorCode(err) ?? String(err)}`);
  }
  if (!stats.isDirectory()) {
    throw new Error(`Static root ${JSON.stringify(root)} is not a directory`);
  }
  return realRoot;
}

async function answerFor(realRoot: string, rawPath: string, method: 'GET' | 'HEAD'): Promise<StaticResponse> {
  try {
    const urlPath = decodeRequestPath(rawPath);
    const file = await locateFile(realRoot, urlPath);
    const { size, body } = await readRegularFile(file.real, method === 'GET');
    return fileResponse(contentTypeFor(file.typeName), size, body);
  } catch (err) {
    if (err instanceof HttpError) return textResponse(err.status, err.message);
    if (NOT_FOUND_CODES.has(errorCode(err) ?? '')) return textResponse(404, 'Not found');
    // Deliberately vague: the exception text can hold absolute paths of the server.
    return textResponse(500, 'Internal error');
  }
}

/**
 * Raw request path -> decoded URL path. Rejects (400) malformed escapes, NUL bytes and
 * backslashes in either form: they have no business in a URL path and are classic ways to
 * confuse path handling (truncation, Windows separators).
 */
function decodeRequestPath(rawPath: string): string {
  // The server should already have removed these; strip again rather than trust it.
  const pathOnly = rawPath.replace(/[?#].*$/s, '');
  if (hasForbiddenChar(pathOnly)) throw new HttpError(400);
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathOnly);
  } catch {
    throw new HttpError(400); // URIError: "%zz", a lone "%", or invalid UTF-8
  }
  if (hasForbiddenChar(decoded)) throw new HttpError(400);
  return decoded;
}

function hasForbiddenChar(s: string): boolean {
  return s.includes('\0') || s.includes('\\');
}

/** A file to serve: where it really is, and the name its Content-Type is taken from. */
interface Located {
  /** Real path, checked to be inside the root. */
  readonly real: string;
  /** The name as requested (before symlinks), like other servers: the operator's link names it. */
  readonly typeName: string;
}

/**
 * Decoded URL path -> a regular file inside the root, or throw. Directories resolve to
 * their index.html (with or without a trailing slash; no redirect).
 */
async function locateFile(realRoot: string, urlPath: string): Promise<Located> {
  // Posix normalization keeps `..` that climbs above the start, so an escape stays visible
  // to the containment check instead of being silently clamped at "/".
  const requested = path.join(realRoot, path.posix.normalize(`./${urlPath}`));
  const target = await realpathInside(realRoot, requested);
  const stats = await fs.stat(target);
  if (stats.isDirectory()) {
    // index.html may itself be a symlink: resolve and check it like any other target.
    const index = await realpathInside(realRoot, path.join(target, INDEX_FILE));
    return requireRegularFile({ real: index, typeName: INDEX_FILE }, await fs.stat(index));
  }
  return requireRegularFile({ real: target, typeName: requested }, stats);
}

/** Real path of `candidate`, insisting that both the lexical and the real path are in the root. */
async function realpathInside(realRoot: string, candidate: string): Promise<string> {
  if (!isInside(realRoot, candidate)) throw new HttpError(404);
  const real = await fs.realpath(candidate);
  if (!isInside(realRoot, real)) throw new HttpError(404); // a symlink pointing out
  return real;
}

/**
 * Whether `candidate` is `root` or below it. path.relative, not startsWith: for root
 * "/srv/root", "/srv/root-evil/x" shares the prefix but is a sibling.
 */
function isInside(root: string, candidate: string): boolean {
  const rel = path.relative(root, candidate);
  if (rel === '') return true;
  // A file literally named "..x" is fine; only a leading ".." segment climbs out.
  const climbs = rel === '..' || rel.startsWith(`..${path.sep}`);
  return !climbs && !path.isAbsolute(rel); // absolute: another drive on Windows
}

function requireRegularFile(file: Located, stats: Stats): Located {
  // Sockets, FIFOs and devices are never served, even when they sit inside the root.
  if (!stats.isFile()) throw new HttpError(404);
  return file;
}

/**
 * Size and (for GET) contents of a file already checked to be a regular file inside the
 * root. HEAD only needs the size, so it never reads the contents.
 */
async function readRegularFile(file: string, withBody: boolean): Promise<{ size: number; body: Buffer | string }> {
  const handle = await fs.open(file, OPEN_FLAGS);
  try {
    // Re-check on the open descriptor: the path may have changed since locateFile looked.
    const stats = await handle.stat();
    if (!stats.isFile()) throw new HttpError(404);
    if (!withBody) return { size: stats.size, body: '' };
    const body = await handle.readFile();
    return { size: body.length, body };
  } finally {
    await handle.close();
  }
}

function fileResponse(contentType: string, size: number, body: Buffer | string): StaticResponse {
  return {
    status: 200,
    headers: {
      'Content-Type': contentType,
      'Content-Length': String(size),
      'X-Content-Type-Options': 'nosniff',
      // Revalidate every time: the folder is edited in place and has no versioned names.
      'Cache-Control': 'no-cache',
    },
    body,
  };
}

function textResponse(status: number, text: string): StaticResponse {
  return {
    status,
    headers: {
      'Content-Type': TEXT_PLAIN,
      'Content-Length': String(Buffer.byteLength(text)),
      'X-Content-Type-Options': 'nosniff',
      'Cache-Control': 'no-cache',
    },
    body: text,
  };
}

function errorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') {
    return err.code;
  }
  return undefined;
}
