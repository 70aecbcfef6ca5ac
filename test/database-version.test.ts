// Which PostgreSQL this project's tests really run on (test/harness/global-setup.ts): the
// embedded 18 for the transport projects, 17 in a container for the pg17 project. Without
// this, a harness that quietly fell back to one server would cover one version twice.
import { expect, inject, it } from 'vitest';
import { createTestDatabase } from './harness/db.js';

it('runs on the PostgreSQL major version its project names', async ({ task }) => {
  const db = await createTestDatabase();
  const [row] = await db.sql<{ version: string }[]>`SELECT current_setting('server_version_num') AS version`;
  const major = Math.floor(Number(row?.version) / 10_000);
  const kind = inject('databaseKind');
  if (kind === 'PGWS_TEST_DATABASE_URL') return;
  const expected = task.file.projectName === 'pg17' ? 17 : 18;
  expect({ kind, major }).toEqual({ kind, major: expected });
});
