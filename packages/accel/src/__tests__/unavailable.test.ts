// The unavailable path, forced even where the binary exists: a missing binary is reported with a
// reason, registration changes nothing, and tfjs on wasm keeps working.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resetAccelForTests } from '../binding.js';
import { ACCEL_KERNELS, accelKernelsActive, accelStatus, registerAccelKernels } from '../index.js';

const saved = process.env.VL_ACCEL_BINARY;

beforeAll(async () => {
  process.env.VL_ACCEL_BINARY = '/nonexistent/vl_accel.node';
  resetAccelForTests();
  await tf.setBackend('wasm');
  await tf.ready();
});

afterAll(() => {
  if (saved === undefined) delete process.env.VL_ACCEL_BINARY;
  else process.env.VL_ACCEL_BINARY = saved;
  resetAccelForTests();
});

describe('@vl/accel without a binary', () => {
  it('reports unavailable with a reason that says how to build it', () => {
    const status = accelStatus();
    expect(status.available).toBe(false);
    expect(status.note).toMatch(/no native binary/);
    expect(status.note).toMatch(/libopenblas-dev/);
  });

  it('registers nothing and tfjs on wasm still computes', () => {
    const stock = tf.getKernel('BatchMatMul', 'wasm');
    const result = registerAccelKernels(tf);
    expect(result).toMatchObject({ active: false, replaced: [], added: [] });
    expect(result.note).toMatch(/no native binary/);
    expect(accelKernelsActive(tf)).toBe(false);
    expect(tf.getKernel('BatchMatMul', 'wasm')).toBe(stock);
    for (const name of Object.values(ACCEL_KERNELS)) expect(tf.getKernel(name, 'wasm')).toBeUndefined();
    const y = tf.tidy(() => Array.from(tf.matMul(tf.tensor2d([1, 2, 3, 4], [2, 2]), tf.tensor2d([5, 6, 7, 8], [2, 2])).dataSync()));
    expect(y).toEqual([19, 22, 43, 50]);
  });

  it('reports a binary that fails to load, without throwing', () => {
    process.env.VL_ACCEL_BINARY = fileURLToPath(import.meta.url);
    resetAccelForTests();
    const status = accelStatus();
    expect(status.available).toBe(false);
    expect(status.note).toMatch(/failed to load|not a @vl\/accel binary/);
    process.env.VL_ACCEL_BINARY = '/nonexistent/vl_accel.node';
    resetAccelForTests();
  });
});
