// Test helpers shared by the attention, blocks and encoders tests: finite-difference gradient
// checks, leak checks, closeness.
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { Rng } from '../../runtime/rng.js';

export function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  expect(a.shape).toEqual(b.shape);
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] as number);
}

export function randomTensor(shape: number[], rng: Rng, scale = 1): tf.Tensor {
  const n = shape.reduce((p, c) => p * c, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = rng.normal() * scale;
  return tf.tensor(data, shape);
}

/**
 * A scalar probe of an output: sum(out ⊙ W) with fixed random W, so every output element
 * contributes to the gradient with its own weight (a plain sum would hide errors that cancel,
 * e.g. through LayerNorm or softmax, whose outputs sum to constants).
 */
export function probe(shape: number[], seed: number): (out: tf.Tensor) => tf.Scalar {
  const w = tf.keep(randomTensor(shape, new Rng(seed)));
  return (out) => tf.sum(tf.mul(out, w));
}

export interface GradCheckResult {
  checked: number;
  worst: { name: string; index: number; analytic: number; numeric: number; err: number } | null;
}

/**
 * Compares tf.variableGrads with central differences (f(x+h) - f(x-h)) / 2h at `samples`
 * random coordinates of every variable.
 *
 * Tolerance, justified: tfjs computes in float32, so f (|f| ≲ 10 for these small inputs) carries
 * rounding noise ≈ 1e-6; divided by 2h = 2e-2 that is ≈ 5e-5 in the numeric slope. Truncation
 * error of central differences is h²/6·f''' ≈ 1.7e-5·f''', and f''' of softmax/GELU/LayerNorm
 * compositions at O(1) inputs stays ≲ 10, so ≈ 2e-4. A wrong gradient (missing term, transposed
 * weight, wrong head split) is off by O(|g|), far outside atol 2e-3 + rtol 2e-2.
 */
export function gradCheck(
  f: () => tf.Scalar,
  vars: Record<string, tf.Variable>,
  options: { step?: number; samples?: number; seed?: number; atol?: number; rtol?: number } = {},
): GradCheckResult {
  const h = options.step ?? 1e-2;
  const samples = options.samples ?? 4;
  const atol = options.atol ?? 2e-3;
  const rtol = options.rtol ?? 2e-2;
  const rng = new Rng(options.seed ?? 7);
  const list = Object.values(vars);
  const { grads } = tf.variableGrads(f, list);
  const byName = new Map(Object.entries(vars).map(([k, v]) => [k, (grads[v.name] as tf.Tensor).dataSync()]));
  tf.dispose(Object.values(grads));
  const evalF = () => tf.tidy(() => f().dataSync()[0] as number);
  const result: GradCheckResult = { checked: 0, worst: null };
  for (const [name, v] of Object.entries(vars)) {
    const base = v.dataSync().slice();
    const analyticAll = byName.get(name) as Float32Array;
    for (let s = 0; s < Math.min(samples, base.length); s++) {
      const index = rng.int(base.length);
      const set = (delta: number) => {
        const data = base.slice();
        data[index] = (data[index] as number) + delta;
        tf.tidy(() => v.assign(tf.tensor(data, v.shape)));
      };
      set(h);
      const plus = evalF();
      set(-h);
      const minus = evalF();
      set(0);
      const numeric = (plus - minus) / (2 * h);
      const analytic = analyticAll[index] as number;
      const err = Math.abs(analytic - numeric);
      const bound = atol + rtol * Math.abs(analytic);
      if (!result.worst || err / bound > result.worst.err) result.worst = { name, index, analytic, numeric, err: err / bound };
      result.checked++;
      expect(err, `${name}[${index}]: analytic ${analytic} vs numeric ${numeric}`).toBeLessThanOrEqual(bound);
    }
  }
  return result;
}

/**
 * Runs `fn` once to warm up (kernels, caches), then again and checks the engine holds exactly
 * the tensors the second call returned (which are then disposed).
 */
export function expectNoLeak(fn: () => tf.TensorContainer): void {
  tf.dispose(fn());
  const before = tf.memory().numTensors;
  const out = fn();
  const returned = countTensors(out);
  expect(tf.memory().numTensors - before).toBe(returned);
  tf.dispose(out);
  expect(tf.memory().numTensors).toBe(before);
}

function countTensors(c: tf.TensorContainer): number {
  if (c instanceof tf.Tensor) return 1;
  if (c == null || typeof c !== 'object') return 0;
  const values = Array.isArray(c) ? c : Object.values(c as Record<string, tf.TensorContainer>);
  return values.reduce((n: number, v) => n + countTensors(v as tf.TensorContainer), 0);
}
