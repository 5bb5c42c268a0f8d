// Test helpers: running a function and its gradients on one backend (@vl/testing's evaluateOnActiveBackend
// after initRuntime) and relative comparison.
import { type Evaluation, evaluateOnActiveBackend, type HostArray, type TensorFn } from '@vl/testing';
import { expect } from 'vitest';
import { initRuntime, type InitRuntimeOptions, type RuntimeInfo } from '../backend.js';

/**
 * Switches backend for a test with @vl/accel's native kernels off, so wasm runs core's kernels
 * (where accel is wired, it would otherwise register over them). `accel` goes through a variable:
 * runtimes without the option just ignore it.
 */
export async function useRuntime(backend: 'cpu' | 'wasm', wasmKernels = true): Promise<RuntimeInfo> {
  const options: InitRuntimeOptions & { accel?: boolean } = { backend, wasmKernels, accel: false };
  return initRuntime(options);
}

/** `f` on `backend` through initRuntime (core's wasm kernels unless `wasmKernels: false`); see evaluateOnActiveBackend. */
export async function evaluate(
  backend: 'cpu' | 'wasm',
  f: TensorFn,
  inputs: HostArray[],
  gradWrt: number[] = [],
  options: { wasmKernels?: boolean; intInputs?: Record<number, number[]> } = {},
): Promise<Evaluation> {
  await useRuntime(backend, options.wasmKernels ?? true);
  return evaluateOnActiveBackend(backend, f, inputs, gradWrt, options.intInputs);
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
