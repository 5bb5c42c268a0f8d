// The `vl` command: each sub-command lives in commands/ and registers itself here.
import { Command } from 'commander';
import { registerBenchCommand } from './commands/bench.js';
import { registerDemoCommand } from './commands/demo.js';
import { registerDataCommands } from './commands/data.js';
import { registerAblateCommand } from './commands/ablate.js';

export function buildProgram(): Command {
  const program = new Command('vl').description('vision-language models: train, eval, ablate, bench, data').showHelpAfterError();
  registerDemoCommand(program);
  registerBenchCommand(program);
  registerDataCommands(program);
  registerAblateCommand(program);
  return program;
}
