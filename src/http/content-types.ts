// Content types for the static file handler. A small fixed table is enough for a
// client page and its assets; anything unknown is sent as opaque bytes so that,
// together with `X-Content-Type-Options: nosniff`, a browser never guesses a type
// (and never runs an unexpected file as script or HTML).
import path from 'node:path';

export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

const UTF8 = '; charset=utf-8';

/** Lower-case extension (with the dot) -> Content-Type. Text types carry their charset. */
export const CONTENT_TYPES: Readonly<Record<string, string>> = Object.freeze({
  '.html': `text/html${UTF8}`,
  '.htm': `text/html${UTF8}`,
  '.css': `text/css${UTF8}`,
  '.js': `text/javascript${UTF8}`,
  '.mjs': `text/javascript${UTF8}`,
  '.json': `application/json${UTF8}`,
  '.map': `application/json${UTF8}`,
  '.txt': `text/plain${UTF8}`,
  '.svg': `image/svg+xml${UTF8}`,
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.ico': 'image/x-icon',
  '.webp': 'image/webp',
  '.wasm': 'application/wasm',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
});

/** Content-Type for a file name, by its extension (case-insensitive). */
export function contentTypeFor(fileName: string): string {
  const ext = path.extname(fileName).toLowerCase();
  // hasOwn, not `in`: an extension like ".constructor" must not hit Object.prototype.
  const known = Object.hasOwn(CONTENT_TYPES, ext) ? CONTENT_TYPES[ext] : undefined;
  return known ?? DEFAULT_CONTENT_TYPE;
}
