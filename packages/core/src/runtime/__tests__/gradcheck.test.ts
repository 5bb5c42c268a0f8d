// Gradients on wasm (core kernels installed) against central finite differences of float64 JS
// implementations of the same math, so a wrong gradient cannot hide behind cpu/wasm agreement.
import * as tf from '@tensorflow/tfjs-core';
import { type HostArray, seeded, type TensorFn } from '@vl/testing';
import { describe, expect, it } from 'vitest';
import { gelu, geluTanh, layerNorm } from '../../nn/functional.js';
import { evaluate, expectClose } from './parity.js';

/** erf by its Maclaurin series: exact to ~1e-13 for |x| ≤ 3, all these tests need. */
function erf64(x: number): number {
  if (Math.abs(x) > 3) throw new RangeError(`erf64 is only accurate for |x| <= 3, got ${x}`);
  let term = x;
  let sum = x;
  for (let n = 1; n < 80; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

type Float64Fn = (inputs: Float64Array[]) => Float64Array;

/** d(Σ f(x)·w)/dx_i by central differences, every element of every input in `wrt`. */
function numericGrads(f: Float64Fn, inputs: HostArray[], w: Float64Array, wrt: number[], h = 1e-4): number[][] {
  const xs = inputs.map((x) => Float64Array.from(x.values));
  const loss = () => f(xs).reduce((acc, y, i) => acc + y * (w[i] as number), 0);
  return wrt.map((which) => {
    const x = xs[which] as Float64Array;
    const g: number[] = [];
    for (let i = 0; i < x.length; i++) {
      const saved = x[i] as number;
      x[i] = saved + h;
      const up = loss();
      x[i] = saved - h;
      const down = loss();
      x[i] = saved;
      g.push((up - down) / (2 * h));
    }
    return g;
  });
}

/** The weights `evaluate` uses for its weighted-sum loss (seeded by the output shape). */
function lossWeights(shape: number[]): Float64Array {
  return Float64Array.from(seeded(shape, 999).values);
}

async function checkGradients(name: string, tfFn: TensorFn, jsFn: Float64Fn, inputs: HostArray[], wrt: number[]) {
  const wasm = await evaluate('wasm', tfFn, inputs, wrt);
  const xs = inputs.map((x) => Float64Array.from(x.values));
  expectClose(wasm.value, Array.from(jsFn(xs)), `${name}: forward vs float64`);
  const numeric = numericGrads(jsFn, inputs, lossWeights(wasm.shape), wrt);
  numeric.forEach((g, i) => {
    expect(
      g.some((v) => Math.abs(v) > 1e-3),
      `${name}: gradient ${i} is not trivially zero`,
    ).toBe(true);
    expectClose(wasm.grads[i] as number[], g, `${name}: gradient of input ${wrt[i]} vs finite differences`);
  });
}

function rows(x: Float64Array, width: number, f: (row: Float64Array, out: Float64Array) => void): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length; r += width) f(x.subarray(r, r + width), out.subarray(r, r + width));
  return out;
}

describe('gradients by finite differences (wasm backend)', () => {
  it.each([
    [false, false],
    [false, true],
    [true, false],
    [true, true],
  ])('matMul transposeA=%s transposeB=%s', async (ta, tb) => {
    const [m, k, n] = [3, 4, 5];
    const a = seeded(ta ? [k, m] : [m, k], 50);
    const b = seeded(tb ? [n, k] : [k, n], 51);
    const js: Float64Fn = ([x, y]) => {
      const out = new Float64Array(m * n);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) {
            s += (x as Float64Array)[ta ? p * m + i : i * k + p]! * (y as Float64Array)[tb ? j * k + p : p * n + j]!;
          }
          out[i * n + j] = s;
        }
      }
      return out;
    };
    await checkGradients(`matMul ${ta}/${tb}`, (x, y) => tf.matMul(x!, y!, ta, tb), js, [a, b], [0, 1]);
  });

  it('batched matMul [2,3,4]x[2,5,4]ᵀ (attention scores)', async () => {
    const a = seeded([2, 3, 4], 52);
    const b = seeded([2, 5, 4], 53);
    const js: Float64Fn = ([x, y]) => {
      const out = new Float64Array(2 * 3 * 5);
      for (let bt = 0; bt < 2; bt++)
        for (let i = 0; i < 3; i++)
          for (let j = 0; j < 5; j++) {
            let s = 0;
            for (let p = 0; p < 4; p++) s += x![bt * 12 + i * 4 + p]! * y![bt * 20 + j * 4 + p]!;
            out[bt * 15 + i * 5 + j] = s;
          }
      return out;
    };
    await checkGradients('bmm', (x, y) => tf.matMul(x!, y!, false, true), js, [a, b], [0, 1]);
  });

  it('softmax over the last axis', async () => {
    const x = seeded([3, 6], 54, -2, 2);
    const js: Float64Fn = ([v]) =>
      rows(v!, 6, (row, out) => {
        const max = Math.max(...row);
        let total = 0;
        row.forEach((r, i) => {
          out[i] = Math.exp(r - max);
          total += out[i]!;
        });
        out.forEach((o, i) => (out[i] = o / total));
      });
    await checkGradients('softmax', (v) => tf.softmax(v!), js, [x], [0]);
  });

  it('layerNorm with weight and bias (x, weight and bias gradients)', async () => {
    const width = 7;
    const eps = 1e-5;
    const x = seeded([3, width], 55, -2, 2);
    const weight = seeded([width], 56, 0.5, 1.5);
    const bias = seeded([width], 57);
    const js: Float64Fn = ([v, w, b]) =>
      rows(v!, width, (row, out) => {
        const mean = row.reduce((s, r) => s + r, 0) / width;
        const variance = row.reduce((s, r) => s + (r - mean) ** 2, 0) / width;
        const inv = 1 / Math.sqrt(variance + eps);
        row.forEach((r, i) => (out[i] = (r - mean) * inv * w![i]! + b![i]!));
      });
    await checkGradients('layerNorm', (v, w, b) => layerNorm(v!, w!, b!, eps), js, [x, weight, bias], [0, 1, 2]);
  });

  it('gelu (erf form) and geluTanh', async () => {
    const x = seeded([2, 9], 58, -3, 3);
    const exact: Float64Fn = ([v]) => v!.map((t) => 0.5 * t * (1 + erf64(t / Math.SQRT2)));
    const tanhForm: Float64Fn = ([v]) => v!.map((t) => 0.5 * t * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (t + 0.044715 * t ** 3))));
    await checkGradients('gelu', (v) => gelu(v!), exact, [x], [0]);
    await checkGradients('geluTanh', (v) => geluTanh(v!), tanhForm, [x], [0]);
  });
});
