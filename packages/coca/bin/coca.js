#!/usr/bin/env node
// The `coca` executable: runs the built CLI (dist/cli.js), i.e. `vl <command> coca …` under CoCa's own name.
// Committed so npm links it at install time, before anything is built.
import { existsSync } from 'node:fs';

const cli = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write('coca: @vl/coca is not built (dist/cli.js is missing): run `npm run build` at the repository root first\n');
  process.exit(1);
}
const { main } = await import(cli.href);
await main(process.argv.slice(2));
