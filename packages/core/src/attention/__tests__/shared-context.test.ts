// Cross-attention with context rows shared by several query rows (contextRows, and a cross cache
// remapped by beam search): equal to copying each row's context, whatever the grouping, with and
// without a padding mask; gradients flow; beam reorders copy no keys/values; no leaks.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { AttentionCache } from '../kv-cache.js';
import { BERT_MASK_VALUE, paddingMask } from '../masks.js';
import { BERT_ATTENTION_NAMES, MultiHeadAttention } from '../multi-head-attention.js';
import { contextGroupSize } from '../shared-context.js';
import { expectNoLeak, maxAbsDiff, randomTensor } from './helpers.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

const D = 8;
const KV = 6;

function crossAttention(seed = 0): MultiHeadAttention {
  const m = new MultiHeadAttention(
    { hiddenSize: D, numHeads: 2, kvSize: KV, layout: 'separate', names: BERT_ATTENTION_NAMES },
    new Rng(seed),
  );
  const rng = new Rng(seed + 1);
  for (const [, p] of m.namedParameters()) p.assign(randomTensor(p.shape, rng, 0.5));
  return m;
}

/** The reference: every query row gets its own copy of its context row. */
function copied(m: MultiHeadAttention, x: tf.Tensor, context: tf.Tensor, rows: number[], mask: tf.Tensor | null) {
  return tf.tidy(() => {
    const idx = tf.tensor1d(rows, 'int32');
    const perRowMask = mask ? tf.gather(mask, idx) : null;
    return m.forward(x, { context: tf.gather(context, idx), mask: perRowMask, outputAttentions: true });
  });
}

describe('contextGroupSize', () => {
  it('recognises consecutive equal groups only', () => {
    expect(contextGroupSize([0, 0, 1, 1, 2, 2], 3)).toBe(2);
    expect(contextGroupSize([0, 1, 2], 3)).toBe(1);
    expect(contextGroupSize([0, 1, 0, 1], 2)).toBe(0); // interleaved
    expect(contextGroupSize([0, 0, 0, 1], 2)).toBe(0); // unequal
    expect(contextGroupSize([0, 0, 1, 1], 3)).toBe(0); // a context row unused
  });
});

describe('contextRows', () => {
  const cases: [string, number[]][] = [
    ['grouped (2 captions per image)', [0, 0, 1, 1, 2, 2]],
    ['identity', [0, 1, 2]],
    ['irregular (gathered)', [2, 0, 0, 1, 2]],
  ];
  for (const [name, rows] of cases) {
    for (const masked of [false, true]) {
      it(`${name}${masked ? ', padded context' : ''}: equals attending to copied context rows`, () => {
        const m = crossAttention();
        const rng = new Rng(7);
        const x = randomTensor([rows.length, 3, D], rng);
        const context = randomTensor([3, 5, KV], rng);
        const mask = masked
          ? paddingMask(
              tf.tensor2d([
                [1, 1, 1, 0, 0],
                [1, 1, 1, 1, 1],
                [1, 0, 0, 0, 0],
              ]),
              BERT_MASK_VALUE,
            )
          : null;
        const want = copied(m, x, context, rows, mask);
        const got = m.forward(x, { context, contextRows: rows, mask, outputAttentions: true });
        expect(maxAbsDiff(got.output, want.output)).toBeLessThan(1e-5);
        expect(maxAbsDiff(got.attentions as tf.Tensor, want.attentions as tf.Tensor)).toBeLessThan(1e-6);
      });
    }
  }

  it('gradients equal those through copied context rows', () => {
    const m = crossAttention(3);
    const rng = new Rng(9);
    const x = randomTensor([4, 2, D], rng);
    const context = randomTensor([2, 5, KV], rng);
    const rows = [0, 0, 1, 1];
    const w = randomTensor([4, 2, D], rng);
    const params = m.namedParameters().map(([, p]) => p);
    const loss = (shared: boolean) => () =>
      tf.sum(
        tf.mul(shared ? m.forward(x, { context, contextRows: rows }).output : copied(m, x, context, rows, null).output, w),
      ) as tf.Scalar;
    const a = tf.variableGrads(loss(true), params).grads;
    const b = tf.variableGrads(loss(false), params).grads;
    for (const p of params) expect(maxAbsDiff(a[p.name] as tf.Tensor, b[p.name] as tf.Tensor)).toBeLessThan(1e-5);
    const gx = tf.grad((c: tf.Tensor) => tf.sum(tf.mul(m.forward(x, { context: c, contextRows: rows }).output, w)))(context);
    const gxRef = tf.grad((c: tf.Tensor) => tf.sum(tf.mul(copied(m, x, c, rows, null).output, w)))(context);
    expect(maxAbsDiff(gx, gxRef)).toBeLessThan(1e-5);
  });

  it('a row map of the wrong length is a typed error', () => {
    const m = crossAttention();
    const x = tf.zeros([3, 1, D]);
    expect(() => m.forward(x, { context: tf.zeros([2, 4, KV]), contextRows: [0, 1] })).toThrow(
      /contextRows has 2 entries for 3 query rows/,
    );
  });

  it('leaks nothing', () => {
    const m = crossAttention();
    const x = tf.zeros([4, 1, D]);
    const c = tf.zeros([2, 4, KV]);
    expectNoLeak(() => tf.dispose(m.forward(x, { context: c, contextRows: [0, 0, 1, 1] }).output));
  });
});

describe('cross cache reordered by beam search', () => {
  it('remaps rows without copying keys/values, and attends as a gathered cache would', () => {
    const m = crossAttention(5);
    const rng = new Rng(11);
    const context = randomTensor([2, 5, KV], rng);
    const first = randomTensor([2, 1, D], rng);
    const cache = new AttentionCache('cross');
    tf.dispose(m.forward(first, { context, cache }).output);
    const key = cache.key;
    cache.reorder([0, 0, 0, 1, 1, 1]); // expand to 3 beams per image
    cache.reorder([1, 0, 0, 3, 5, 4]); // beams swap within their image
    expect(cache.key).toBe(key); // nothing copied
    expect(cache.rowSources).toEqual([0, 0, 0, 1, 1, 1]);
    cache.reorder([0, 1, 2, 3, 4, 0]); // a row taken from another image: irregular, gathered at attention time
    expect(cache.rowSources).toEqual([0, 0, 0, 1, 1, 0]);
    const step = randomTensor([6, 1, D], rng);
    const got = m.forward(step, { cache }).output;
    const want = copied(m, step, context, [0, 0, 0, 1, 1, 0], null).output;
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-5);
    expect(() => cache.reorder([6])).toThrow(/outside/);
    cache.dispose();
    expect(cache.rowSources).toBeNull();
  });
});
