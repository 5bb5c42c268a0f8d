// Kernels core registers on the wasm backend: a BatchMatMul/_FusedMatMul that stays on the fast
// path for every transpose/batch form, and fallbacks for kernels training needs that wasm lacks.
// (Being filled in by the runtime-kernels work; this placeholder registers nothing.)

export interface InstalledKernels {
  /** Whether core's replacement kernels are active. */
  enabled: boolean;
  /** Stock kernels replaced by faster ones (e.g. BatchMatMul). */
  replaced: string[];
  /** Kernels the backend lacked, registered as fallbacks (e.g. UnsortedSegmentSum). */
  fallbacks: string[];
}

export function installWasmKernels(enabled: boolean): InstalledKernels {
  return { enabled: enabled && false, replaced: [], fallbacks: [] };
}
