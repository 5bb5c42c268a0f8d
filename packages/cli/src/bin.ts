#!/usr/bin/env node
// The `vl` executable: bin/vl.js imports this file (so does `node packages/cli/dist/bin.js …`); it runs
// the command line and sets the exit code.
import { runVl } from './program.js';

void runVl(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
