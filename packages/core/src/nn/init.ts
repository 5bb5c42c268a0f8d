// Parameter initialisers drawn from an explicit Rng in JS, so a seed gives the same weights on
// every backend (tfjs' own random ops differ between backends).
import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../runtime/rng.js';

let skipping = 0;

/**
 * Builds modules whose every parameter a checkpoint is about to overwrite: inside `build`, the
 * initialisers below return zeros instead of drawing. Drawing is JS work per element — about 18 s of
 * CPU for BLIP-base's 224 M weights, 40× the time to read its checkpoint — so loaders build this way.
 * Only for modules that are then loaded strictly (a parameter the checkpoint lacks would stay zero).
 */
export function withoutWeightInit<T>(build: () => T): T {
  skipping++;
  try {
    return build();
  } finally {
    skipping--;
  }
}

/** True inside `withoutWeightInit`: hand-written initialisers (loops over `rng`) skip their draws too. */
export function weightInitSkipped(): boolean {
  return skipping > 0;
}

/**
 * What a skipped initialiser returns: zeros (a parameter a checkpoint may lack stays zero), made by
 * the backend's Fill kernel. tf.zeros would build the zeros as a JS array first and then copy it
 * into the backend — on wasm, a second pass over every weight's memory just to be overwritten.
 */
function placeholder(shape: number[]): tf.Tensor {
  return tf.fill(shape, 0, 'float32');
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Normal(0, std) truncated to [-2·std, 2·std] by redrawing, as tf.truncatedNormal does; BERT and
 * ViT initialise with std 0.02 (timm's bounds ±2 are absolute and therefore never bind at 0.02).
 */
export function truncNormal(shape: number[], rng: Rng, std = 0.02): tf.Tensor {
  if (skipping) return placeholder(shape);
  const data = new Float32Array(sizeOf(shape));
  for (let i = 0; i < data.length; i++) {
    let v = rng.normal();
    while (v < -2 || v > 2) v = rng.normal();
    data[i] = v * std;
  }
  return tf.tensor(data, shape, 'float32');
}

export function normal(shape: number[], rng: Rng, std = 0.02, mean = 0): tf.Tensor {
  if (skipping) return placeholder(shape);
  const data = new Float32Array(sizeOf(shape));
  for (let i = 0; i < data.length; i++) data[i] = mean + std * rng.normal();
  return tf.tensor(data, shape, 'float32');
}

/** Uniform(-bound, bound). */
export function uniform(shape: number[], rng: Rng, bound: number): tf.Tensor {
  if (skipping) return placeholder(shape);
  const data = new Float32Array(sizeOf(shape));
  for (let i = 0; i < data.length; i++) data[i] = (rng.uniform() * 2 - 1) * bound;
  return tf.tensor(data, shape, 'float32');
}
