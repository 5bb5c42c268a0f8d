// The bridge to @vl/accel's VlAttention kernel (see packages/accel/src/attention.ts): attention in one
// native pass that reads Q, K and V where the projections left them and writes the merged output, for
// inference. Core calls it only when the kernel is registered for the active backend, no gradient tape
// is recording (it has no gradient), and nothing needs the probabilities or dropout.
import * as tf from '@tensorflow/tfjs-core';
import { recordingGradients } from '../runtime/tape.js';

export const NATIVE_ATTENTION_KERNEL = 'VlAttention';

/** Floats: offset of head 0, then batch, head and row strides (column stride 1). */
export type HeadView = readonly [offset: number, batch: number, head: number, row: number];

/** The view of a packed projection [B, T, W] whose heads start at column `offset` ([B, T, 3D] qkv: 0, D, 2D). */
export function packedView(t: tf.Tensor, offset: number, headDim: number): HeadView {
  const [, time, width] = t.shape as [number, number, number];
  return [offset, time * width, headDim, width];
}

/** The view of head-split keys/values [B, H, T, Dh] (the KV cache's layout). */
export function splitView(t: tf.Tensor): HeadView {
  const [, h, time, dh] = t.shape as [number, number, number, number];
  return [0, h * time * dh, time * dh, dh];
}

/** Whether the native kernel may run now (registered for this backend, and no gradient being recorded). */
export function nativeAttentionAvailable(): boolean {
  return tf.getKernel(NATIVE_ATTENTION_KERNEL, tf.getBackend()) !== undefined && !recordingGradients();
}

/** Whether an additive mask broadcasts to [B, H, Tq, Tk] dimension by dimension (what the kernel reads). */
export function maskFits(mask: tf.Tensor | null, want: readonly [number, number, number, number]): boolean {
  if (!mask) return true;
  if (mask.rank > 4 || mask.dtype !== 'float32') return false;
  const dims = [...new Array<number>(4 - mask.rank).fill(1), ...mask.shape];
  return dims.every((d, i) => d === 1 || d === want[i]);
}

export interface NativeAttentionCall {
  q: tf.Tensor;
  qView: HeadView;
  k: tf.Tensor;
  kView: HeadView;
  v: tf.Tensor;
  vView: HeadView;
  /** Batches of k and v. */
  kvBatch: number;
  /** Key/value batch read by each query batch; null: query batch b reads b. */
  kvRows: readonly number[] | null;
  mask: tf.Tensor | null;
  /** The mask's batch dimension is per key/value row (one padding row per image) rather than per query row. */
  maskByKvRow?: boolean;
  batch: number;
  queryLength: number;
  keyLength: number;
  heads: number;
  headDim: number;
  scale: number;
}

/** [B, Tq, H·Dh] attention output. */
export function nativeAttention(c: NativeAttentionCall): tf.Tensor {
  return tf.tidy(() => {
    const inputs: Record<string, tf.Tensor> = { q: c.q, k: c.k, v: c.v };
    if (c.mask) inputs.mask = c.mask;
    if (c.kvRows) inputs.kvRows = tf.tensor1d(c.kvRows as number[], 'int32');
    const attrs = {
      heads: c.heads,
      headDim: c.headDim,
      scale: c.scale,
      queryBatch: c.batch,
      queryLength: c.queryLength,
      keyLength: c.keyLength,
      kvBatch: c.kvBatch,
      qView: c.qView,
      kView: c.kView,
      vView: c.vView,
      maskByKvRow: c.maskByKvRow ?? false,
    };
    return tf.engine().runKernel(NATIVE_ATTENTION_KERNEL, inputs as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
  });
}
