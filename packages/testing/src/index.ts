// @vl/testing: helpers shared by the test suites of the vl packages (private, consumed from source). This entry
// imports only @tensorflow/tfjs-core, so @vl/core's own tests can use it; helpers built on @vl/core live in
// `@vl/testing/models` (importing it from core's tests would load a second copy of core, from its dist).
export { captureIo, captureLines, verifyArgs } from './cli-io.js';
export { type Evaluation, evaluateOnActiveBackend, type TensorFn } from './evaluate.js';
export { type HostArray, referenceMatMul, seeded } from './host-arrays.js';
export { countKernelCalls, type KernelCallCounter } from './kernel-calls.js';
