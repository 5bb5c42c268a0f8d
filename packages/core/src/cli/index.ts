// @vl/core/cli (node only): the command-line layer over the model registry. `vl` (@vl/cli) and every
// model's own bin build their programs here, so flags, help, progress and exit codes are the same everywhere.
export {
  addModelCommand,
  addModelCommands,
  createModelProgram,
  createProgram,
  processIo,
  type ProgramState,
  runModelCli,
  runProgram,
} from './program.js';
export { attributeOf, type CommandTemplate, MODEL_COMMANDS, required, usage, type Values } from './commands.js';
export { COMMON, MODEL_ALIAS, toOption } from './options.js';
export { progressBar } from './progress.js';
