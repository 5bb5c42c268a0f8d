// Multi-head attention: masks (padding, causal), weight layouts agree, KV cache equals full
// recomputation, finite-difference gradients, no leaks.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { AttentionCache, KVCache } from '../kv-cache.js';
import { BERT_MASK_VALUE, causalMask, extendedAttentionMask, FLOAT32_MIN, paddingMask, prefixCausalAllowed } from '../masks.js';
import { BERT_ATTENTION_NAMES, MultiHeadAttention } from '../multi-head-attention.js';
import { expectNoLeak, gradCheck, maxAbsDiff, probe, randomTensor } from './helpers.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

const D = 8;
const H = 2;

function bertAttention(seed = 0, kvSize = D) {
  return new MultiHeadAttention({ hiddenSize: D, numHeads: H, kvSize, layout: 'separate', names: BERT_ATTENTION_NAMES }, new Rng(seed));
}

/** Weights O(1) so that mistakes are visible (the 0.02 init makes attention almost uniform). */
function scaleUp(m: MultiHeadAttention, seed = 1) {
  const rng = new Rng(seed);
  for (const [, p] of m.namedParameters()) p.assign(randomTensor(p.shape, rng, p.shape.length === 1 ? 0.3 : 0.5));
}

describe('masks', () => {
  it('padding mask is (1 - m) · value over keys, broadcast [B, 1, 1, S]', () => {
    const m = paddingMask(tf.tensor2d([[1, 1, 0]]), BERT_MASK_VALUE);
    expect(m.shape).toEqual([1, 1, 1, 3]);
    expect(Array.from(m.dataSync(), (v) => v + 0)).toEqual([0, 0, -10000]); // + 0 turns -0 into 0
    expect(paddingMask(tf.tensor2d([[0, 1]]), FLOAT32_MIN).dataSync()[0]).toBe(Math.fround(FLOAT32_MIN));
  });

  it('causal mask lets query i see keys ≤ past + i, and combining never doubles the value', () => {
    expect(Array.from(causalMask(2, 3, -1).dataSync(), (v) => v + 0)).toEqual([0, 0, -1, 0, 0, 0]);
    const m = extendedAttentionMask({
      attentionMask: tf.tensor2d([[1, 1, 0]]),
      causal: true,
      queryLength: 3,
      keyLength: 3,
      maskValue: FLOAT32_MIN,
    }) as tf.Tensor;
    const v = Math.fround(FLOAT32_MIN);
    expect(m.shape).toEqual([1, 1, 3, 3]);
    expect(Array.from(m.dataSync(), (x) => x + 0)).toEqual([0, v, v, 0, 0, v, 0, 0, v]);
    expect(() => extendedAttentionMask({ attentionMask: tf.ones([1, 2]), queryLength: 1, keyLength: 3 })).toThrow(/covers 2 keys/);
  });
});

describe('prefixCausalAllowed', () => {
  it('prefix rows see the prefix only; the rest see the prefix and themselves causally (by hand)', () => {
    // prefix 2, causal 3: rows 0–1 see keys 0–1; row 2 sees 0–2, row 3 sees 0–3, row 4 sees 0–4.
    expect(prefixCausalAllowed(2, 3).arraySync()).toEqual([
      [1, 1, 0, 0, 0],
      [1, 1, 0, 0, 0],
      [1, 1, 1, 0, 0],
      [1, 1, 1, 1, 0],
      [1, 1, 1, 1, 1],
    ]);
    expect(prefixCausalAllowed(0, 2).arraySync()).toEqual([
      [1, 0],
      [1, 1],
    ]);
    expect(prefixCausalAllowed(2, 0).arraySync()).toEqual([
      [1, 1],
      [1, 1],
    ]);
    expect(() => prefixCausalAllowed(-1, 2)).toThrow(/non-negative integers/);
  });

  it('its last rows equal the causal mask of a cache holding the prefix and the earlier tokens', () => {
    const full = prefixCausalAllowed(3, 4);
    const lastTwo = tf.slice(full, [5, 0], [2, 7]);
    const causal = tf.add(tf.div(causalMask(2, 7, -1), 1), 1); // allowed = 1 + mask / 1 (mask is 0 or −1)
    expect(Array.from(lastTwo.dataSync())).toEqual(Array.from(tf.reshape(causal, [2, 7]).dataSync()));
  });
});

describe('MultiHeadAttention', () => {
  it('padding does not change the outputs of real tokens (both mask values)', () => {
    const attn = bertAttention();
    scaleUp(attn);
    const x = randomTensor([2, 5, D], new Rng(3));
    const mask = tf.tensor2d([
      [1, 1, 1, 1, 1],
      [1, 1, 1, 0, 0],
    ]);
    for (const value of [BERT_MASK_VALUE, FLOAT32_MIN]) {
      const padded = attn.forward(x, { mask: paddingMask(mask, value) }).output;
      const realOnly = attn.forward(tf.slice(x, [1, 0, 0], [1, 3, D])).output;
      expect(maxAbsDiff(tf.slice(padded, [1, 0, 0], [1, 3, D]), realOnly)).toBeLessThan(1e-5);
      // Row 0 has no padding: same as running it alone.
      expect(maxAbsDiff(tf.slice(padded, [0, 0, 0], [1, 5, D]), attn.forward(tf.slice(x, [0, 0, 0], [1, 5, D])).output)).toBeLessThan(1e-5);
    }
  });

  it('returns attention probabilities: rows sum to 1, padded keys get 0', () => {
    const attn = bertAttention();
    const x = randomTensor([1, 4, D], new Rng(4));
    const { attentions } = attn.forward(x, { mask: paddingMask(tf.tensor2d([[1, 1, 1, 0]])), outputAttentions: true });
    expect(attentions?.shape).toEqual([1, H, 4, 4]);
    const p = (attentions as tf.Tensor).arraySync() as number[][][][];
    for (const row of p[0]!.flat()) {
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
      expect(row[3]).toBe(0);
    }
  });

  it('causal attention never leaks the future: perturbing token t leaves outputs < t unchanged', () => {
    const attn = bertAttention();
    scaleUp(attn);
    const x = randomTensor([1, 6, D], new Rng(5));
    const bump = tf.concat([tf.zeros([1, 4, D]), tf.fill([1, 2, D], 3)], 1); // perturb tokens 4, 5
    const a = attn.forward(x, { causal: true }).output;
    const b = attn.forward(tf.add(x, bump), { causal: true }).output;
    expect(maxAbsDiff(tf.slice(a, [0, 0, 0], [1, 4, D]), tf.slice(b, [0, 0, 0], [1, 4, D]))).toBe(0);
    expect(maxAbsDiff(tf.slice(a, [0, 4, 0], [1, 2, D]), tf.slice(b, [0, 4, 0], [1, 2, D]))).toBeGreaterThan(1e-3);
    // Without the causal mask the perturbation reaches every position.
    const c = attn.forward(x).output;
    const d = attn.forward(tf.add(x, bump)).output;
    expect(maxAbsDiff(tf.slice(c, [0, 0, 0], [1, 1, D]), tf.slice(d, [0, 0, 0], [1, 1, D]))).toBeGreaterThan(1e-3);
  });

  it('causal flag combined with an additive bias keeps the bias where allowed', () => {
    const attn = bertAttention();
    scaleUp(attn);
    const x = randomTensor([1, 3, D], new Rng(12));
    const bias = randomTensor([1, H, 3, 3], new Rng(13));
    const viaFlag = attn.forward(x, { mask: bias, causal: true }).output;
    const viaMask = attn.forward(x, { mask: tf.add(bias, causalMask(3, 3)) }).output;
    expect(maxAbsDiff(viaFlag, viaMask)).toBeLessThan(1e-5);
  });

  it('fused qkv, in_proj and separate q/k/v layouts compute the same function', () => {
    const sep = new MultiHeadAttention({ hiddenSize: D, numHeads: H, layout: 'separate', names: { out: 'proj' } }, new Rng(0));
    scaleUp(sep);
    const sd = sep.stateDict();
    const get = (k: string) => sd.get(k) as tf.Tensor;
    const fused = new MultiHeadAttention({ hiddenSize: D, numHeads: H, layout: 'fused' }, new Rng(9));
    expect([...fused.stateDict().keys()]).toEqual(['qkv.weight', 'qkv.bias', 'proj.weight', 'proj.bias']);
    const w = tf.concat([get('query.weight'), get('key.weight'), get('value.weight')]);
    const b = tf.concat([get('query.bias'), get('key.bias'), get('value.bias')]);
    fused.loadStateDict({ 'qkv.weight': w, 'qkv.bias': b, 'proj.weight': get('proj.weight'), 'proj.bias': get('proj.bias') });
    const inProj = new MultiHeadAttention({ hiddenSize: D, numHeads: H, layout: 'in_proj' }, new Rng(9));
    expect([...inProj.stateDict().keys()]).toEqual(['in_proj_weight', 'in_proj_bias', 'out_proj.weight', 'out_proj.bias']);
    inProj.loadStateDict({ in_proj_weight: w, in_proj_bias: b, 'out_proj.weight': get('proj.weight'), 'out_proj.bias': get('proj.bias') });
    const x = randomTensor([2, 5, D], new Rng(6));
    const ref = sep.forward(x, { causal: true }).output;
    expect(maxAbsDiff(fused.forward(x, { causal: true }).output, ref)).toBeLessThan(1e-5);
    expect(maxAbsDiff(inProj.forward(x, { causal: true }).output, ref)).toBeLessThan(1e-5);
    // Cross-attention through in_proj with a different context width keeps three matrices.
    const cross = new MultiHeadAttention({ hiddenSize: D, numHeads: H, kvSize: 6, layout: 'in_proj' }, new Rng(1));
    expect([...cross.stateDict().keys()]).toEqual([
      'q_proj_weight',
      'k_proj_weight',
      'v_proj_weight',
      'in_proj_bias',
      'out_proj.weight',
      'out_proj.bias',
    ]);
    expect(cross.forward(x, { context: randomTensor([2, 3, 6], new Rng(2)) }).output.shape).toEqual([2, 5, D]);
  });

  it("qkvBias 'qv' registers q_bias and v_bias and leaves the key unbiased (BEiT/VLMo)", () => {
    const attn = new MultiHeadAttention({ hiddenSize: D, numHeads: H, layout: 'fused', qkvBias: 'qv' }, new Rng(0));
    expect([...attn.stateDict().keys()].sort()).toEqual(['proj.bias', 'proj.weight', 'q_bias', 'qkv.weight', 'v_bias']);
    scaleUp(attn);
    // A key bias adds the same q·b_k to every score of a query, which softmax ignores; so the
    // check is that it is absent from the parameters and the output is finite and shaped.
    expect(attn.forward(randomTensor([1, 3, D], new Rng(1))).output.shape).toEqual([1, 3, D]);
  });

  it('cached self-attention, one token at a time, equals causal recomputation', () => {
    const attn = bertAttention();
    scaleUp(attn);
    const x = randomTensor([2, 5, D], new Rng(8));
    const full = attn.forward(x, { causal: true }).output;
    const cache = new AttentionCache('self');
    const steps: tf.Tensor[] = [];
    // First a 2-token prompt, then single tokens.
    steps.push(attn.forward(tf.slice(x, [0, 0, 0], [2, 2, D]), { causal: true, cache }).output);
    for (let t = 2; t < 5; t++) steps.push(attn.forward(tf.slice(x, [0, t, 0], [2, 1, D]), { causal: true, cache }).output);
    expect(cache.length).toBe(5);
    expect(maxAbsDiff(tf.concat(steps, 1), full)).toBeLessThan(1e-5);
    cache.dispose();
    expect(cache.length).toBe(0);
  });

  it('cross-attention cache projects the image once and reuses it; reorder gathers rows', () => {
    const attn = bertAttention(0, 6);
    scaleUp(attn);
    const image = randomTensor([2, 3, 6], new Rng(9));
    const x = randomTensor([2, 2, D], new Rng(10));
    const cache = new AttentionCache('cross');
    const first = attn.forward(tf.slice(x, [0, 0, 0], [2, 1, D]), { context: image, cache }).output;
    const k0 = cache.key;
    // The second step passes no context: the cached keys/values are used.
    const second = attn.forward(tf.slice(x, [0, 1, 0], [2, 1, D]), { cache }).output;
    expect(cache.key).toBe(k0);
    const full = attn.forward(x, { context: image }).output;
    expect(maxAbsDiff(tf.concat([first, second], 1), full)).toBeLessThan(1e-5);
    cache.reorder([1, 1]);
    const reordered = attn.forward(tf.slice(x, [1, 0, 0], [1, 1, D]).tile([2, 1, 1]), { cache }).output;
    const expected = attn.forward(tf.slice(x, [1, 0, 0], [1, 1, D]), { context: tf.slice(image, [1, 0, 0], [1, 3, 6]) }).output;
    expect(maxAbsDiff(tf.slice(reordered, [0, 0, 0], [1, 1, D]), expected)).toBeLessThan(1e-5);
    expect(maxAbsDiff(tf.slice(reordered, [1, 0, 0], [1, 1, D]), expected)).toBeLessThan(1e-5);
    cache.dispose();
    // A self cache must not be given a context.
    expect(() => attn.forward(x, { context: image, cache: new AttentionCache('self') })).toThrow(/self-attention cache/);
  });

  it('truncate keeps the first positions of every self cache and frees what it drops', () => {
    const before = tf.memory().numTensors;
    const kv = new KVCache(2);
    const steps = tf.tensor4d(
      Float32Array.from({ length: 2 * H * 3 * 4 }, (_, i) => i),
      [2, H, 3, 4],
    );
    for (const l of kv.layers) {
      l.self.update(tf.clone(steps), tf.mul(steps, 2)); // the cache owns what it is given
      l.cross.update(tf.ones([2, H, 5, 4]), tf.ones([2, H, 5, 4]));
    }
    kv.truncate(2);
    expect(kv.length).toBe(2);
    const kept = tf.slice(steps, [0, 0, 0, 0], [2, H, 2, 4]);
    expect(maxAbsDiff(kv.layer(1).self.key as tf.Tensor, kept)).toBe(0);
    expect(tf.tidy(() => maxAbsDiff(kv.layer(1).self.value as tf.Tensor, tf.mul(kept, 2)))).toBe(0);
    expect(kv.layer(0).cross.length).toBe(5);
    kv.truncate(7); // longer than the cache: unchanged
    expect(kv.length).toBe(2);
    expect(() => kv.truncate(-1)).toThrow(/cannot truncate/);
    kv.truncate(0);
    expect(kv.layer(0).self.filled).toBe(false);
    tf.dispose([steps, kept]);
    kv.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('KVCache reorders and disposes every layer', () => {
    const before = tf.memory().numTensors;
    const kv = new KVCache(2);
    for (const l of kv.layers) l.self.update(tf.ones([2, H, 1, 4]), tf.ones([2, H, 1, 4]));
    expect(kv.length).toBe(1);
    kv.reorder(tf.tensor1d([0, 0, 1], 'int32'));
    expect(kv.layer(0).self.key?.shape).toEqual([3, H, 1, 4]);
    kv.dispose();
    expect(kv.length).toBe(0);
    expect(tf.memory().numTensors).toBeLessThanOrEqual(before + 1); // the index tensor passed in
  });

  it('gradients match finite differences (self with padding + causal, cross, fused)', () => {
    const rng = new Rng(11);
    const self = bertAttention(0);
    const cross = bertAttention(1, 6);
    scaleUp(self);
    scaleUp(cross, 2);
    const x = tf.variable(randomTensor([2, 3, D], rng, 0.7));
    const ctx = tf.variable(randomTensor([2, 4, 6], rng, 0.7));
    const mask = paddingMask(
      tf.tensor2d([
        [1, 1, 1],
        [1, 1, 0],
      ]),
    );
    const p1 = probe([2, 3, D], 1);
    const params = (m: MultiHeadAttention) => Object.fromEntries(m.namedParameters().map(([k, v]) => [k, v]));
    gradCheck(() => p1(self.forward(x, { mask, causal: true }).output), { x, ...params(self) }, { samples: 3 });
    gradCheck(() => p1(cross.forward(x, { context: ctx }).output), { x, ctx, ...params(cross) }, { samples: 3 });
    const fused = new MultiHeadAttention({ hiddenSize: D, numHeads: H, layout: 'fused', qkvBias: 'qv' }, new Rng(2));
    scaleUp(fused, 3);
    gradCheck(() => p1(fused.forward(x).output), { x, ...params(fused) }, { samples: 4 });
  });

  it('does not leak tensors, with or without a cache', () => {
    const attn = bertAttention(0);
    const cross = bertAttention(0, 6);
    const x = randomTensor([2, 3, D], new Rng(1));
    const image = randomTensor([2, 4, 6], new Rng(2));
    const mask = paddingMask(
      tf.tensor2d([
        [1, 1, 1],
        [1, 1, 0],
      ]),
    );
    expectNoLeak(() => attn.forward(x, { mask, causal: true, outputAttentions: true }));
    expectNoLeak(() => cross.forward(x, { context: image }));
    // With a cache, each step replaces the cached tensors by longer ones (same count).
    const cache = new AttentionCache('self');
    const step = tf.slice(x, [0, 0, 0], [2, 1, D]);
    expectNoLeak(() => attn.forward(step, { cache, causal: true }));
    cache.dispose();
  });
});
