// VlInt8Pack + VlInt8Linear against a host reference of the same quantisation (per-output-row int8
// weights, per-row int8 activations, exact integer dot products): shapes with tails in every blocked
// dimension (outputs not a multiple of 32, inputs not a multiple of 4, rows across the 8-row blocks, the
// AMX kernel's 16/32-row tiles and the 256-row chunks), zero rows, rank-3 inputs, no bias; the capped
// kernels (VL_ACCEL_INT8_KERNEL in a child process) against the same reference, and AMX bit for bit
// equal to VNNI (same integer sums, same epilogue); the error against float matmul; the binding's checks.
// Without the binary the kernels are not registered.
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import { type HostArray, seeded } from '@vl/testing';
import { describe, expect, it } from 'vitest';
import { ACCEL_KERNELS, accelStatus, packedInt8Length } from '../index.js';
import { loadAccel } from '../binding.js';
import { useAccelKernelsOnWasm } from './helpers.js';

const status = accelStatus();

useAccelKernelsOnWasm();

/** Round half to even, as C's nearbyintf in the default rounding mode. */
function roundEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Per-row symmetric int8: the integers and the float32 scale max|row|/127. */
function quantizeRows(values: Float32Array, rows: number, cols: number): { q: Int32Array; scale: Float32Array } {
  const q = new Int32Array(rows * cols);
  const scale = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let amax = 0;
    for (let c = 0; c < cols; c++) amax = Math.max(amax, Math.abs(values[r * cols + c] as number));
    const s = Math.fround(amax / 127);
    scale[r] = s;
    for (let c = 0; s > 0 && c < cols; c++)
      q[r * cols + c] = Math.max(-127, Math.min(127, roundEven(Math.fround((values[r * cols + c] as number) / s))));
  }
  return { q, scale };
}

/** The kernel's arithmetic on the host: exact integer dot, then dot·(s_x·s_w) + bias in float32. */
function reference(x: HostArray, w: HostArray, bias: Float32Array | null): Float32Array {
  const k = w.shape[1] as number;
  const n = w.shape[0] as number;
  const m = x.values.length / k;
  const qx = quantizeRows(x.values, m, k);
  const qw = quantizeRows(w.values, n, k);
  const y = new Float32Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let j = 0; j < n; j++) {
      let dot = 0;
      for (let c = 0; c < k; c++) dot += (qx.q[r * k + c] as number) * (qw.q[j * k + c] as number);
      const scale = Math.fround((qx.scale[r] as number) * (qw.scale[j] as number));
      y[r * n + j] = Math.fround(Math.fround(Math.fround(dot) * scale) + (bias ? (bias[j] as number) : 0));
    }
  }
  return y;
}

function runInt8(x: HostArray, w: HostArray, bias: Float32Array | null): Float32Array {
  return tf.tidy(() => {
    const weight = tf.tensor(w.values, w.shape);
    const packed = tf.engine().runKernel(ACCEL_KERNELS.int8Pack, { weight }) as tf.Tensor;
    const inputs: Record<string, tf.Tensor> = { x: tf.tensor(x.values, x.shape), packed };
    if (bias) inputs['bias'] = tf.tensor(bias);
    const y = tf.engine().runKernel(ACCEL_KERNELS.int8Linear, inputs, {
      outFeatures: w.shape[0] as number,
      inFeatures: w.shape[1] as number,
    } as unknown as tf.NamedAttrMap) as tf.Tensor;
    expect(y.shape).toEqual([...x.shape.slice(0, -1), w.shape[0]]);
    return y.dataSync() as Float32Array;
  });
}

/** Differences beyond float rounding of the epilogue (an FMA may fuse its multiply-add). */
function expectMatches(got: Float32Array, want: Float32Array): void {
  expect(got.length).toBe(want.length);
  let scale = 1e-6;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs((got[i] as number) - (want[i] as number)));
  expect(worst).toBeLessThanOrEqual(scale * 1e-6);
}

const CASES: { m: number; n: number; k: number; bias: boolean; lead?: number[] }[] = [
  { m: 1, n: 1, k: 1, bias: true },
  { m: 3, n: 17, k: 5, bias: true },
  { m: 8, n: 32, k: 8, bias: false },
  { m: 9, n: 33, k: 31, bias: true },
  { m: 24, n: 70, k: 64, bias: true, lead: [2, 12] },
  { m: 300, n: 40, k: 13, bias: true },
  { m: 20, n: 40, k: 2100, bias: true }, // three input slices of 1024, the last partial
  // Input widths that are multiples of 64 take the AMX kernel where it runs: 16-row and 32-row tiles,
  // padded rows, several chunks, outputs past the last full block, one row (decoding).
  { m: 300, n: 50, k: 128, bias: true },
  { m: 33, n: 96, k: 192, bias: false, lead: [3, 11] },
  { m: 1, n: 70, k: 768, bias: true },
];

describe.runIf(status.available)('VlInt8Linear (native)', () => {
  it('reports the kernel it picked', () => {
    expect(['amx-int8', 'avx512-vnni', 'portable C']).toContain(status.info?.int8);
  });

  it.each(CASES)('equals the host reference of the quantised arithmetic: m=$m n=$n k=$k bias=$bias', ({ m, n, k, bias, lead }) => {
    const x = seeded([...(lead ?? [m]), k], m * 31 + k, -2, 2);
    const w = seeded([n, k], n * 7 + k, -0.5, 0.5);
    const b = bias ? seeded([n], n + 1).values : null;
    const before = tf.memory().numTensors;
    expectMatches(runInt8(x, w, b), reference(x, w, b));
    expect(tf.memory().numTensors).toBe(before);
  });

  it('gives exactly the bias for an all-zero input row and zero for an all-zero weight row', () => {
    const x = seeded([3, 10], 1);
    x.values.fill(0, 10, 20); // row 1
    const w = seeded([5, 10], 2);
    w.values.fill(0, 20, 30); // output 2
    const b = seeded([5], 3).values;
    const y = runInt8(x, w, b);
    for (let j = 0; j < 5; j++) expect(y[5 + j]).toBe(b[j]);
    for (let r = 0; r < 3; r++) expect(y[r * 5 + 2]).toBe(b[2]);
    expectMatches(y, reference(x, w, b));
  });

  it('stays within int8 quantisation error of the float product (BERT-like sizes)', () => {
    const x = seeded([20, 256], 5);
    const w = seeded([96, 256], 6, -0.05, 0.05);
    const got = runInt8(x, w, null);
    const exact = tf.tidy(() => tf.matMul(tf.tensor(x.values, x.shape), tf.tensor(w.values, w.shape), false, true).dataSync());
    let err = 0;
    let mag = 0;
    for (let i = 0; i < got.length; i++) {
      err += Math.abs((got[i] as number) - (exact[i] as number));
      mag += Math.abs(exact[i] as number);
    }
    expect(err / mag).toBeLessThan(0.02);
    expect(err / mag).toBeGreaterThan(0); // it is quantised, not the float path
  });

  it('packs into the documented size', () => {
    const packed = tf.tidy(() => tf.engine().runKernel(ACCEL_KERNELS.int8Pack, { weight: tf.zeros([33, 7]) }) as tf.Tensor);
    expect(packed.size).toBe(packedInt8Length(33, 7));
    expect(packedInt8Length(33, 7)).toBe((64 * 8 + 8 * 64) / 4);
    packed.dispose();
  });

  it('refuses a packed weight of another layer and a wrong input width', () => {
    tf.tidy(() => {
      const packed = tf.engine().runKernel(ACCEL_KERNELS.int8Pack, { weight: tf.ones([4, 8]) }) as tf.Tensor;
      const call = (x: tf.Tensor, attrs: { outFeatures: number; inFeatures: number }) => () =>
        tf.engine().runKernel(ACCEL_KERNELS.int8Linear, { x, packed }, attrs as unknown as tf.NamedAttrMap);
      expect(call(tf.ones([2, 8]), { outFeatures: 40, inFeatures: 8 })).toThrow(/does not hold a \[40, 8\] layer/);
      expect(call(tf.ones([2, 6]), { outFeatures: 4, inFeatures: 8 })).toThrow(/expected float32 \[\.\.\., 8\] input/);
    });
  });

  it('checks offsets against the heap in the binding', () => {
    const binding = (loadAccel() as { binding: { int8Linear(h: ArrayBuffer, p: Float64Array): void } }).binding;
    const heap = new ArrayBuffer(1024);
    expect(() => binding.int8Linear(heap, new Float64Array([4, 4, 4, 0, 64, -1, 4096]))).toThrow(/int8Linear y/);
    expect(() => binding.int8Linear(heap, new Float64Array([4, 40, 4, 0, 512, -1, 128]))).toThrow(/int8Linear (y|packed)/);
  });

  /** The binding on a plain ArrayBuffer heap in a child process whose kernel is capped by `env`. */
  function runInChild(
    x: HostArray,
    w: HostArray,
    b: Float32Array,
    env: Record<string, string>,
  ): { kernel: string; packed: number[]; y: Float32Array } {
    // x at 0, weight after it, then bias, packed, y.
    const script = `
      const binding = require(process.argv[1]);
      const { x, w, b } = JSON.parse(require('fs').readFileSync(0, 'utf8'));
      const [n, k] = w.shape;
      const m = x.values.length / k;
      const packedBytes = 4 * Number(process.argv[2]);
      const offs = [0, 4 * x.values.length, 4 * (x.values.length + w.values.length)];
      const packedOff = offs[2] + 4 * n, yOff = packedOff + packedBytes;
      const heap = new ArrayBuffer(yOff + 4 * m * n);
      new Float32Array(heap, offs[0], x.values.length).set(x.values);
      new Float32Array(heap, offs[1], w.values.length).set(w.values);
      new Float32Array(heap, offs[2], n).set(b);
      binding.int8Pack(heap, new Float64Array([n, k, offs[1], packedOff]));
      binding.int8Linear(heap, new Float64Array([m, n, k, offs[0], packedOff, offs[2], yOff]));
      const packed = Array.from(new Int32Array(heap, packedOff, packedBytes / 4));
      console.log(JSON.stringify({ kernel: binding.info().int8, packed, y: Array.from(new Float32Array(heap, yOff, m * n)) }));`;
    const payload = JSON.stringify({
      x: { values: Array.from(x.values) },
      w: { values: Array.from(w.values), shape: w.shape },
      b: Array.from(b),
    });
    const [n, k] = w.shape as [number, number];
    const path = (loadAccel() as { path: string }).path;
    const r = spawnSync(process.execPath, ['-e', script, path, String(packedInt8Length(n, k))], {
      input: payload,
      encoding: 'utf8',
      env: { ...process.env, ...env },
    });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { kernel: string; packed: number[]; y: number[] };
    return { kernel: out.kernel, packed: out.packed, y: Float32Array.from(out.y) };
  }

  it.each<{ env: Record<string, string>; kernel: string }>([
    { env: { VL_ACCEL_INT8_PORTABLE: '1' }, kernel: 'portable C' },
    { env: { VL_ACCEL_INT8_KERNEL: 'portable' }, kernel: 'portable C' },
  ])('the portable kernel computes the same ($env)', ({ env, kernel }) => {
    const x = seeded([11, 2100], 8, -3, 3);
    const w = seeded([45, 2100], 9);
    const b = seeded([45], 10).values;
    const out = runInChild(x, w, b, env);
    expect(out.kernel).toBe(kernel);
    expectMatches(out.y, reference(x, w, b));
    // The portable packing writes the bytes this process's (possibly AVX-512) packing writes.
    const here = tf.tidy(() => {
      const packed = tf.engine().runKernel(ACCEL_KERNELS.int8Pack, { weight: tf.tensor(w.values, w.shape) }) as tf.Tensor;
      return Array.from(packed.dataSync());
    });
    expect(here).toEqual(out.packed);
  });

  it.runIf(status.info?.int8 === 'amx-int8')(
    "AMX gives the VNNI kernel's outputs bit for bit (capped to avx512-vnni in a child process)",
    () => {
      const x = seeded([70, 768], 11, -3, 3);
      const w = seeded([45, 768], 12);
      const b = seeded([45], 13).values;
      const vnni = runInChild(x, w, b, { VL_ACCEL_INT8_KERNEL: 'avx512-vnni' });
      expect(vnni.kernel).toBe('avx512-vnni');
      const amx = runInChild(x, w, b, {});
      expect(amx.kernel).toBe('amx-int8');
      expect(Array.from(amx.y)).toEqual(Array.from(vnni.y));
      expectMatches(amx.y, reference(x, w, b));
    },
  );
});

it('registers the int8 kernels exactly when the binary loads', () => {
  expect(tf.getKernel(ACCEL_KERNELS.int8Linear, 'wasm') !== undefined).toBe(status.available);
  expect(tf.getKernel(ACCEL_KERNELS.int8Pack, 'wasm') !== undefined).toBe(status.available);
});
