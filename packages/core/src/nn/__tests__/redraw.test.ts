// redrawWeights: LayerNorm weights 1 and biases 0 (by module type, whatever their names), other biases 0,
// everything else N(0, std²) truncated at ±2σ, `keep` and frozen parameters untouched, the same draws for
// the same seed, and no tensors left behind.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { Embedding, LayerNorm, Linear } from '../layers.js';
import { Module } from '../module.js';
import { redrawWeights } from '../redraw.js';

class Block extends Module {
  readonly proj = this.registerModule('proj', new Linear(16, 32, new Rng(1)));
  // A norm whose name says nothing about it (VLMo's norm2_imag, a Sequential's '1').
  readonly norm2_imag = this.registerModule('norm2_imag', new LayerNorm(32));
  readonly gamma_1 = this.registerParameter('gamma_1', tf.fill([32], 0.1));
  readonly embed = this.registerModule('embed', new Embedding(50, 16, new Rng(2)));
}

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

describe('redrawWeights', () => {
  it('sets norms and biases, draws the rest at the given std, keeps what it is told to keep', async () => {
    const block = new Block();
    block.norm2_imag.weight.assign(tf.fill([32], 3));
    block.norm2_imag.bias!.assign(tf.fill([32], 3));
    const before = tf.memory().numTensors;
    const drawn = redrawWeights(block, 0.5, new Rng(9), { keep: ['gamma_*'] });
    expect(tf.memory().numTensors).toBe(before);
    expect(drawn).toEqual(['proj.weight', 'embed.weight']);
    expect(Array.from(await block.norm2_imag.weight.data())).toEqual(new Array(32).fill(1));
    expect(Array.from(await block.norm2_imag.bias!.data())).toEqual(new Array(32).fill(0));
    expect(Array.from(await block.proj.bias!.data())).toEqual(new Array(32).fill(0));
    expect(Array.from(await block.gamma_1.data())).toEqual(new Array(32).fill(Math.fround(0.1)));
    const w = Array.from(await block.embed.weight.data());
    const std = Math.sqrt(w.reduce((a, v) => a + v * v, 0) / w.length);
    // A normal truncated at ±2σ has std 0.88σ; 800 draws put the estimate within a few percent.
    expect(std).toBeGreaterThan(0.5 * 0.8);
    expect(std).toBeLessThan(0.5 * 0.96);
    expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(1);
    block.dispose();
  });

  it('is deterministic per seed and leaves frozen parameters alone', async () => {
    const a = new Block();
    const b = new Block();
    b.freeze('proj.*');
    const frozen = Array.from(await b.proj.weight.data());
    redrawWeights(a, 0.2, new Rng(3));
    redrawWeights(b, 0.2, new Rng(3));
    expect(Array.from(await b.proj.weight.data())).toEqual(frozen);
    // b skipped proj, so its embedding took the draws a used for proj.
    const c = new Block();
    c.freeze('proj.*');
    redrawWeights(c, 0.2, new Rng(3));
    expect(Array.from(await c.embed.weight.data())).toEqual(Array.from(await b.embed.weight.data()));
    expect(Array.from(await a.embed.weight.data())).not.toEqual(Array.from(await b.embed.weight.data()));
    for (const m of [a, b, c]) m.dispose();
  });
});
