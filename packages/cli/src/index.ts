// @vl/cli: the `vl` command's programmatic entry.
export { buildProgram, runVl } from './program.js';
