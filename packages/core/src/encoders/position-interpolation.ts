// Resizing a ViT's learned position-embedding grid to another image size: bicubic with
// PyTorch's `F.interpolate(mode='bicubic', align_corners=False)` weights (cubic convolution,
// A = -0.75, edge indices clamped), as timm `resample_abs_pos_embed` (antialias off), ALBEF
// `interpolate_pos_embed` and HF `interpolate_pos_encoding` do. Computed as two matMuls with
// precomputed weight matrices, so it runs and differentiates on every backend.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';

const A = -0.75;

function cubicNear(x: number): number {
  // |x| ≤ 1
  return ((A + 2) * x - (A + 3)) * x * x + 1;
}

function cubicFar(x: number): number {
  // 1 < |x| < 2
  return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
}

/**
 * The [outSize, inSize] matrix M with out = M · in for 1-D bicubic resizing. Rows sum to 1; at
 * outSize == inSize it is the identity (source = destination, fraction 0).
 */
export function bicubicMatrix(inSize: number, outSize: number): Float32Array {
  const m = new Float32Array(outSize * inSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const src = (o + 0.5) * scale - 0.5;
    const i0 = Math.floor(src);
    const t = src - i0;
    const weights = [cubicFar(t + 1), cubicNear(t), cubicNear(1 - t), cubicFar(2 - t)];
    for (let k = 0; k < 4; k++) {
      const idx = Math.min(Math.max(i0 - 1 + k, 0), inSize - 1);
      m[o * inSize + idx] = (m[o * inSize + idx] as number) + (weights[k] as number);
    }
  }
  return m;
}

/** Bicubic resize of a grid [h, w, D] to [outH, outW, D]. */
export function resizeGridBicubic(grid: tf.Tensor, outH: number, outW: number): tf.Tensor {
  const [h, w, d] = grid.shape as [number, number, number];
  return tf.tidy(() => {
    const mh = tf.tensor2d(bicubicMatrix(h, outH), [outH, h]);
    const mw = tf.tensor2d(bicubicMatrix(w, outW), [outW, w]);
    const rows = tf.reshape(tf.matMul(mh, tf.reshape(grid, [h, w * d])), [outH, w, d]); // [outH, w, D]
    const cols = tf.reshape(tf.transpose(rows, [1, 0, 2]), [w, outH * d]); // [w, outH·D]
    const out = tf.reshape(tf.matMul(mw, cols), [outW, outH, d]); // [outW, outH, D]
    return tf.transpose(out, [1, 0, 2]); // [outH, outW, D]
  });
}

/**
 * Position embeddings [1, prefix + h·w, D] for a grid of `to` patches instead of `from`. The
 * `prefix` leading rows (class token) are kept as they are. At the native grid it returns the
 * input itself, so nothing changes by even a rounding error.
 */
export function interpolatePositionEmbedding(
  pos: tf.Tensor,
  from: readonly [number, number],
  to: readonly [number, number],
  prefix = 1,
): tf.Tensor {
  const [fh, fw] = from;
  const [th, tw] = to;
  const d = pos.shape[2] as number;
  if (pos.rank !== 3 || pos.shape[1] !== prefix + fh * fw) {
    throw new VlError('SHAPE_MISMATCH', `position embedding [${pos.shape}] does not hold ${prefix} + ${fh}×${fw} rows`, {
      subject: 'interpolatePositionEmbedding',
    });
  }
  if (fh === th && fw === tw) return pos;
  return tf.tidy(() => {
    const [head, grid] = tf.split(pos, [prefix, fh * fw], 1); // [1, prefix, D], [1, h·w, D]
    const resized = resizeGridBicubic(tf.reshape(grid as tf.Tensor, [fh, fw, d]), th, tw); // [th, tw, D]
    return tf.concat([head as tf.Tensor, tf.reshape(resized, [1, th * tw, d])], 1);
  });
}
