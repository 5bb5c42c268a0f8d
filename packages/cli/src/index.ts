// @vl/cli: the `vl` command's programmatic entry.
export { buildProgram, runVl } from './program.js';
// The machine's fp32 FMA peak (a C loop, same run), for benchmarks that compare against it.
export { measurePeak, type PeakMeasurement } from './bench/peak.js';
