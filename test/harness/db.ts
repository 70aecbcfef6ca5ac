// Databases for tests: a fresh database per test file in the run's shared
// PostgreSQL, or a whole cluster of its own for tests that stop or restart it.
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { inject } from 'vitest';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/embedded.js';
import { track } from './leftovers.js';

export type Sql = postgres.Sql<Record<string, unknown>>;

export interface TestDatabase {
  readonly uri: string;
  /** A postgres.js client on this database for the test's own queries. */
  readonly sql: Sql;
}

function withDatabase(uri: string, database: string): string {
  const url = new URL(uri);
  url.pathname = `/${database}`;
  return url.toString();
}

export function testSql(uri: string): Sql {
  const sql = postgres(uri, { max: 4, onnotice: () => undefined, fetch_types: false });
  track(() => sql.end({ timeout: 1 }));
  return sql;
}

/** A new, empty database in the shared server, dropped when the file's tests end. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUri = inject('adminUri');
  const name = `pgws_test_${randomBytes(6).toString('hex')}`;
  const admin = postgres(adminUri, { max: 1, onnotice: () => undefined });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const uri = withDatabase(adminUri, name);
  const sql = testSql(uri);
  track(async () => {
    const dropper = postgres(adminUri, { max: 1, onnotice: () => undefined });
    await dropper.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
    await dropper.end();
  });
  return { uri, sql };
}

/** A PostgreSQL cluster owned by one test file: it may stop, pause or restart it. */
export async function ownCluster(): Promise<EmbeddedDatabase & { sql: Sql }> {
  const db = await startEmbeddedPostgres();
  track(() => db.stop());
  return Object.assign(db, { sql: testSql(db.uri) });
}
