// VLMo's relative position bias (`vlmo_module.py` `build_relative_position_embed`, `get_rel_pos_bias`):
// one table [numRel + 2·M + 2, depth·heads] shared by image, text and fused sequences, read through an
// index per sequence kind. Column l·heads + h is the bias of layer l, head h. Here g is the patch grid
// side, numRel = (2g−1)² + 3 and M = max_text_len_of_initckpt (fixtures/vlmo-official README, "Notes
// for the port"). Indices are host arrays, built once per length and cached; only the gather is a tensor op.
import * as tf from '@tensorflow/tfjs-core';

/** Rows the image part uses: every (Δrow, Δcol) of a g×g grid, plus CLS→patch, patch→CLS and CLS→CLS. */
export function numRelativeDistance(grid: number): number {
  return (2 * grid - 1) * (2 * grid - 1) + 3;
}

/** All rows of the table: image rows, 2·M text rows, then text→image and image→text. */
export function allNumRelativeDistance(grid: number, maxTextLenOfInitckpt: number): number {
  return numRelativeDistance(grid) + 2 * maxTextLenOfInitckpt + 2;
}

/** A square index matrix, row-major. */
export interface RelativeIndex {
  size: number;
  data: Int32Array;
}

/** Image index [g²+1, g²+1]: patches by grid offset; the CLS row/column/corner use the last three image rows. */
export function imageRelativePositionIndex(grid: number): RelativeIndex {
  const numRel = numRelativeDistance(grid);
  const n = grid * grid + 1;
  const data = new Int32Array(n * n);
  for (let a = 0; a < grid * grid; a++) {
    const ra = Math.floor(a / grid);
    const ca = a % grid;
    for (let b = 0; b < grid * grid; b++) {
      const rb = Math.floor(b / grid);
      const cb = b % grid;
      data[(a + 1) * n + (b + 1)] = (ra - rb + grid - 1) * (2 * grid - 1) + (ca - cb + grid - 1);
    }
  }
  for (let j = 0; j < n; j++) data[j] = numRel - 3; // CLS row
  for (let i = 0; i < n; i++) data[i * n] = numRel - 2; // CLS column
  data[0] = numRel - 1;
  return { size: n, data };
}

/**
 * Text index [T, T] for T ≤ max_text_len: (j − i) + M + numRel between tokens i, j ≥ 1; the [CLS] row,
 * column and corner use the table's last three rows. Depends only on i and j, so a shorter text's
 * index is the top-left block of the longer one.
 */
export function textRelativePositionIndex(length: number, grid: number, maxTextLenOfInitckpt: number): RelativeIndex {
  const numRel = numRelativeDistance(grid);
  const all = allNumRelativeDistance(grid, maxTextLenOfInitckpt);
  const data = new Int32Array(length * length);
  for (let i = 1; i < length; i++) for (let j = 1; j < length; j++) data[i * length + j] = j - i + maxTextLenOfInitckpt + numRel;
  for (let j = 0; j < length; j++) data[j] = all - 3;
  for (let i = 0; i < length; i++) data[i * length] = all - 2;
  if (length > 0) data[0] = all - 1;
  return { size: length, data };
}

/** Fused index [T+P, T+P] = [[text, numRel], [numRel+1, image]]: text first, one row per direction across modalities. */
export function fusionRelativePositionIndex(textLength: number, grid: number, maxTextLenOfInitckpt: number): RelativeIndex {
  const numRel = numRelativeDistance(grid);
  const text = textRelativePositionIndex(textLength, grid, maxTextLenOfInitckpt);
  const image = imageRelativePositionIndex(grid);
  const t = textLength;
  const p = image.size;
  const n = t + p;
  const data = new Int32Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let v: number;
      if (i < t && j < t) v = text.data[i * t + j]!;
      else if (i < t) v = numRel;
      else if (j < t) v = numRel + 1;
      else v = image.data[(i - t) * p + (j - t)]!;
      data[i * n + j] = v;
    }
  }
  return { size: n, data };
}

/**
 * The bias of every layer for one index: table [R, depth·heads] → depth tensors [1, heads, N, N]
 * (`F.embedding(index, table).permute(2, 0, 1).chunk(depth)`), to add to the attention scores.
 */
export function relativePositionBias(table: tf.Tensor, index: RelativeIndex, depth: number, heads: number): tf.Tensor[] {
  const n = index.size;
  return tf.tidy(() => {
    const rows = tf.gather(table, tf.tensor1d(index.data, 'int32')); // [N·N, depth·heads]
    const all = tf.transpose(tf.reshape(rows, [n, n, depth, heads]), [2, 3, 0, 1]); // [depth, heads, N, N]
    return tf.unstack(all).map((layer) => tf.expandDims(layer, 0)); // depth × [1, heads, N, N]
  });
}
