// Parameter initialisers drawn from an explicit Rng in JS, so a seed gives the same weights on
// every backend (tfjs' own random ops differ between backends).
import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../runtime/rng.js';

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Normal(0, std) truncated to [-2·std, 2·std] by redrawing, as tf.truncatedNormal does; BERT and
 * ViT initialise with std 0.02 (timm's bounds ±2 are absolute and therefore never bind at 0.02).
 */
export function truncNormal(shape: number[], rng: Rng, std = 0.02): tf.Tensor {
  const data = new Float32Array(sizeOf(shape));
  for (let i = 0; i < data.length; i++) {
    let v = rng.normal();
    while (v < -2 || v > 2) v = rng.normal();
    data[i] = v * std;
  }
  return tf.tensor(data, shape, 'float32');
}

export function normal(shape: number[], rng: Rng, std = 0.02, mean = 0): tf.Tensor {
  const data = new Float32Array(sizeOf(shape));
  for (let i = 0; i < data.length; i++) data[i] = mean + std * rng.normal();
  return tf.tensor(data, shape, 'float32');
}

/** Uniform(-bound, bound). */
export function uniform(shape: number[], rng: Rng, bound: number): tf.Tensor {
  const data = new Float32Array(sizeOf(shape));
  for (let i = 0; i < data.length; i++) data[i] = (rng.uniform() * 2 - 1) * bound;
  return tf.tensor(data, shape, 'float32');
}
