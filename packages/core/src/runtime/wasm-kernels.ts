// Kernels core registers on the wasm backend: a BatchMatMul/_FusedMatMul that stays on the fast
// path for every transpose/batch form, and fallbacks for kernels training needs that wasm lacks.
import * as tf from '@tensorflow/tfjs-core';
import { conv2DBackpropFilterConfig } from './kernels/conv-backprop-filter.js';
import { cpuFallbackConfig } from './kernels/cpu-fallback.js';
import { createFastMatMulKernels } from './kernels/matmul.js';
import { asWasmBackend } from './kernels/wasm-internals.js';
import { unsortedSegmentSumConfig } from './kernels/segment-sum.js';
import { runtimeSlot } from './state.js';

export interface InstalledKernels {
  /** Whether core's replacement kernels are active. */
  enabled: boolean;
  /** Stock kernels replaced by faster ones (e.g. BatchMatMul). */
  replaced: string[];
  /** Kernels the backend lacked, registered as fallbacks (e.g. UnsortedSegmentSum). */
  fallbacks: string[];
}

const FAST = [tf.BatchMatMul, tf._FusedMatMul] as const;

/**
 * Stock wasm kernels that give wrong results: their C code starts a running max at
 * `numeric_limits<float>::min()` (the smallest positive float), so a window whose values are all
 * negative yields a wrong max or drops its gradient. Replaced by the exact cpu kernel (rare ops).
 */
const CORRECTED = [
  tf.MaxPoolGrad,
  tf.MaxPool3D,
  tf.MaxPool3DGrad,
  tf.MaxPoolWithArgmax,
  tf.Dilation2D,
  tf.Dilation2DBackpropFilter,
  tf.Dilation2DBackpropInput,
] as const;

const REPLACED: readonly string[] = [...FAST, ...CORRECTED];

/** Hot gaps get direct heap implementations; every other gap gets the generic cpu round trip. */
const DIRECT_FALLBACKS: readonly tf.KernelConfig[] = [unsortedSegmentSumConfig, conv2DBackpropFilterConfig];

/**
 * Shared by every copy of core in the process (see state.ts): `stock` holds the stock configs, saved before the
 * first replacement so `installWasmKernels(false)` can put them back (a second copy must not save the first
 * copy's replacements as "stock"); `replacements` and `fallbacks` are what was registered.
 */
interface WasmKernelState {
  stock: Map<string, tf.KernelConfig> | null;
  replacements: tf.KernelConfig[] | null;
  fallbacks: string[] | null;
}
const state = runtimeSlot<WasmKernelState>('wasmKernels', () => ({ stock: null, replacements: null, fallbacks: null }));

function register(config: tf.KernelConfig): void {
  // Re-registering an existing name makes tfjs warn and keep the old one: unregister first.
  if (tf.getKernel(config.kernelName, config.backendName)) tf.unregisterKernel(config.kernelName, config.backendName);
  tf.registerKernel(config);
}

function installFallbacks(): string[] {
  if (state.fallbacks) return state.fallbacks;
  const installed: string[] = [];
  for (const config of DIRECT_FALLBACKS) {
    if (tf.getKernel(config.kernelName, 'wasm')) continue;
    tf.registerKernel(config);
    installed.push(config.kernelName);
  }
  const onWasm = new Set(tf.getKernelsForBackend('wasm').map((k) => k.kernelName));
  for (const { kernelName } of tf.getKernelsForBackend('cpu')) {
    if (onWasm.has(kernelName)) continue;
    const config = cpuFallbackConfig(kernelName);
    if (!config) continue;
    tf.registerKernel(config);
    installed.push(kernelName);
  }
  state.fallbacks = installed.sort();
  return state.fallbacks;
}

/**
 * Registers core's wasm kernels. `enabled` switches the fast matmul and the corrected max-pool
 * kernels on, or back to the exact stock kernels (the bench compares both in one process).
 * Fallbacks only fill gaps, so they stay either way. A no-op without the wasm backend package.
 */
export function installWasmKernels(enabled: boolean): InstalledKernels {
  if (!tf.getKernel(tf.BatchMatMul, 'wasm')) return { enabled: false, replaced: [], fallbacks: [] };
  const filled = installFallbacks();
  if (!state.stock) {
    const saved = new Map<string, tf.KernelConfig>();
    for (const name of REPLACED) {
      const config = tf.getKernel(name, 'wasm');
      if (config) saved.set(name, config);
    }
    state.stock = saved;
  }
  const stock = state.stock;
  const stockBatchMatMul = stock.get(tf.BatchMatMul);
  const stockFusedMatMul = stock.get(tf._FusedMatMul);
  if (!stockBatchMatMul || !stockFusedMatMul) {
    return { enabled: false, replaced: [], fallbacks: [...filled] };
  }
  if (!enabled) {
    for (const config of stock.values()) register(config);
    return { enabled, replaced: [], fallbacks: [...filled] };
  }
  const replacements = (state.replacements ??= [
    ...createFastMatMulKernels({ batchMatMul: stockBatchMatMul, fusedMatMul: stockFusedMatMul }),
    ...CORRECTED.filter((name) => stock.has(name)).flatMap((name) => cpuFallbackConfig(name) ?? []),
  ]);
  for (const config of replacements) register(config);
  return { enabled, replaced: replacements.map((c) => c.kernelName), fallbacks: [...filled] };
}

/** Whether the kernel registered now for wasm is the stock one (for tests and the bench). */
export function isStockWasmKernel(kernelName: string): boolean {
  const saved = state.stock?.get(kernelName);
  const current = tf.getKernel(kernelName, 'wasm');
  return saved === undefined ? current !== undefined : current === saved;
}

/** Whether core's own BatchMatMul is the one registered for wasm now (not stock, not another package's). */
export function coreWasmMatMulActive(): boolean {
  const current = tf.getKernel(tf.BatchMatMul, 'wasm');
  return current !== undefined && (state.replacements?.includes(current) ?? false);
}

/** Threads the active wasm backend computes on (its XNNPACK pool), or null when wasm is not the active backend. */
export function wasmThreadCount(): number | null {
  if (tf.getBackend() !== 'wasm') return null;
  return asWasmBackend(tf.backend()).wasm.tfjs.getThreadsCount();
}
