import { defineConfig } from 'vitest/config';

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
];

// Every other file is the conformance suite: it runs once per transport (the harness reads
// `transport` with inject()), so a behaviour difference between uws and ws fails a test.
// A new integration file joins both runs without being listed anywhere.
const TRANSPORTS = ['uws', 'ws'] as const;

export default defineConfig({
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
      ...TRANSPORTS.map((transport) => ({
        extends: true,
        test: { name: transport, include: ['test/**/*.test.ts'], exclude: UNIT, provide: { transport } },
      })),
    ],
  },
});
