#!/usr/bin/env node
// Thin launcher: all logic lives in src/cli.ts (compiled to dist/cli.js).
import { main } from '../dist/cli.js';

main(process.argv).catch((err) => {
  console.error(`pgws: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
