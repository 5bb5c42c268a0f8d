// Entry of `blip capfilt …` from the executable: runs the command; usage errors and refusals before
// the run starts (invalid options, a locked or conflicting --out, a journal of another run) exit 2.
import { isVlError, type ModelCommandSpec } from '@vl/core';
import { type Io, processIo, UsageError } from './args.js';
import { CAPFILT_HELP, capfiltCommand } from './command.js';

/** Error codes that mean "refused before doing anything": exit 2, like a usage error. */
export const REFUSAL_CODES = ['INVALID_ARGUMENT', 'CONFIG_INVALID', 'OUTPUT_LOCKED', 'OUTPUT_CONFLICT', 'RESUME_MISMATCH'] as const;

/** The exit code for an error thrown by a CapFilt command: 2 for refusals, 1 otherwise. */
export function capfiltExitCode(err: unknown): number {
  if (err instanceof UsageError) return 2;
  return REFUSAL_CODES.some((c) => isVlError(err, c)) ? 2 : 1;
}

export async function runCapfiltCli(argv: string[], io: Io = processIo): Promise<number> {
  try {
    return await capfiltCommand(argv, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`blip capfilt: ${err.message}\n\n${CAPFILT_HELP}`);
      return 2;
    }
    if (capfiltExitCode(err) === 2) {
      io.err(`blip capfilt: ${(err as Error).message}`);
      return 2;
    }
    throw err;
  }
}

/**
 * CapFilt as BLIP's own command in the model contract (`vl capfilt blip …`, `blip capfilt …`). Its
 * arguments pass through to the parser above (see args.ts); exit codes as runCapfiltCli's, 1 for failures.
 */
export const capfiltCommandSpec: ModelCommandSpec = {
  name: 'capfilt',
  description:
    'CapFilt: caption every image, filter original and synthetic captions with ITM (+ITC), write the cleaned dataset and a report',
  arguments: '[args...]',
  options: [],
  passThrough: true,
  async run(ctx, _values, args) {
    try {
      return await runCapfiltCli(args, ctx.io);
    } catch (err) {
      ctx.io.err(`blip capfilt: ${err instanceof Error ? err.message : String(err)}`);
      return capfiltExitCode(err);
    }
  },
};
