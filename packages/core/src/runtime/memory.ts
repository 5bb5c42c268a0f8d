// Memory guard for the wasm backend: its heap ends near 3.6 GiB and an allocation failure there is
// silent (address 0, then a crash or corrupted data), so training that cannot fit must be refused
// up front with a message that says what to do instead.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';

/**
 * Usable wasm heap. wasm32 addresses 4 GiB; emscripten's reserved regions, the stack and malloc
 * fragmentation leave about 3.6 GiB for tensors in practice (measured with tfjs-backend-wasm 4.22).
 */
export const WASM_HEAP_LIMIT_BYTES = Math.floor(3.6 * 1024 ** 3);

const BYTES_PER_FLOAT = 4;

/** Optimizer state floats per parameter: AdamW keeps first and second moments; plain SGD none. */
const OPTIMIZER_STATES: Record<TrainingOptimizer, number> = { adamw: 2, sgd: 0, none: 0 };

export type TrainingOptimizer = 'adamw' | 'sgd' | 'none';

export interface TrainingEstimateOptions {
  /** 'none' estimates inference: weights (and activations) only. */
  optimizer: TrainingOptimizer;
  /** Count one gradient per parameter. Default: true unless `optimizer` is 'none'. */
  gradients?: boolean;
  /** Activations kept for the backward pass (or peak activations in inference), in bytes. Default 0. */
  activationBytes?: number;
}

/** float32 bytes to train (or run) `numParams` parameters: weights + gradients + optimizer states + activations. */
export function estimateTrainingBytes(numParams: number, options: TrainingEstimateOptions): number {
  if (!Number.isFinite(numParams) || numParams < 0) {
    throw new VlError('INVALID_ARGUMENT', `numParams must be a non-negative number, got ${numParams}`, {
      subject: 'estimateTrainingBytes',
    });
  }
  const activationBytes = options.activationBytes ?? 0;
  if (!Number.isFinite(activationBytes) || activationBytes < 0) {
    throw new VlError('INVALID_ARGUMENT', `activationBytes must be a non-negative number, got ${activationBytes}`, {
      subject: 'estimateTrainingBytes',
    });
  }
  const gradients = options.gradients ?? options.optimizer !== 'none';
  const floatsPerParam = 1 + (gradients ? 1 : 0) + OPTIMIZER_STATES[options.optimizer];
  return numParams * floatsPerParam * BYTES_PER_FLOAT + activationBytes;
}

export function formatGiB(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

export interface HeapCheck {
  /** `bytes` plus what tfjs already holds. */
  requiredBytes: number;
  inUseBytes: number;
  limitBytes: number;
}

/**
 * Throws `WASM_HEAP_LIMIT` when `bytes` more (on top of the tensors alive now) would not fit the
 * wasm heap. Only checks on the wasm backend; elsewhere it returns null. Pass only what is still
 * to be allocated: tensors already alive are counted from `tf.memory()`.
 */
export function assertFitsWasmHeap(bytes: number, what: string): HeapCheck | null {
  if (tf.getBackend() !== 'wasm') return null;
  const inUseBytes = tf.memory().numBytes;
  const requiredBytes = bytes + inUseBytes;
  if (requiredBytes > WASM_HEAP_LIMIT_BYTES) {
    throw new VlError(
      'WASM_HEAP_LIMIT',
      `needs about ${formatGiB(requiredBytes)} (${formatGiB(bytes)} more + ${formatGiB(inUseBytes)} in use), ` +
        `more than the wasm backend's ${formatGiB(WASM_HEAP_LIMIT_BYTES)} heap`,
      {
        subject: what,
        hint:
          'install @tensorflow/tfjs-node (native backend, no 4 GiB heap), use a smaller preset, ' +
          'run inference only, or train fewer parameters (freeze a tower, smaller batch for activations)',
      },
    );
  }
  return { requiredBytes, inUseBytes, limitBytes: WASM_HEAP_LIMIT_BYTES };
}

/**
 * Grows the wasm heap once so that `bytes` more can be allocated without growing it again: a
 * malloc of that size, freed at once, leaves one free block the next allocations are carved from.
 * Why: a model built tensor by tensor grows the heap dozens of times, and each growth of the
 * (shared) wasm memory makes V8 run a full garbage collection — about a third of loading
 * BLIP-base (measured: 18 mark-compacts and 1.3 s CPU without, 2 and 0.8 s with). Call it right
 * before the allocations, in the same synchronous stretch (another task's allocations would take
 * the block). Only a hint: a no-op off wasm, and when the heap cannot grow that far.
 */
export function reserveWasmHeap(bytes: number): void {
  if (tf.getBackend() !== 'wasm' || !(bytes > 0) || bytes > WASM_HEAP_LIMIT_BYTES) return;
  const wasm = (tf.backend() as unknown as { wasm: { _malloc(n: number): number; _free(p: number): void } }).wasm;
  const ptr = wasm._malloc(bytes);
  if (ptr !== 0) wasm._free(ptr);
}

/**
 * reserveWasmHeap sized for a checkpoint's tensors about to become float32 variables: their bytes, plus 1%
 * and 1 MiB for what building the model allocates besides (buffers, small tensors).
 */
export function reserveWasmHeapFor(tensors: ReadonlyMap<string, { shape: readonly number[] }>): void {
  let elements = 0;
  for (const t of tensors.values()) elements += t.shape.reduce((a, b) => a * b, 1);
  reserveWasmHeap(Math.ceil(elements * 4 * 1.01) + (1 << 20));
}
