// Which engine serves sockets (PGWS_TRANSPORT): the one place that decides, so the
// daemon, the server and --version always agree.
//   auto  uws when a uWebSockets.js build loads and has what the config needs (TLS), else ws
//   uws   uWebSockets.js or nothing: a build that cannot serve this config is an error
//   ws    the ws package on node:http / node:https
import type { TransportChoice } from '../types.js';
import type { Transport, TransportHandlers, TransportOptions, TlsFiles } from './types.js';
import { createUwsTransport } from './uws.js';
import { probeUws, UwsLoadError, type LoadedUws } from './uws-loader.js';
import { createWsTransport, wsVersion } from './ws.js';

export type Engine = 'uws' | 'ws';

export type TransportPlan =
  | {
      readonly ok: true;
      readonly engine: Engine;
      /** Set when auto did not get uws: one line for the log saying why. */
      readonly fallback?: string;
    }
  | { readonly ok: false; readonly error: string };

/** A transport that was asked for by name cannot run here (the daemon exits 2). */
export class TransportUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TransportUnavailableError';
  }
}

/** `probe` is injectable so tests can play a system where uWebSockets.js does not load. */
export function planTransport(
  choice: TransportChoice,
  needsTls: boolean,
  probe: () => LoadedUws | UwsLoadError = probeUws,
): TransportPlan {
  if (choice === 'ws') return { ok: true, engine: 'ws' };
  const loaded = probe();
  if (loaded instanceof UwsLoadError) {
    if (choice === 'uws') return { ok: false, error: `PGWS_TRANSPORT=uws, but ${loaded.message}` };
    return { ok: true, engine: 'ws', fallback: `${loaded.summary}: using ws` };
  }
  if (needsTls && !loaded.supportsTls) {
    const why = `the uWebSockets.js build that loads here, ${loaded.build}, has no TLS`;
    if (choice === 'uws') {
      return {
        ok: false,
        error:
          `PGWS_TRANSPORT=uws with TLS (PGWS_CERTIFICATE_FILE, PGWS_KEY_FILE), but ${why}. ` +
          'Use PGWS_TRANSPORT=auto or ws to serve wss:// with ws, run where uWebSockets.js 20.57 loads (glibc >= 2.38), ' +
          'or terminate TLS in a proxy in front of pgws.',
      };
    }
    return { ok: true, engine: 'ws', fallback: `${why}: using ws for wss://` };
  }
  return { ok: true, engine: 'uws' };
}

export function createTransport<S>(
  engine: Engine,
  options: TransportOptions,
  handlers: TransportHandlers<S>,
  tls?: TlsFiles,
): Transport<S> {
  return engine === 'uws' ? createUwsTransport(options, handlers, tls) : createWsTransport(options, handlers, tls);
}

/** For --version: the engine this choice gets here, its version, and why, in one line. */
export function describeTransport(choice: TransportChoice, needsTls: boolean): string {
  const plan = planTransport(choice, needsTls);
  if (!plan.ok) return `transport: none usable (${choice}): ${plan.error}`;
  const loaded = probeUws();
  const version =
    plan.engine === 'uws' && !(loaded instanceof UwsLoadError)
      ? `${loaded.build} ${loaded.version}`
      : `ws ${wsVersion()} on node:${needsTls ? 'https' : 'http'}`;
  return `transport: ${plan.engine} (${version})${plan.fallback === undefined ? '' : `; ${plan.fallback}`}`;
}
