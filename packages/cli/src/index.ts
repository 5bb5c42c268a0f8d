// @vl/cli: the `vl` command's programmatic entry.
export { buildProgram } from './program.js';
