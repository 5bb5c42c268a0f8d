// Stateless tensor functions shared by the layers (and tested cpu vs wasm by the runtime tests).
import * as tf from '@tensorflow/tfjs-core';
import { int8Linear } from './int8-weights.js';

const SQRT1_2 = Math.SQRT1_2;

/**
 * Whether the active backend has a fused kernel (registered by the optional @vl/accel addon:
 * VlGelu, VlLayerNorm, VlSoftmax, each with its gradient). Without it the composed tf ops run.
 */
function hasKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

/** Softmax over the last axis; fused when the backend has `VlSoftmax`. */
export function softmaxLastAxis(x: tf.Tensor): tf.Tensor {
  if (x.dtype === 'float32' && hasKernel('VlSoftmax')) return tf.engine().runKernel('VlSoftmax', { logits: x }) as tf.Tensor;
  return tf.softmax(x, -1);
}
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** Exact GELU, x·Φ(x) with the erf form (BERT, BLIP, ViT). */
export function gelu(x: tf.Tensor): tf.Tensor {
  if (x.dtype === 'float32' && hasKernel('VlGelu')) return tf.engine().runKernel('VlGelu', { x }, { approximate: false }) as tf.Tensor;
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, SQRT1_2)))));
}

/** GELU with the tanh approximation (GPT-2, some CoCa/BEiT-3 variants). */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  if (x.dtype === 'float32' && hasKernel('VlGelu')) return tf.engine().runKernel('VlGelu', { x }, { approximate: true }) as tf.Tensor;
  return tf.tidy(() => {
    const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), SQRT_2_OVER_PI);
    return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner)));
  });
}

/** LayerNorm over the last axis: (x - mean) / sqrt(var + eps) * weight + bias (biased variance, as PyTorch). */
export function layerNorm(x: tf.Tensor, weight: tf.Tensor | null, bias: tf.Tensor | null, eps: number): tf.Tensor {
  if (weight && bias && x.dtype === 'float32' && hasKernel('VlLayerNorm')) {
    return tf.engine().runKernel('VlLayerNorm', { x, gamma: weight, beta: bias }, { eps }) as tf.Tensor;
  }
  return tf.tidy(() => {
    const axis = x.rank - 1;
    const mean = tf.mean(x, axis, true);
    const centered = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centered), axis, true);
    let y = tf.mul(centered, tf.rsqrt(tf.add(variance, eps)));
    if (weight) y = tf.mul(y, weight);
    if (bias) y = tf.add(y, bias);
    return y;
  });
}

/**
 * y = x·Wᵀ + b with W stored [out, in] as in PyTorch. Leading dimensions are flattened to 2-D
 * first because the gradient of a broadcast batched matMul fails inside tfjs-core.
 */
export function linear(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor | null): tf.Tensor {
  return tf.tidy(() => {
    // A weight quantised for inference (nn/quantize.ts) runs through its int8 copy when it may.
    const quantized = int8Linear(x, weight, bias);
    if (quantized) return quantized;
    const inFeatures = x.shape[x.rank - 1] as number;
    const outFeatures = weight.shape[0] as number;
    const flat = x.rank === 2 ? x : tf.reshape(x, [-1, inFeatures]);
    // With a bias, the fused form: native matmul kernels write the bias first and accumulate into it,
    // saving a pass over the output (tf.fused.matMul has the same gradients as matMul + add).
    const y = bias ? tf.fused.matMul({ a: flat, b: weight, transposeB: true, bias }) : tf.matMul(flat, weight, false, true);
    return x.rank === 2 ? y : tf.reshape(y, [...x.shape.slice(0, -1), outFeatures]);
  });
}
