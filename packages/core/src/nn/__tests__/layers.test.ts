// Layers against hand-computed values; dropout statistics and determinism; init statistics; leaks.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { truncNormal, weightInitSkipped, withoutWeightInit } from '../init.js';
import { Dropout, Embedding, GELU, LayerNorm, Linear, Mlp } from '../layers.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

function close(actual: ArrayLike<number>, expected: number[], tol = 1e-5) {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) expect(Math.abs((actual[i] as number) - (expected[i] as number))).toBeLessThan(tol);
}

describe('layers', () => {
  it('Linear computes x·Wᵀ + b with W stored [out, in], for any leading shape', () => {
    const lin = new Linear(2, 3, new Rng(0));
    lin.loadStateDict({
      weight: tf.tensor2d([
        [1, 2],
        [3, 4],
        [5, 6],
      ]),
      bias: tf.tensor1d([0.5, -1, 0]),
    });
    const y = lin.forward(tf.tensor3d([[[1, 1]], [[2, -1]]])); // [2,1,2]
    expect(y.shape).toEqual([2, 1, 3]);
    // [1,1]·Wᵀ = [3, 7, 11] + b ; [2,-1]·Wᵀ = [0, 2, 4] + b
    close(y.dataSync(), [3.5, 6, 11, 0.5, 1, 4]);
  });

  it('LayerNorm normalises with biased variance, then scales and shifts', () => {
    const ln = new LayerNorm(4, 1e-5);
    ln.loadStateDict({ weight: tf.tensor1d([1, 2, 1, 1]), bias: tf.tensor1d([0, 0, 1, 0]) });
    const y = ln.forward(tf.tensor2d([[1, 2, 3, 4]]));
    // mean 2.5, var 1.25 → (x-2.5)/sqrt(1.25+1e-5)
    const s = Math.sqrt(1.25 + 1e-5);
    close(y.dataSync(), [-1.5 / s, (2 * -0.5) / s, 0.5 / s + 1, 1.5 / s]);
  });

  it('GELU: exact erf form and tanh approximation', () => {
    const x = tf.tensor1d([-2, -0.5, 0, 1, 3]);
    // x·Φ(x): Φ(-2)=0.0227501, Φ(-0.5)=0.3085375, Φ(1)=0.8413447, Φ(3)=0.9986501
    close(new GELU().forward(x).dataSync(), [-0.0455003, -0.1542688, 0, 0.8413447, 2.9959502], 2e-6);
    const tanhForm = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
    close(new GELU('tanh').forward(x).dataSync(), [-2, -0.5, 0, 1, 3].map(tanhForm), 2e-6);
  });

  it('Embedding looks up rows for ids of any shape', () => {
    const emb = new Embedding(3, 2, new Rng(0));
    emb.loadStateDict({
      weight: tf.tensor2d([
        [0, 1],
        [2, 3],
        [4, 5],
      ]),
    });
    const y = emb.forward(
      tf.tensor2d(
        [
          [2, 0],
          [1, 1],
        ],
        [2, 2],
        'int32',
      ),
    );
    expect(y.shape).toEqual([2, 2, 2]);
    expect(Array.from(y.dataSync())).toEqual([4, 5, 0, 1, 2, 3, 2, 3]);
  });

  it('Dropout: identity in eval, seeded and unbiased in training, needs an Rng', () => {
    const drop = new Dropout(0.25);
    const x = tf.ones([200, 100]);
    drop.eval();
    expect(drop.forward(x)).toBe(x);
    drop.train();
    expect(() => drop.forward(x)).toThrow(/needs an Rng/);
    const a = drop.forward(x, new Rng(42)).dataSync();
    const b = drop.forward(x, new Rng(42)).dataSync();
    const c = drop.forward(x, new Rng(43)).dataSync();
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    let zeros = 0;
    let sum = 0;
    for (const v of a) {
      if (v === 0) zeros++;
      else expect(v).toBeCloseTo(1 / 0.75, 5);
      sum += v;
    }
    // 20,000 Bernoulli(0.25) draws: sd of the fraction ≈ 0.003, so ±0.015 is 5 sd.
    expect(Math.abs(zeros / a.length - 0.25)).toBeLessThan(0.015);
    expect(Math.abs(sum / a.length - 1)).toBeLessThan(0.02);
  });

  it('withoutWeightInit: modules built inside draw nothing (zeros, the Rng untouched), nesting and throws restore drawing', () => {
    const rng = new Rng(5);
    const before = rng.state();
    const lin = withoutWeightInit(() => {
      expect(weightInitSkipped()).toBe(true);
      return withoutWeightInit(() => new Linear(4, 3, rng));
    });
    expect(Array.from(lin.weight.dataSync())).toEqual(new Array(12).fill(0));
    expect(rng.state()).toEqual(before);
    expect(weightInitSkipped()).toBe(false);
    expect(() =>
      withoutWeightInit(() => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(weightInitSkipped()).toBe(false);
    const drawn = new Linear(4, 3, new Rng(5));
    expect(Array.from(drawn.weight.dataSync()).some((v) => v !== 0)).toBe(true);
    lin.dispose();
    drawn.dispose();
  });

  it('truncNormal: same seed same weights, std 0.02 truncated at ±2σ', () => {
    const a = truncNormal([100, 100], new Rng(9)).dataSync();
    const b = truncNormal([100, 100], new Rng(9)).dataSync();
    expect(a).toEqual(b);
    let mean = 0;
    let sq = 0;
    for (const v of a) {
      expect(Math.abs(v)).toBeLessThanOrEqual(0.04 + 1e-7);
      mean += v;
      sq += v * v;
    }
    mean /= a.length;
    const std = Math.sqrt(sq / a.length - mean * mean);
    // Truncating N(0,1) at ±2 leaves std sqrt(1 - 4φ(2)/(2Φ(2)-1)) = 0.8796.
    expect(Math.abs(mean)).toBeLessThan(0.001);
    expect(Math.abs(std - 0.02 * 0.8796)).toBeLessThan(0.0005);
  });

  it('Mlp names its children and does not leak tensors', () => {
    const mlp = new Mlp(4, 8, 4, new Rng(1), { names: ['c_fc', 'c_proj'] });
    expect([...mlp.stateDict().keys()]).toEqual(['c_fc.weight', 'c_fc.bias', 'c_proj.weight', 'c_proj.bias']);
    const x = tf.randomNormal([2, 3, 4], 0, 1, 'float32', 1);
    mlp.forward(x).dispose();
    const before = tf.memory().numTensors;
    const y = mlp.forward(x);
    expect(y.shape).toEqual([2, 3, 4]);
    expect(tf.memory().numTensors).toBe(before + 1);
    y.dispose();
    x.dispose();
    mlp.dispose();
  });
});
