// The `albef` command (bin/albef.js runs `main`): a thin alias over @vl/core/cli's program, so
// `albef <command> …` is `vl <command> albef …` (`--model` is kept as the old name of `--checkpoint`).
import { type Io, registerModel } from '@vl/core';
import { processIo, runModelCli } from '@vl/core/cli';
import { albefModel } from './model-spec.js';

registerModel(albefModel);

/** Runs `albef <argv>`; returns the exit code (2 for usage errors). */
export function runCli(argv: readonly string[], io: Io = processIo): Promise<number> {
  return runModelCli('albef', argv, io);
}

/** The executable's entry: sets process.exitCode. */
export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  process.exitCode = await runCli(argv);
}
