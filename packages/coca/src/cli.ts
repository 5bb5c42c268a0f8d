// The `coca` command (bin/coca.js runs `main`): a thin alias over @vl/core/cli's program, so
// `coca <command> …` is `vl <command> coca …`.
import { type Io, registerModel } from '@vl/core';
import { processIo, runModelCli } from '@vl/core/cli';
import { clipModel, cocaModel } from './model-spec.js';

registerModel(cocaModel);
registerModel(clipModel);

/** Runs `coca <argv>`; returns the exit code (2 for usage errors). */
export function runCli(argv: readonly string[], io: Io = processIo): Promise<number> {
  return runModelCli('coca', argv, io);
}

/** The executable's entry: sets process.exitCode. */
export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  process.exitCode = await runCli(argv);
}
