// The `vlmo` command (bin/vlmo.js runs `main`): a thin alias over @vl/core/cli's program, so
// `vlmo <command> …` is `vl <command> vlmo …` (`--model` is kept as the old name of `--checkpoint`).
import { type Io, registerModel } from '@vl/core';
import { processIo, runModelCli } from '@vl/core/cli';
import { vlmoModel } from './model-spec.js';

registerModel(vlmoModel);

/** Runs `vlmo <argv>`; returns the exit code (2 for usage errors). */
export function runCli(argv: readonly string[], io: Io = processIo): Promise<number> {
  return runModelCli('vlmo', argv, io);
}

/** The executable's entry: sets process.exitCode. */
export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  process.exitCode = await runCli(argv);
}
