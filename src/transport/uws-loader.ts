// Loads uWebSockets.js, and nothing else does. Two builds are tried in order:
//  1. `uWebSockets.js` (the standard name; here @btc-vision/uwebsockets.js 20.57.0,
//     or the official GitHub build a user swaps in). Needs glibc >= 2.38 on Linux.
//  2. @trufflesuite/uws-js-unofficial's Node-20 binary (glibc >= 2.27, no TLS).
//     Its binary is loaded directly: its src/uws.js silently falls back to a slow
//     JavaScript imitation, which would hide the problem.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type * as UwsModule from 'uWebSockets.js';

export type Uws = typeof UwsModule;

export interface LoadedUws {
  readonly uws: Uws;
  /** Which build loaded, for logs and --version. */
  readonly build: string;
  readonly version: string;
  readonly supportsTls: boolean;
}

const require = createRequire(import.meta.url);

/** Why no build loaded: the full explanation as message, one short clause as `summary` for a log line. */
export class UwsLoadError extends Error {
  constructor(
    message: string,
    readonly summary: string,
  ) {
    super(message);
    this.name = 'UwsLoadError';
  }
}

let cached: LoadedUws | UwsLoadError | undefined;

export function loadUws(): LoadedUws {
  const loaded = probeUws();
  if (loaded instanceof UwsLoadError) throw loaded;
  return loaded;
}

/** Like loadUws, but returns the failure instead of throwing, for callers that have a fallback. */
export function probeUws(): LoadedUws | UwsLoadError {
  cached ??= tryLoad();
  return cached;
}

function tryLoad(): LoadedUws | UwsLoadError {
  const failures: string[] = [];
  let needsGlibc: string | undefined;
  try {
    const uws = require('uWebSockets.js') as Uws;
    return { uws, build: 'uWebSockets.js', version: packageVersion('uWebSockets.js'), supportsTls: true };
  } catch (err) {
    failures.push(`uWebSockets.js: ${firstLine(err)}`);
    needsGlibc = /GLIBC_([0-9.]+)' not found/.exec(errorText(err))?.[1];
  }
  const binary = `@trufflesuite/uws-js-unofficial/binaries/uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  try {
    const uws = require(binary) as Uws;
    return {
      uws,
      build: '@trufflesuite/uws-js-unofficial (Node 20 build, no TLS)',
      version: packageVersion('@trufflesuite/uws-js-unofficial'),
      supportsTls: false,
    };
  } catch (err) {
    failures.push(`${binary}: ${firstLine(err)}`);
  }
  const glibc = glibcVersion();
  const summary =
    needsGlibc !== undefined
      ? `uWebSockets.js needs glibc ${needsGlibc}, this system has ${glibc ?? 'another C library'}`
      : `no uWebSockets.js build loads on Node ${process.version} (ABI ${process.versions.modules}, ${process.platform}-${process.arch})`;
  return new UwsLoadError(
    `cannot load uWebSockets.js on this system (Node ${process.version}, ABI ${process.versions.modules}, ` +
      `${process.platform}-${process.arch}, glibc ${glibc ?? 'n/a'}). ` +
      `uWebSockets.js 20.57 needs glibc >= 2.38 (Debian 13, Ubuntu 24.04 or later); ` +
      `the Node-20 fallback build needs Node 20 on Linux/macOS/Windows x64. ` +
      `Way out: run on such a system (or the official Docker image), use Node 20, or use the ws transport (PGWS_TRANSPORT=ws). ` +
      `Details: ${failures.join(' | ')}`,
    summary,
  );
}

export function glibcVersion(): string | undefined {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return report?.header?.glibcVersionRuntime;
}

/**
 * The version in a package's package.json. Read from beside the resolved entry point, not
 * with require('<name>/package.json'): uWebSockets.js 20.57's `exports` hides that path.
 */
function packageVersion(name: string): string {
  try {
    let dir = dirname(require.resolve(name));
    for (;;) {
      const manifest = join(dir, 'package.json');
      // The first manifest up from the entry point that has a version (a nested one may hold only "type").
      const version = existsSync(manifest) ? (JSON.parse(readFileSync(manifest, 'utf8')) as { version?: unknown }).version : undefined;
      if (typeof version === 'string') return version;
      if (dirname(dir) === dir) return 'unknown';
      dir = dirname(dir);
    }
  } catch {
    return 'unknown';
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function firstLine(err: unknown): string {
  const text = errorText(err);
  const glibc = /GLIBC_[0-9.]+' not found/.exec(text);
  return glibc ? glibc[0] : (text.split('\n').find((l) => l.trim() !== '') ?? text);
}
