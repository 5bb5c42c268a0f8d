#!/usr/bin/env node
// The `blip` executable: runs the command in program.ts and exits with its code.
import { runCli } from './program.js';
import { runCapfiltCli } from './capfilt/cli.js';

const argv = process.argv.slice(2);
(argv[0] === 'capfilt' ? runCapfiltCli(argv.slice(1)) : runCli(argv)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
