import { defineConfig } from 'vitest/config';
import { probeEngine } from './test/harness/docker.js';

// Tests of one module with no server in them: run once.
const UNIT = [
  'test/auth.test.ts',
  'test/batcher.unit.test.ts',
  'test/hmac-fast-path.unit.test.ts',
  'test/cli.test.ts',
  'test/config.test.ts',
  'test/relay.unit.test.ts',
  'test/static.test.ts',
  'test/timer.test.ts',
  'test/transport-select.test.ts',
  'test/token-cache.unit.test.ts',
  'test/public-key-fast-path.unit.test.ts',
  'test/remote-keys.unit.test.ts',
  'test/token-source.unit.test.ts',
  'test/filter.unit.test.ts',
  'test/frames.unit.test.ts',
  'test/subscriptions.unit.test.ts',
  'test/client.unit.test.ts',
];

// Tests of how pgws is shipped and started, not of a transport: run once, on the transport
// pgws picks by itself. The image and compose tests skip, with the reason, where no Docker
// engine answers.
const ONCE = ['test/container-image.test.ts', 'test/compose.test.ts', 'test/embedded-private.test.ts', 'test/token-command.test.ts', 'test/sql-command.test.ts'];

// Every other file is the conformance suite: it runs once per transport (the harness reads
// `transport` with inject()), so a behaviour difference between uws and ws fails a test.
// A new integration file joins both runs without being listed anywhere.
const TRANSPORTS = ['uws', 'ws'] as const;

// The database-facing suite runs again on PostgreSQL 17 in a container (global-setup.ts),
// beside the embedded PostgreSQL 18 of the runs above, on one transport. Left out: tests that
// stop or restart PostgreSQL (they own an embedded cluster whatever the project) and the
// browser test of the page, which does not depend on the server's version.
const NOT_ON_PG17 = [...UNIT, ...ONCE, 'test/faults.test.ts', 'test/journal-faults.test.ts', 'test/page.test.ts', 'test/access-browser.test.ts'];

export default defineConfig(async () => {
  const engine = await probeEngine();
  if (engine.ok && engine.engine.podman) {
    // Podman behind the Docker API (../shared/containers): Ryuk's image cannot be pulled (the
    // tests stop their own containers), and testcontainers must not go looking for a gateway.
    process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';
    process.env.TESTCONTAINERS_HOST_OVERRIDE ??= '127.0.0.1';
  }
  if (!engine.ok) {
    // Visible in every run's output: the PostgreSQL 17 project is not there, and why.
    console.warn(`\n[pgws tests] PostgreSQL 17 project skipped: ${engine.reason}\n`);
  }
  return {
    test: {
      // uWebSockets.js is a native addon: one process per test file is the safe isolation.
      pool: 'forks',
      globalSetup: ['test/harness/global-setup.ts'],
      setupFiles: ['test/harness/setup.ts'],
      testTimeout: 30_000,
      hookTimeout: 60_000,
      reporters: ['default'],
      projects: [
        { extends: true, test: { name: 'unit', include: UNIT, provide: { transport: 'auto' } } },
        { extends: true, test: { name: 'once', include: ONCE, provide: { transport: 'auto' } } },
        ...TRANSPORTS.map((transport) => ({
          extends: true,
          test: { name: transport, include: ['test/**/*.test.ts'], exclude: [...UNIT, ...ONCE], provide: { transport } },
        })),
        ...(engine.ok
          ? [{ extends: true, test: { name: 'pg17', include: ['test/**/*.test.ts'], exclude: NOT_ON_PG17, provide: { transport: 'uws' as const } } }]
          : []),
      ],
    },
  };
});
