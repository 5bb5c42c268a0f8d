// The `vl` command: the model commands (verify, train, eval, caption, match, convert, and the models' own,
// e.g. capfilt) come from the registry through @vl/core/cli; ablate, data, bench and demo live in commands/.
import type { Command } from 'commander';
import type { Io } from '@vl/core';
import { addModelCommands, createProgram, processIo, type ProgramState, runProgram } from '@vl/core/cli';
import './models.js';
import { registerAblateCommand } from './commands/ablate.js';
import { registerBenchCommand } from './commands/bench.js';
import { registerDataCommands } from './commands/data.js';
import { registerDemoCommand } from './commands/demo.js';

export function buildProgram(io: Io = processIo, state: ProgramState = { code: 0 }): Command {
  const program = createProgram(
    'vl',
    'vision-language models: verify, train, eval, ablate, caption, match, convert, capfilt, data, bench',
    io,
  );
  addModelCommands(program, io, state);
  registerAblateCommand(program);
  registerDataCommands(program);
  registerBenchCommand(program);
  registerDemoCommand(program);
  return program;
}

/** Runs `vl <argv>`; returns the exit code (0 ok, 1 verify past tolerance or a failure, 2 usage error). */
export function runVl(argv: readonly string[], io: Io = processIo): Promise<number> {
  const state: ProgramState = { code: 0 };
  return runProgram(buildProgram(io, state), state, argv, io);
}
