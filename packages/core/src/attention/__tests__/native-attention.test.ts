// The native attention path (@vl/accel's VlAttention on wasm) against core's composed path on the same
// backend, for every way MultiHeadAttention calls it: fused qkv and separate projections, padding masks
// and per-head biases, multiway (BEiT-3) projections with a route, cross-attention with shared context
// rows, and decoding with self and cross caches through beam reorders. It runs only for inference: under
// a gradient tape or with dropout active the composed path runs (the kernel is never called). Without the
// binary the kernel is absent and the composed path is all there is — checked instead.
import * as tf from '@tensorflow/tfjs-core';
import { countKernelCalls, type KernelCallCounter } from '@vl/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TORCHSCALE_EXPERTS } from '../../blocks/multiway.js';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { AttentionCache } from '../kv-cache.js';
import { BERT_MASK_VALUE, paddingMask } from '../masks.js';
import {
  type AttentionForwardOptions,
  BERT_ATTENTION_NAMES,
  MultiHeadAttention,
  type MultiHeadAttentionConfig,
} from '../multi-head-attention.js';
import { NATIVE_ATTENTION_KERNEL, nativeAttentionAvailable } from '../native-attention.js';
import { maxAbsDiff, randomTensor } from './helpers.js';

/** The native kernel wrapped to count its calls (`original` undefined when @vl/accel is not loaded). */
let kernel: KernelCallCounter;

beforeAll(async () => {
  await initRuntime({ backend: 'wasm' });
  kernel = countKernelCalls(NATIVE_ATTENTION_KERNEL, 'wasm');
});

afterAll(() => {
  kernel.restore();
});

/** Runs `f` with the native kernel (counting its calls) and again without it (the composed path). */
function bothPaths<T>(f: () => T): { fast: T; composed: T; calls: number } {
  const counted = tf.getKernel(NATIVE_ATTENTION_KERNEL, 'wasm') as tf.KernelConfig;
  kernel.reset();
  const fast = f();
  const n = kernel.calls;
  tf.unregisterKernel(NATIVE_ATTENTION_KERNEL, 'wasm');
  try {
    return { fast, composed: f(), calls: n };
  } finally {
    tf.registerKernel(counted);
  }
}

function attention(config: Partial<MultiHeadAttentionConfig>, seed = 0): MultiHeadAttention {
  const m = new MultiHeadAttention({ hiddenSize: 16, numHeads: 4, names: BERT_ATTENTION_NAMES, ...config }, new Rng(seed));
  const rng = new Rng(seed + 1);
  for (const [, p] of m.namedParameters()) p.assign(randomTensor(p.shape, rng, 0.4));
  return m.eval();
}

const present = () => kernel.original !== undefined;

describe('native attention', () => {
  it('is there exactly when @vl/accel loaded (VL_ACCEL_REQUIRE=1 requires it)', () => {
    if (process.env.VL_ACCEL_REQUIRE === '1') expect(present()).toBe(true);
    expect(nativeAttentionAvailable()).toBe(present());
  });

  let rng: Rng;
  let x: tf.Tensor;
  let padding: tf.Tensor;
  let bias: tf.Tensor;
  beforeAll(() => {
    rng = new Rng(3);
    x = randomTensor([3, 6, 16], rng);
    padding = paddingMask(
      tf.tensor2d([
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1],
        [1, 1, 0, 0, 0, 0],
      ]),
      BERT_MASK_VALUE,
    );
    bias = randomTensor([1, 4, 6, 6], rng);
  });
  const selfCases: [string, Partial<MultiHeadAttentionConfig>, () => AttentionForwardOptions][] = [
    ['fused qkv (ViT)', { layout: 'fused' }, () => ({})],
    ['fused qkv, padding mask', { layout: 'fused' }, () => ({ mask: padding })],
    ['fused qkv with q/v biases only, per-head bias (relative positions)', { layout: 'fused', qkvBias: 'qv' }, () => ({ mask: bias })],
    ['separate q/k/v (BERT), padding mask', { layout: 'separate' }, () => ({ mask: padding })],
    ['torch in_proj with an output projection', { layout: 'in_proj', outProjection: true }, () => ({})],
    [
      'multiway projections with a route, Sub-LN (BEiT-3)',
      { layout: 'separate', multiway: TORCHSCALE_EXPERTS, innerNormEps: 1e-5 },
      () => ({
        route: [
          { expert: 'image', length: 4 },
          { expert: 'text', length: 2 },
        ],
      }),
    ],
  ];
  for (const [name, config, options] of selfCases) {
    it(`self-attention, ${name}: equals the composed path`, () => {
      const m = attention(config);
      const r = bothPaths(() => m.forward(x, options()).output);
      if (!present()) return expect(r.calls).toBe(0);
      expect(r.calls).toBe(1);
      expect(maxAbsDiff(r.fast, r.composed)).toBeLessThan(1e-5);
    });
  }

  it('cross-attention with context rows shared per image and a per-image padding mask', () => {
    const m = attention({ layout: 'separate', kvSize: 12 }, 5);
    const context = randomTensor([2, 7, 12], rng);
    const q = randomTensor([4, 3, 16], rng);
    const mask = paddingMask(
      tf.tensor2d([
        [1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1, 1],
      ]),
      BERT_MASK_VALUE,
    );
    const one = randomTensor([1, 7, 12], rng);
    const broadcast = bothPaths(() => m.forward(q, { context: one }).output); // [1, …] context broadcast to 4 rows
    if (present()) expect(broadcast.calls).toBe(1);
    expect(maxAbsDiff(broadcast.fast, broadcast.composed)).toBeLessThan(1e-5);
    for (const contextRows of [
      [0, 0, 1, 1],
      [1, 0, 1, 0],
    ]) {
      const r = bothPaths(() => m.forward(q, { context, contextRows, mask }).output);
      if (present()) expect(r.calls).toBe(1);
      expect(maxAbsDiff(r.fast, r.composed)).toBeLessThan(1e-5);
    }
  });

  it('decoding with self and cross caches through beam reorders: every step equals the composed path', () => {
    const selfAttn = attention({ layout: 'separate' }, 7);
    const crossAttn = attention({ layout: 'separate', kvSize: 12 }, 9);
    const image = randomTensor([2, 5, 12], rng);
    const steps = [randomTensor([2, 2, 16], rng), randomTensor([6, 1, 16], rng), randomTensor([6, 1, 16], rng)];
    const reorders = [
      [0, 0, 0, 1, 1, 1],
      [2, 0, 1, 3, 3, 5],
    ];
    const run = () => {
      const self = new AttentionCache('self');
      const cross = new AttentionCache('cross');
      const outs: tf.Tensor[] = [];
      steps.forEach((h, i) => {
        if (i > 0) {
          self.reorder(reorders[i - 1] as number[]);
          cross.reorder(reorders[i - 1] as number[]);
        }
        const a = selfAttn.forward(h, { cache: self }).output;
        outs.push(crossAttn.forward(a, { context: i === 0 ? image : null, cache: cross }).output);
      });
      self.dispose();
      cross.dispose();
      return outs;
    };
    const r = bothPaths(run);
    if (present()) expect(r.calls).toBe(6);
    r.fast.forEach((t, i) => expect(maxAbsDiff(t, r.composed[i] as tf.Tensor)).toBeLessThan(1e-5));
  });

  it('never runs under a gradient tape or with dropout active; the gradients are the composed ones', () => {
    const m = attention({ layout: 'fused' });
    kernel.reset();
    const w = randomTensor([3, 6, 16], rng);
    const g = tf.grad((input: tf.Tensor) => tf.sum(tf.mul(m.forward(input, { mask: padding }).output, w)))(x);
    expect(kernel.calls).toBe(0);
    expect(g.shape).toEqual(x.shape);
    const dropping = new MultiHeadAttention({ hiddenSize: 16, numHeads: 4, layout: 'fused', attentionDropout: 0.5 }, new Rng(1));
    dropping.train();
    tf.dispose(dropping.forward(x, { rng: new Rng(2) }).output);
    expect(kernel.calls).toBe(0);
    dropping.eval();
    tf.dispose(dropping.forward(x).output);
    expect(kernel.calls).toBe(present() ? 1 : 0);
  });

  it('leaks nothing', () => {
    const m = attention({ layout: 'fused' });
    tf.dispose(m.forward(x, { mask: padding }).output);
    const before = tf.memory().numTensors;
    tf.dispose(m.forward(x, { mask: padding }).output);
    expect(tf.memory().numTensors).toBe(before);
  });
});
