// @vl/accel: optional native CPU kernels (N-API + OpenBLAS) for tfjs's wasm backend; @vl/core's
// runtime registers them when the binary loads and reports why not when it does not.
import { loadAccel, type AccelStatus, type NativeInfo } from './binding.js';
import type { Tf } from './wasm.js';

export type { AttentionAttrs, AttentionView } from './attention.js';
export { ACCEL_KERNELS } from './fused.js';
export { packedInt8Length, type Int8LinearAttrs } from './int8.js';
export { accelKernelsActive, registerAccelKernels, unregisterAccelKernels, type AccelRegistration } from './register.js';
export type { AccelStatus, NativeInfo };

/** Whether the native binary loads here, and what it runs with (threads, SIMD, OpenBLAS core). */
export function accelStatus(): { available: boolean; note: string; path?: string; info?: NativeInfo } {
  const status: AccelStatus = loadAccel();
  return status.available
    ? { available: true, note: status.note, path: status.path, info: status.info }
    : { available: false, note: status.note };
}

/** Whether `kernelName` (e.g. ACCEL_KERNELS.layerNorm) is registered for the active backend. */
export function hasAccelKernel(tf: Tf, kernelName: string): boolean {
  return tf.getKernel(kernelName, tf.getBackend()) !== undefined;
}
