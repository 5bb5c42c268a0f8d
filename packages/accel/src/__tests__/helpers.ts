// Test helpers: one function and its gradients evaluated on cpu or wasm (@vl/testing's evaluateOnActiveBackend
// after tf.setBackend), scale-aware comparison, and the suite hook that registers the kernels.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { type Evaluation, evaluateOnActiveBackend, type HostArray, type TensorFn } from '@vl/testing';
import { afterAll, beforeAll, expect } from 'vitest';
import { registerAccelKernels, unregisterAccelKernels } from '../index.js';

/** For the suite that calls it: @vl/accel's kernels registered on wasm before its tests and unregistered after them. */
export function useAccelKernelsOnWasm(): void {
  beforeAll(async () => {
    await tf.setBackend('wasm');
    await tf.ready();
    registerAccelKernels(tf);
  });
  afterAll(() => {
    unregisterAccelKernels(tf);
  });
}

/** `f` on `backend` (already set up by the caller: kernels registered or not); see evaluateOnActiveBackend. */
export async function evaluate(backend: 'cpu' | 'wasm', f: TensorFn, inputs: HostArray[], gradWrt: number[] = []): Promise<Evaluation> {
  await tf.setBackend(backend);
  await tf.ready();
  return evaluateOnActiveBackend(backend, f, inputs, gradWrt);
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
    if (Number.isNaN(e)) continue;
    diff = Math.max(diff, Math.abs(a - e));
    scale = Math.max(scale, Math.abs(e));
  }
  return diff / Math.max(scale, 1e-6);
}

export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, rtol = 1e-4): void {
  const err = relativeError(actual, expected);
  expect(err, `${what}: relative error ${err.toExponential(2)}`).toBeLessThanOrEqual(rtol);
}

/**
 * `wasmFn` on wasm against `cpuFn` on cpu (the same function unless a fused kernel is compared
 * with its composed reference): shapes, values and gradients.
 */
export async function expectParity(
  name: string,
  wasmFn: TensorFn,
  inputs: HostArray[],
  gradWrt: number[] = [],
  options: { rtol?: number; cpuFn?: TensorFn } = {},
): Promise<{ cpu: Evaluation; wasm: Evaluation }> {
  const cpu = await evaluate('cpu', options.cpuFn ?? wasmFn, inputs, gradWrt);
  const wasm = await evaluate('wasm', wasmFn, inputs, gradWrt);
  expect(wasm.shape, `${name}: shape`).toEqual(cpu.shape);
  expectClose(wasm.value, cpu.value, `${name}: forward`, options.rtol);
  cpu.grads.forEach((g, i) => expectClose(wasm.grads[i] as number[], g, `${name}: grad of input ${gradWrt[i]}`, options.rtol));
  return { cpu, wasm };
}
