// Registration of the native kernels on tfjs's wasm backend, and the way back: what was registered
// before is kept, so unregisterAccelKernels restores it exactly (the bench compares both in one
// process) and every case the native path does not cover falls through to it.
import { loadAccel } from './binding.js';
import { createFusedKernels, createReplacementKernels, registerFusedGradients } from './fused.js';
import { createMatMulKernels } from './matmul.js';
import type { Tf } from './wasm.js';
import type * as tfc from '@tensorflow/tfjs-core';

export interface AccelRegistration {
  /** Whether the native kernels are now registered on wasm. */
  active: boolean;
  /** One sentence: what was loaded, or why nothing was. */
  note: string;
  /** Stock (or earlier-registered) wasm kernels now replaced by native ones. */
  replaced: string[];
  /** Kernels that did not exist before (VlLayerNorm, VlGelu, VlSoftmax and their gradients). */
  added: string[];
}

/** Per tfjs engine: the configs that were registered before ours (undefined: none). */
const saved = new WeakMap<object, Map<string, tfc.KernelConfig | undefined>>();
/** Configs this package created, told apart from whatever else is registered. */
const ours = new WeakSet<tfc.KernelConfig>();

function put(tf: Tf, config: tfc.KernelConfig): void {
  // Registering a taken name makes tfjs warn and keep the old one: unregister first.
  if (tf.getKernel(config.kernelName, config.backendName)) tf.unregisterKernel(config.kernelName, config.backendName);
  tf.registerKernel(config);
}

/**
 * Registers the native kernels on tfjs's wasm backend: BatchMatMul and _FusedMatMul (OpenBLAS),
 * Softmax and leading-axis Sum replacements, and the fused VlLayerNorm / VlGelu / VlSoftmax custom
 * kernels with gradients. Call it after any other code that replaces those wasm kernels (core's
 * `installWasmKernels`): the kernels registered then become the fallbacks. Calling it again
 * re-registers over the same fallbacks. Never throws for a missing addon: `active` says.
 */
export function registerAccelKernels(tf: Tf): AccelRegistration {
  const status = loadAccel();
  if (!status.available) return { active: false, note: status.note, replaced: [], added: [] };
  const batchMatMul = tf.getKernel('BatchMatMul', 'wasm');
  const fusedMatMul = tf.getKernel('_FusedMatMul', 'wasm');
  if (!batchMatMul || !fusedMatMul) {
    return {
      active: false,
      note: 'the tfjs wasm backend is not loaded (import @tensorflow/tfjs-backend-wasm first)',
      replaced: [],
      added: [],
    };
  }
  const engineKey = tf.engine() as object;
  const before = saved.get(engineKey) ?? new Map<string, tfc.KernelConfig | undefined>();
  // The fallback is whatever is registered now unless that is one of ours (a repeat call): then
  // the one saved before stays. So core re-installing its kernels in between is picked up.
  const previous = (name: string): tfc.KernelConfig | undefined => {
    const current = tf.getKernel(name, 'wasm');
    if (current && !ours.has(current)) before.set(name, current);
    else if (!before.has(name)) before.set(name, undefined);
    return before.get(name);
  };
  const configs = [
    ...createMatMulKernels(status.binding, {
      batchMatMul: previous('BatchMatMul') ?? batchMatMul,
      fusedMatMul: previous('_FusedMatMul') ?? fusedMatMul,
    }),
    ...createReplacementKernels(status.binding, previous),
    ...createFusedKernels(status.binding),
  ];
  const replaced: string[] = [];
  const added: string[] = [];
  for (const config of configs) {
    const existed = previous(config.kernelName) !== undefined;
    ours.add(config);
    put(tf, config);
    (existed ? replaced : added).push(config.kernelName);
  }
  saved.set(engineKey, before);
  registerFusedGradients(tf);
  return { active: true, note: status.note, replaced, added };
}

/** Puts back every wasm kernel registerAccelKernels replaced and removes the ones it added. */
export function unregisterAccelKernels(tf: Tf): void {
  const engineKey = tf.engine() as object;
  const before = saved.get(engineKey);
  if (!before) return;
  for (const [name, config] of before) {
    if (tf.getKernel(name, 'wasm')) tf.unregisterKernel(name, 'wasm');
    if (config) tf.registerKernel(config);
  }
  saved.delete(engineKey);
}

/** Whether the native kernels are registered on this engine now. */
export function accelKernelsActive(tf: Tf): boolean {
  return saved.has(tf.engine() as object);
}
