// Entry of `blip capfilt …` from the executable: runs the command, turns usage errors into exit code 2.
import { type Io, processIo, UsageError } from '../program.js';
import { CAPFILT_HELP, capfiltCommand } from './command.js';

export async function runCapfiltCli(argv: string[], io: Io = processIo): Promise<number> {
  try {
    return await capfiltCommand(argv, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`blip capfilt: ${err.message}\n\n${CAPFILT_HELP}`);
      return 2;
    }
    throw err;
  }
}
