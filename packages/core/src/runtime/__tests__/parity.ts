// Test helpers: seeded inputs as plain arrays (tensors cannot cross backends), running a function
// and its gradients on one backend with leak checks, and relative comparison.
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { initRuntime, type InitRuntimeOptions, type RuntimeInfo } from '../backend.js';

export interface HostArray {
  values: Float32Array;
  shape: number[];
}

/** Uniform values in [lo, hi) from a small LCG, so both backends get bit-identical inputs. */
export function seeded(shape: number[], seed: number, lo = -1, hi = 1): HostArray {
  const size = shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(size);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    values[i] = lo + ((s >>> 8) / 16777216) * (hi - lo);
  }
  return { values, shape };
}

/**
 * Switches backend for a test with @vl/accel's native kernels off, so wasm runs core's kernels
 * (where accel is wired, it would otherwise register over them). `accel` goes through a variable:
 * runtimes without the option just ignore it.
 */
export async function useRuntime(backend: 'cpu' | 'wasm', wasmKernels = true): Promise<RuntimeInfo> {
  const options: InitRuntimeOptions & { accel?: boolean } = { backend, wasmKernels, accel: false };
  return initRuntime(options);
}

export interface Evaluation {
  shape: number[];
  value: number[];
  /** d(sum(f(x)·w))/dx for each differentiable input, in order; empty when not requested. */
  grads: number[][];
}

export type TensorFn = (...inputs: tf.Tensor[]) => tf.Tensor;

/**
 * Evaluates `f` (and, when `gradWrt` lists input positions, the gradient of a weighted sum of its
 * output) on `backend`, asserting that no tensor and no backend buffer outlives the call.
 */
export async function evaluate(
  backend: 'cpu' | 'wasm',
  f: TensorFn,
  inputs: HostArray[],
  gradWrt: number[] = [],
  options: { wasmKernels?: boolean; intInputs?: Record<number, number[]> } = {},
): Promise<Evaluation> {
  await useRuntime(backend, options.wasmKernels ?? true);
  const before = tf.memory();
  const result = tf.tidy(() => {
    const xs = inputs.map((h, i) =>
      options.intInputs?.[i] ? tf.tensor(options.intInputs[i] as number[], h.shape, 'int32') : tf.tensor(h.values, h.shape),
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

/** max|a − e| / max(max|e|, 1e-6): scale-aware, so tiny entries of a large output do not dominate. */
function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i] as number;
    const e = expected[i] as number;
    if (Number.isNaN(a) !== Number.isNaN(e)) return Infinity;
    diff = Math.max(diff, Math.abs(a - e));
    scale = Math.max(scale, Math.abs(e));
  }
  return diff / Math.max(scale, 1e-6);
}

export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, rtol = 1e-4): void {
  const err = relativeError(actual, expected);
  expect(err, `${what}: relative error ${err.toExponential(2)}`).toBeLessThanOrEqual(rtol);
}

/** Runs on cpu and on wasm (core kernels installed) and expects the same values and gradients. */
export async function expectParity(
  name: string,
  f: TensorFn,
  inputs: HostArray[],
  gradWrt: number[] = [],
  options: { rtol?: number; intInputs?: Record<number, number[]> } = {},
): Promise<{ cpu: Evaluation; wasm: Evaluation }> {
  const cpu = await evaluate('cpu', f, inputs, gradWrt, options);
  const wasm = await evaluate('wasm', f, inputs, gradWrt, options);
  expect(wasm.shape, `${name}: shape`).toEqual(cpu.shape);
  expectClose(wasm.value, cpu.value, `${name}: forward`, options.rtol);
  cpu.grads.forEach((g, i) => expectClose(wasm.grads[i] as number[], g, `${name}: grad of input ${gradWrt[i]}`, options.rtol));
  return { cpu, wasm };
}

/** float64 batched matmul with numpy broadcasting of the batch dims, the reference for odd batches. */
export function referenceMatMul(a: HostArray, b: HostArray, transposeA: boolean, transposeB: boolean): number[] {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = a.shape[transposeA ? ra - 1 : ra - 2] as number;
  const k = a.shape[transposeA ? ra - 2 : ra - 1] as number;
  const n = b.shape[transposeB ? rb - 2 : rb - 1] as number;
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const rank = Math.max(batchA.length, batchB.length);
  const padA = [...Array<number>(rank - batchA.length).fill(1), ...batchA];
  const padB = [...Array<number>(rank - batchB.length).fill(1), ...batchB];
  const outBatch = padA.map((d, i) => Math.max(d, padB[i] as number));
  const total = outBatch.reduce((x, y) => x * y, 1);
  const out: number[] = [];
  for (let flat = 0; flat < total; flat++) {
    let rest = flat;
    let ia = 0;
    let ib = 0;
    let strideA = 1;
    let strideB = 1;
    for (let d = rank - 1; d >= 0; d--) {
      const size = outBatch[d] as number;
      const idx = rest % size;
      rest = Math.floor(rest / size);
      const da = padA[d] as number;
      const db = padB[d] as number;
      ia += (da === 1 ? 0 : idx) * strideA;
      ib += (db === 1 ? 0 : idx) * strideB;
      strideA *= da;
      strideB *= db;
    }
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) {
          const av = a.values[ia * m * k + (transposeA ? p * m + i : i * k + p)] as number;
          const bv = b.values[ib * k * n + (transposeB ? j * k + p : p * n + j)] as number;
          s += av * bv;
        }
        out.push(s);
      }
    }
  }
  return out;
}
