#!/usr/bin/env node
// The `vl` executable: loads the built CLI (dist/bin.js), which runs the command line. Committed so npm links it at install time,
// before anything is built.
import { existsSync } from 'node:fs';

const cli = new URL('../dist/bin.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write('vl: @vl/cli is not built (dist/bin.js is missing): run `npm run build` at the repository root first\n');
  process.exit(1);
}
await import(cli.href);
