// @vl/testing/models: test helpers built on @vl/core, for the model packages' suites (not for core's own tests,
// which would then load core twice: its sources and, through this entry, its dist).
export { tinyAblationData, type TinyAblationDataOptions } from './ablation-data.js';
export {
  expectDamagedSafetensorsRejected,
  expectFastLoadMatches,
  type LoadWatch,
  stateBits,
  watchLoad,
  writeDamagedSafetensors,
} from './state-dict.js';
