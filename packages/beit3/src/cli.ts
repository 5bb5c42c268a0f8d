// The `beit3` command (bin/beit3.js runs `main`): a thin alias over @vl/core/cli's program, so
// `beit3 <command> …` is `vl <command> beit3 …`.
import { type Io, registerModel } from '@vl/core';
import { processIo, runModelCli } from '@vl/core/cli';
import { beit3Model } from './model-spec.js';

registerModel(beit3Model);

/** Runs `beit3 <argv>`; returns the exit code (2 for usage errors). */
export function runCli(argv: readonly string[], io: Io = processIo): Promise<number> {
  return runModelCli('beit3', argv, io);
}

/** The executable's entry: sets process.exitCode. */
export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  process.exitCode = await runCli(argv);
}
