// quantizeInt8: Linear layers run through @vl/accel's VlInt8Linear once quantised — close to the float
// model, not equal to it — and fall back to float wherever int8 must not run: under a gradient tape
// (gradients equal the float model's), after a weight changes, after releaseInt8, on a backend without
// the kernel (quantizeInt8 itself refuses there). The int8 copies are freed with the model.
import * as tf from '@tensorflow/tfjs-core';
import { countKernelCalls, type KernelCallCounter } from '@vl/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isVlError } from '../../errors.js';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { INT8_LINEAR_KERNEL, int8KernelsAvailable } from '../int8-weights.js';
import { Linear } from '../layers.js';
import { Module } from '../module.js';
import { int8LayerCount, quantizeInt8, releaseInt8 } from '../quantize.js';

class TwoLayers extends Module {
  readonly up: Linear;
  readonly down: Linear;
  constructor(rng: Rng) {
    super();
    this.up = this.registerModule('up', new Linear(24, 40, rng));
    this.down = this.registerModule('down', new Linear(40, 7, rng, { bias: false }));
    const r = new Rng(9);
    for (const [, p] of this.namedParameters())
      tf.tidy(() =>
        p.assign(
          tf.tensor(
            Float32Array.from({ length: p.size }, () => r.normal() * 0.3),
            p.shape,
          ),
        ),
      );
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.down.forward(tf.relu(this.up.forward(x))));
  }
}

// Decided before the tests are collected: the int8 tests run exactly when @vl/accel loaded.
await initRuntime({ backend: 'wasm' });
const kernel = tf.getKernel(INT8_LINEAR_KERNEL, 'wasm');
/** The int8 kernel wrapped to count its calls, while the tests run. */
let counted: KernelCallCounter;

beforeAll(() => {
  counted = countKernelCalls(INT8_LINEAR_KERNEL, 'wasm');
});

afterAll(() => {
  counted.restore();
});

const input = () =>
  tf.tensor(
    Float32Array.from({ length: 3 * 5 * 24 }, (_, i) => Math.sin(i * 0.37) * 1.5),
    [3, 5, 24],
  );

function relativeError(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.sum(tf.abs(tf.sub(a, b))).dataSync()[0]! / tf.sum(tf.abs(b)).dataSync()[0]!);
}

it('has the int8 kernels exactly when @vl/accel loaded (VL_ACCEL_REQUIRE=1 requires them)', () => {
  if (process.env.VL_ACCEL_REQUIRE === '1') expect(kernel).toBeDefined();
  expect(int8KernelsAvailable()).toBe(kernel !== undefined);
});

describe.runIf(kernel !== undefined)('quantizeInt8 with the native kernels', () => {
  it('runs every Linear through the int8 kernel, within quantisation error of the float model', () => {
    const model = new TwoLayers(new Rng(0));
    const x = input();
    const float = model.forward(x);
    const report = quantizeInt8(model);
    expect(report).toMatchObject({ layers: 2, weights: 24 * 40 + 40 * 7, skipped: [] });
    expect(report.packedBytes).toBeGreaterThan(0);
    counted.reset();
    const int8 = model.forward(x);
    expect(counted.calls).toBe(2);
    expect(int8.shape).toEqual([3, 5, 7]);
    const err = relativeError(int8, float);
    expect(err).toBeGreaterThan(0);
    expect(err).toBeLessThan(0.03);
    tf.dispose([x, float, int8]);
    model.dispose();
  });

  it('keeps the float path under a gradient tape: the same gradients as the float model, the kernel never called', () => {
    const model = new TwoLayers(new Rng(1));
    const x = input();
    const loss = () => tf.sum(tf.square(model.forward(x))) as tf.Scalar;
    const before = tf.variableGrads(loss);
    quantizeInt8(model);
    counted.reset();
    const after = tf.variableGrads(loss);
    expect(counted.calls).toBe(0);
    expect(after.value.dataSync()[0]).toBe(before.value.dataSync()[0]);
    for (const name of Object.keys(before.grads))
      expect(Array.from(after.grads[name]!.dataSync())).toEqual(Array.from(before.grads[name]!.dataSync()));
    tf.dispose([x, before.value, after.value, ...Object.values(before.grads), ...Object.values(after.grads)]);
    model.dispose();
  });

  it('falls back to float for a weight changed after quantising, and for every layer after releaseInt8', () => {
    const model = new TwoLayers(new Rng(2));
    const x = input();
    quantizeInt8(model);
    tf.tidy(() => model.up.weight.assign(tf.mul(model.up.weight, 2)));
    counted.reset();
    const y = model.forward(x);
    expect(counted.calls).toBe(1); // `down` only
    expect(releaseInt8(model)).toBe(2);
    expect(int8LayerCount(model)).toBe(0);
    counted.reset();
    const float = model.forward(x);
    expect(counted.calls).toBe(0);
    expect(relativeError(y, float)).toBeGreaterThan(0);
    tf.dispose([x, y, float]);
    model.dispose();
  });

  it('drops the int8 copy of a weight a checkpoint load writes (in place on wasm: the same data id)', () => {
    const model = new TwoLayers(new Rng(5));
    const x = input();
    quantizeInt8(model);
    const host = Float32Array.from({ length: 40 * 24 }, (_, i) => Math.cos(i) * 0.2);
    model.loadStateDict({ 'up.weight': { shape: [40, 24], dtype: 'float32', data: host } }, { strict: false });
    expect(int8LayerCount(model)).toBe(1); // `down` keeps its copy
    counted.reset();
    const y = model.forward(x);
    expect(counted.calls).toBe(1);
    releaseInt8(model);
    const float = model.forward(x);
    // `up` ran in float with the loaded weights: only `down`'s quantisation separates the two.
    expect(relativeError(y, float)).toBeLessThan(0.03);
    tf.dispose([x, y, float]);
    model.dispose();
  });

  it('leaves skipped layers in float and frees every int8 copy with the model', () => {
    const before = tf.memory().numTensors;
    const model = new TwoLayers(new Rng(3));
    const report = quantizeInt8(model, { skip: (name) => name === 'down' });
    expect(report.layers).toBe(1);
    expect(report.skipped).toEqual(['down']);
    expect(int8LayerCount(model)).toBe(1);
    quantizeInt8(model); // again: the old copy is replaced, not leaked
    expect(int8LayerCount(model)).toBe(2);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('quantizeInt8 without the kernels', () => {
  it('refuses with BACKEND_UNAVAILABLE on a backend that lacks them', async () => {
    const previous = tf.getBackend();
    await tf.setBackend('cpu');
    try {
      const model = new TwoLayers(new Rng(4));
      let caught: unknown;
      try {
        quantizeInt8(model);
      } catch (err) {
        caught = err;
      }
      expect(isVlError(caught) && caught.code).toBe('BACKEND_UNAVAILABLE');
      expect(String((caught as Error).message)).toMatch(/@vl\/accel/);
      model.dispose();
    } finally {
      await tf.setBackend(previous);
    }
  });
});
