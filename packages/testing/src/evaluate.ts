// One function and the gradient of a seeded weighted sum of its output, evaluated from host inputs on the
// backend already active, with a leak check: the common step of the backend-parity tests (each suite switches
// backends its own way: plain tf.setBackend, or core's initRuntime with or without its wasm kernels).
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { type HostArray, seeded } from './host-arrays.js';

export interface Evaluation {
  shape: number[];
  value: number[];
  /** d(Σ f(x)·w)/dx for each input listed in gradWrt, in order; empty when not requested. */
  grads: number[][];
}

export type TensorFn = (...inputs: tf.Tensor[]) => tf.Tensor;

/**
 * Runs `f` on the active backend (named `backend` in the messages) and, when `gradWrt` lists input positions,
 * the gradient of a seeded weighted sum of its output; inputs listed in `intInputs` are int32 tensors of those
 * values. Asserts that no tensor and no backend buffer outlives the call.
 */
export function evaluateOnActiveBackend(
  backend: string,
  f: TensorFn,
  inputs: HostArray[],
  gradWrt: number[] = [],
  intInputs?: Record<number, number[]>,
): Evaluation {
  const before = tf.memory();
  const result = tf.tidy(() => {
    const xs = inputs.map((h, i) =>
      intInputs?.[i] ? tf.tensor(intInputs[i] as number[], h.shape, 'int32') : tf.tensor(h.values, h.shape),
    );
    const y = f(...xs);
    const value = Array.from(y.dataSync());
    const w = tf.tensor(seeded(y.shape, 999).values, y.shape);
    let grads: number[][] = [];
    if (gradWrt.length > 0) {
      const g = tf.grads((...sub: tf.Tensor[]) => {
        const all = xs.map((x, i) => {
          const at = gradWrt.indexOf(i);
          return at >= 0 ? (sub[at] as tf.Tensor) : x;
        });
        return tf.sum(tf.mul(f(...all), w));
      });
      grads = g(gradWrt.map((i) => xs[i] as tf.Tensor)).map((t) => Array.from(t.dataSync()));
    }
    return { shape: y.shape, value, grads };
  });
  const after = tf.memory();
  expect(after.numTensors, `tensor leak on ${backend}`).toBe(before.numTensors);
  expect(after.numDataBuffers, `backend buffer leak on ${backend}`).toBe(before.numDataBuffers);
  return result;
}
