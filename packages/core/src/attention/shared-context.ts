// Cross-attention where several query rows share one context row (captions of one image, beams of one
// caption): keys/values stay [S, H, Tk, Dh], one per context row, instead of being projected or copied
// per query row. When the rows come in equal consecutive groups (row i uses context row ⌊i/g⌋, the
// layout of HF's `repeat_interleave` expansion) the g queries of a group are stacked along the query
// axis and attend in one matmul per context row.
import * as tf from '@tensorflow/tfjs-core';
import { softmaxLastAxis } from '../nn/functional.js';

/** g when `rows` is [0×g, 1×g, …, (S−1)×g]; 0 otherwise. */
export function contextGroupSize(rows: readonly number[], sources: number): number {
  if (sources <= 0 || rows.length % sources !== 0) return 0;
  const g = rows.length / sources;
  for (let i = 0; i < rows.length; i++) if (rows[i] !== Math.floor(i / g)) return 0;
  return g;
}

export interface SharedContextAttention {
  /** [B, Tq, H, Dh]: reshape to [B, Tq, H·Dh] for the output projection. */
  weighted: tf.Tensor;
  /** Softmax probabilities in the usual [B, H, Tq, Tk] layout (computed on demand). */
  probs: () => tf.Tensor;
}

/**
 * q [B, H, Tq, Dh] over k, v [S, H, Tk, Dh] with B = S·g in consecutive groups. `mask` must broadcast
 * to [S, 1, 1, Tk] (one padding row per context row, or none); returns null when the rows or the mask do
 * not allow the grouped form, and the caller gathers keys/values per row instead. Call inside tf.tidy.
 */
export function attendSharedContext(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  mask: tf.Tensor | null,
  rows: readonly number[],
  scale: number,
  dropout: (probs: tf.Tensor) => tf.Tensor = (p) => p,
): SharedContextAttention | null {
  const [b, h, tq, dh] = q.shape as [number, number, number, number];
  const [s, , tk] = k.shape as [number, number, number, number];
  if (rows.length !== b) return null;
  const g = contextGroupSize(rows, s);
  if (g === 0) return null;
  if (mask && (mask.rank !== 4 || (mask.shape[0] !== 1 && mask.shape[0] !== s) || mask.shape[1] !== 1 || mask.shape[2] !== 1)) return null;
  // [S·g, H, Tq, Dh] → [S, H, g·Tq, Dh]: a group's queries side by side, attending to their row's keys.
  const grouped = tf.reshape(tf.transpose(tf.reshape(q, [s, g, h, tq, dh]), [0, 2, 1, 3, 4]), [s, h, g * tq, dh]);
  let scores = tf.mul(tf.matMul(grouped, k, false, true), scale); // [S, H, g·Tq, Tk]
  if (mask) scores = tf.add(scores, mask);
  const probs = softmaxLastAxis(scores);
  const out = tf.matMul(dropout(probs), v); // [S, H, g·Tq, Dh]
  const weighted = tf.reshape(tf.transpose(tf.reshape(out, [s, h, g, tq, dh]), [0, 2, 3, 1, 4]), [b, tq, h, dh]);
  return {
    weighted,
    probs: () => tf.reshape(tf.transpose(tf.reshape(probs, [s, h, g, tq, tk]), [0, 2, 1, 3, 4]), [b, h, tq, tk]),
  };
}
