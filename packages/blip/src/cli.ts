// The `blip` command (bin/blip.js runs `main`): a thin alias over @vl/core/cli's program, so
// `blip <command> …` is `vl <command> blip …` — same flags, help and exit codes (`--model` is kept as
// the old name of `--checkpoint`, `pretrain` as the old name of `train`).
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { type Io, registerModel } from '@vl/core';
import { processIo, runModelCli } from '@vl/core/cli';
import { blipModel } from './model-spec.js';

registerModel(blipModel);

/** Runs `blip <argv>`; returns the exit code (2 for usage errors). */
export function runCli(argv: readonly string[], io: Io = processIo): Promise<number> {
  return runModelCli('blip', argv, io);
}

/** The executable's entry (bin/blip.js; `node dist/cli.js …` too): sets process.exitCode. */
export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  process.exitCode = await runCli(argv);
}

// Run when this file is the script itself (`node dist/cli.js …`, as tests and older docs do).
const script = process.argv[1];
if (script !== undefined && /cli\.(c?js|ts)$/.test(script) && import.meta.url === pathToFileURL(realpathSync(script)).href) void main();
