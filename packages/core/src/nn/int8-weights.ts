// Int8 copies of linear weights, for inference (see quantize.ts): which weights have one, and the
// call into @vl/accel's VlInt8Linear kernel. A copy is used only while its weight still holds the
// values it was packed from (a Variable's assign — an optimizer step, a checkpoint load — gives it
// new data and the float path runs again), only when no gradient tape is recording (the kernel has
// no gradient), and only on a backend where the kernel is registered.
import * as tf from '@tensorflow/tfjs-core';
import { recordingGradients } from '../runtime/tape.js';

export const INT8_PACK_KERNEL = 'VlInt8Pack';
export const INT8_LINEAR_KERNEL = 'VlInt8Linear';

interface PackedWeight {
  packed: tf.Tensor;
  /** The weight's data when it was packed. */
  dataId: object;
  backend: string;
}

const packedWeights = new WeakMap<tf.Tensor, PackedWeight>();

/** Whether the active backend has the int8 kernels (@vl/accel on wasm). */
export function int8KernelsAvailable(): boolean {
  const backend = tf.getBackend();
  return tf.getKernel(INT8_PACK_KERNEL, backend) !== undefined && tf.getKernel(INT8_LINEAR_KERNEL, backend) !== undefined;
}

/** Packs `weight` ([out, in] float32) and keeps the copy until `dropInt8Weight`; replaces an older copy. */
export function packInt8Weight(weight: tf.Tensor): number {
  dropInt8Weight(weight);
  const packed = tf.keep(tf.engine().runKernel(INT8_PACK_KERNEL, { weight }) as tf.Tensor);
  packedWeights.set(weight, { packed, dataId: weight.dataId, backend: tf.getBackend() });
  return packed.size * 4;
}

/** Frees the int8 copy of `weight`, if it has one. */
export function dropInt8Weight(weight: tf.Tensor): boolean {
  const entry = packedWeights.get(weight);
  if (!entry) return false;
  entry.packed.dispose();
  packedWeights.delete(weight);
  return true;
}

export function hasInt8Weight(weight: tf.Tensor): boolean {
  return packedWeights.has(weight);
}

/**
 * x·Wᵀ + b through the int8 copy of `weight`, or null when the float path must run (no current copy,
 * a tape recording, another backend, or a non-float32 input).
 */
export function int8Linear(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor | null): tf.Tensor | null {
  const entry = packedWeights.get(weight);
  if (!entry || entry.dataId !== weight.dataId || x.dtype !== 'float32' || (bias && bias.dtype !== 'float32')) return null;
  if (entry.backend !== tf.getBackend() || recordingGradients() || !int8KernelsAvailable()) return null;
  const inputs: tf.NamedTensorMap = { x, packed: entry.packed };
  if (bias) inputs['bias'] = bias;
  const attrs = { outFeatures: weight.shape[0] as number, inFeatures: weight.shape[1] as number };
  return tf.engine().runKernel(INT8_LINEAR_KERNEL, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
}
