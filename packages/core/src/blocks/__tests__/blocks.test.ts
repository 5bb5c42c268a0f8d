// Transformer layers: names per preset, padding invariance, drop-path and layer scale, the
// Multiway layer against the plain layer with one expert's weights, gradients by finite
// differences (Multiway layer, attentional pooler), no leaks.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { paddingMask } from '../../attention/masks.js';
import { expectNoLeak, gradCheck, maxAbsDiff, probe, randomTensor } from '../../attention/__tests__/helpers.js';
import type { Module } from '../../nn/module.js';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { AttentionPooler } from '../attention-pooler.js';
import { BertLayer } from '../bert-layer.js';
import { DropPath, dropPathSchedule } from '../drop-path.js';
import { TORCHSCALE_EXPERTS, VLMO_EXPERTS, VLMO_FUSION_EXPERTS } from '../multiway.js';
import { MultiwayLayer, type MultiwayLayerConfig } from '../multiway-layer.js';
import { OPEN_CLIP_LAYER_NAMES, TIMM_VIT_LAYER_NAMES, TORCHSCALE_LAYER_NAMES, TransformerLayer } from '../transformer-layer.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

/**
 * The layer layout these tests exercise with suffix-named experts: VLMo's `Block` (fused qkv with q/v
 * biases, layer scale, expert FFNs and their norms). The model's own preset lives in @vl/vlmo.
 */
const SUFFIX_EXPERT_LAYOUT = {
  qkvLayout: 'fused',
  qkvBias: 'qv',
  layerScaleInit: 0.1,
  layerNormEps: 1e-6,
  names: TIMM_VIT_LAYER_NAMES,
  experts: VLMO_EXPERTS,
  multiwayParts: ['norm2', 'mlp'],
} as const satisfies Partial<MultiwayLayerConfig>;

/**
 * The layer layout these tests exercise with child-named experts: torchscale's `EncoderLayer` as BEiT-3
 * builds it (separate q/k/v with biases, sub-LN, eps 1e-5, every part multiway as A/B). The model's own
 * preset lives in @vl/beit3.
 */
const CHILD_EXPERT_LAYOUT = {
  qkvLayout: 'separate',
  qkvBias: 'full',
  subLn: true,
  layerNormEps: 1e-5,
  names: TORCHSCALE_LAYER_NAMES,
  experts: TORCHSCALE_EXPERTS,
  multiwayParts: ['norm1', 'attention', 'norm2', 'mlp'],
} as const satisfies Partial<MultiwayLayerConfig>;

const D = 8;
const keys = (m: Module) => [...m.stateDict().keys()].sort();

/** O(1) weights (LayerNorm weights around 1) so that every parameter visibly matters. */
function randomize(m: Module, seed: number) {
  const rng = new Rng(seed);
  for (const [name, p] of m.namedParameters()) {
    const noise = randomTensor(p.shape, rng, p.shape.length === 1 ? 0.2 : 0.5);
    p.assign(/(norm|LayerNorm|ln_)[^.]*\.(\w\.)?weight$|gamma/.test(name) ? tf.add(noise, 1) : noise);
    noise.dispose();
  }
}

function params(m: Module): Record<string, tf.Variable> {
  return Object.fromEntries(m.namedParameters());
}

const bertConfig = { hiddenSize: D, numAttentionHeads: 2, intermediateSize: 16, encoderHiddenSize: 6 };

describe('BertLayer (post-LN)', () => {
  it('has the HF names, crossattention only when asked', () => {
    const plain = new BertLayer(bertConfig, new Rng(0));
    expect(keys(plain)).toEqual(
      [
        'attention.self.query.weight',
        'attention.self.query.bias',
        'attention.self.key.weight',
        'attention.self.key.bias',
        'attention.self.value.weight',
        'attention.self.value.bias',
        'attention.output.dense.weight',
        'attention.output.dense.bias',
        'attention.output.LayerNorm.weight',
        'attention.output.LayerNorm.bias',
        'intermediate.dense.weight',
        'intermediate.dense.bias',
        'output.dense.weight',
        'output.dense.bias',
        'output.LayerNorm.weight',
        'output.LayerNorm.bias',
      ].sort(),
    );
    const cross = new BertLayer(bertConfig, new Rng(0), { crossAttention: true });
    expect(cross.stateDict().get('crossattention.self.key.weight')?.shape).toEqual([D, 6]);
    expect(keys(cross).filter((k) => k.startsWith('crossattention.')).length).toBe(10);
  });

  it('padding does not change real tokens, with and without cross-attention', () => {
    const layer = new BertLayer(bertConfig, new Rng(0), { crossAttention: true });
    randomize(layer, 1);
    const x = randomTensor([2, 5, D], new Rng(2));
    const image = randomTensor([2, 3, 6], new Rng(3));
    const mask = paddingMask(
      tf.tensor2d([
        [1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0],
      ]),
    );
    const padded = layer.forward(x, { attentionMask: mask, encoderHiddenStates: image }).hidden;
    const real = layer.forward(tf.slice(x, [1, 0, 0], [1, 3, D]), { encoderHiddenStates: tf.slice(image, [1, 0, 0], [1, 3, 6]) }).hidden;
    expect(maxAbsDiff(tf.slice(padded, [1, 0, 0], [1, 3, D]), real)).toBeLessThan(1e-5);
    // Without image features the cross-attention sub-layer is skipped (BLIP text-only mode).
    const textOnly = layer.forward(x).hidden;
    expect(maxAbsDiff(textOnly, layer.forward(x, { encoderHiddenStates: image }).hidden)).toBeGreaterThan(1e-3);
  });

  it('does not leak', () => {
    const layer = new BertLayer(bertConfig, new Rng(0), { crossAttention: true });
    const x = randomTensor([2, 4, D], new Rng(2));
    const image = randomTensor([2, 3, 6], new Rng(3));
    expectNoLeak(() => layer.forward(x, { encoderHiddenStates: image, outputAttentions: true }));
  });
});

describe('TransformerLayer (pre-LN)', () => {
  const base = { hiddenSize: D, numHeads: 2, intermediateSize: 16 };

  it('uses BLIP, timm, open_clip and torchscale names', () => {
    const blipNames = { norm1: 'layer_norm1', attn: 'self_attn', norm2: 'layer_norm2', attention: { qkv: 'qkv', out: 'projection' } };
    expect(keys(new TransformerLayer({ ...base, names: blipNames }, new Rng(0)))).toEqual(
      [
        'layer_norm1.weight',
        'layer_norm1.bias',
        'self_attn.qkv.weight',
        'self_attn.qkv.bias',
        'self_attn.projection.weight',
        'self_attn.projection.bias',
        'layer_norm2.weight',
        'layer_norm2.bias',
        'mlp.fc1.weight',
        'mlp.fc1.bias',
        'mlp.fc2.weight',
        'mlp.fc2.bias',
      ].sort(),
    );
    const timm = new TransformerLayer({ ...base, names: TIMM_VIT_LAYER_NAMES, qkvBias: 'qv', layerScaleInit: 0.1 }, new Rng(0));
    // timm's names are the default.
    expect(keys(new TransformerLayer({ ...base, qkvBias: 'qv', layerScaleInit: 0.1 }, new Rng(0)))).toEqual(keys(timm));
    expect(keys(timm)).toEqual(
      [
        'norm1.weight',
        'norm1.bias',
        'attn.qkv.weight',
        'attn.q_bias',
        'attn.v_bias',
        'attn.proj.weight',
        'attn.proj.bias',
        'norm2.weight',
        'norm2.bias',
        'mlp.fc1.weight',
        'mlp.fc1.bias',
        'mlp.fc2.weight',
        'mlp.fc2.bias',
        'gamma_1',
        'gamma_2',
      ].sort(),
    );
    const clipCross = new TransformerLayer(
      { ...base, names: OPEN_CLIP_LAYER_NAMES, qkvLayout: 'in_proj', attentionKind: 'cross', kvSize: 6, layerScaleInit: 1 },
      new Rng(0),
    );
    expect(keys(clipCross)).toEqual(
      [
        'ln_1.weight',
        'ln_1.bias',
        'ln_1_kv.weight',
        'ln_1_kv.bias',
        'attn.q_proj_weight',
        'attn.k_proj_weight',
        'attn.v_proj_weight',
        'attn.in_proj_bias',
        'attn.out_proj.weight',
        'attn.out_proj.bias',
        'ln_2.weight',
        'ln_2.bias',
        'mlp.c_fc.weight',
        'mlp.c_fc.bias',
        'mlp.c_proj.weight',
        'mlp.c_proj.bias',
        'ls_1.gamma',
        'ls_2.gamma',
      ].sort(),
    );
    const out = clipCross.forward(randomTensor([2, 3, D], new Rng(1)), { context: randomTensor([2, 5, 6], new Rng(2)) });
    expect(out.hidden.shape).toEqual([2, 3, D]);
    const ts = new TransformerLayer({ ...base, names: TORCHSCALE_LAYER_NAMES, qkvLayout: 'separate', subLn: true }, new Rng(0));
    expect(keys(ts)).toContain('self_attn.inner_attn_ln.weight');
    expect(keys(ts)).toContain('ffn.ffn_layernorm.weight');
    expect(keys(ts)).toContain('self_attn.out_proj.weight');
  });

  it('layer scale multiplies each branch; γ = 0 makes the layer the identity', () => {
    const layer = new TransformerLayer({ ...base, layerScaleInit: 0 }, new Rng(0));
    const x = randomTensor([1, 3, D], new Rng(1));
    expect(maxAbsDiff(layer.forward(x).hidden, x)).toBe(0);
  });

  it('drop-path: seeded per-sample drops in training, identity in eval', () => {
    const dp = new DropPath(0.5);
    const x = tf.ones([64, 2, 3]);
    const a = dp.forward(x, new Rng(3)).arraySync() as number[][][];
    const b = dp.forward(x, new Rng(3)).arraySync() as number[][][];
    expect(a).toEqual(b);
    const perSample = a.map((s) => s[0]![0]!);
    for (const [i, s] of a.entries()) expect(s.flat().every((v) => v === perSample[i])).toBe(true);
    expect(new Set(perSample)).toEqual(new Set([0, 2]));
    expect(() => dp.forward(x)).toThrow(/needs an Rng/);
    dp.eval();
    expect(dp.forward(x)).toBe(x);
    expect(dropPathSchedule(0.1, 3)).toEqual([0, 0.05, 0.1]);
    // In a layer, a seeded training forward is reproducible.
    const layer = new TransformerLayer({ ...base, dropPath: 0.5 }, new Rng(0));
    const y = randomTensor([4, 3, D], new Rng(1));
    expect(maxAbsDiff(layer.forward(y, { rng: new Rng(9) }).hidden, layer.forward(y, { rng: new Rng(9) }).hidden)).toBe(0);
  });

  it('does not leak', () => {
    const layer = new TransformerLayer({ ...base, layerScaleInit: 0.1 }, new Rng(0));
    const x = randomTensor([2, 3, D], new Rng(1));
    expectNoLeak(() => layer.forward(x, { outputAttentions: true }));
  });
});

/** Copies a multiway layer's shared weights and one expert's weights into a plain layer. */
function loadExpert(plain: TransformerLayer, mw: MultiwayLayer, rename: (key: string) => string | null) {
  const dict = new Map<string, tf.Tensor>();
  for (const [k, v] of mw.stateDict()) {
    const to = rename(k);
    if (to !== null) dict.set(to, v);
  }
  plain.loadStateDict(dict);
}

describe('MultiwayLayer', () => {
  const base = { hiddenSize: D, numHeads: 2, intermediateSize: 16 };

  it('VLMo names: shared attention, mlp_imag/mlp_text, mlp_vl only with the VL expert', () => {
    const layer = new MultiwayLayer({ ...base, ...SUFFIX_EXPERT_LAYOUT, experts: VLMO_FUSION_EXPERTS }, new Rng(0));
    const k = keys(layer);
    for (const key of ['norm1.weight', 'attn.qkv.weight', 'attn.q_bias', 'attn.v_bias', 'attn.proj.weight', 'gamma_1', 'gamma_2'])
      expect(k).toContain(key);
    for (const e of ['imag', 'text', 'vl']) {
      expect(k).toContain(`norm2_${e}.weight`);
      expect(k).toContain(`mlp_${e}.fc1.weight`);
      expect(k).toContain(`mlp_${e}.fc2.bias`);
    }
    expect(keys(new MultiwayLayer({ ...base, ...SUFFIX_EXPERT_LAYOUT }, new Rng(0))).some((s) => s.includes('_vl'))).toBe(false);
  });

  it('fed one modality, equals the plain layer with that expert (VLMo)', () => {
    const mw = new MultiwayLayer({ ...base, ...SUFFIX_EXPERT_LAYOUT, experts: VLMO_FUSION_EXPERTS }, new Rng(0));
    randomize(mw, 1);
    const x = randomTensor([2, 5, D], new Rng(2));
    const mask = paddingMask(
      tf.tensor2d([
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0],
      ]),
    );
    for (const [route, suffix] of [
      ['image', 'imag'],
      ['text', 'text'],
      ['vl', 'vl'],
    ] as const) {
      const plain = new TransformerLayer({ ...base, names: TIMM_VIT_LAYER_NAMES, qkvBias: 'qv', layerScaleInit: 0.1 }, new Rng(5));
      loadExpert(plain, mw, (k) => {
        const m = /^(norm2|mlp)_(imag|text|vl)(\..*)$/.exec(k);
        if (!m) return k;
        return m[2] === suffix ? `${m[1]}${m[3]}` : null;
      });
      const got = mw.forward(x, { route, mask }).hidden;
      expect(maxAbsDiff(got, plain.forward(x, { mask }).hidden)).toBeLessThan(1e-5);
    }
  });

  it('a split route gives each part its own expert', () => {
    const mw = new MultiwayLayer({ ...base, ...SUFFIX_EXPERT_LAYOUT }, new Rng(0));
    randomize(mw, 3);
    const x = randomTensor([1, 5, D], new Rng(4));
    // Attention is shared, so per position the split output equals the output of the route its
    // token belongs to: the FFN is the only per-token difference.
    const split = mw.forward(x, {
      route: [
        { expert: 'image', length: 2 },
        { expert: 'text', length: 3 },
      ],
    }).hidden;
    const allVision = mw.forward(x, { route: 'image' }).hidden;
    const allLanguage = mw.forward(x, { route: 'text' }).hidden;
    expect(maxAbsDiff(tf.slice(split, [0, 0, 0], [1, 2, D]), tf.slice(allVision, [0, 0, 0], [1, 2, D]))).toBeLessThan(1e-6);
    expect(maxAbsDiff(tf.slice(split, [0, 2, 0], [1, 3, D]), tf.slice(allLanguage, [0, 2, 0], [1, 3, D]))).toBeLessThan(1e-6);
    expect(maxAbsDiff(allVision, allLanguage)).toBeGreaterThan(1e-3);
  });

  it('BEiT-3 mode: attention projections and norms multiway too; one modality equals the plain torchscale layer', () => {
    const mw = new MultiwayLayer({ ...base, ...CHILD_EXPERT_LAYOUT }, new Rng(0));
    const k = keys(mw);
    for (const key of [
      'self_attn_layer_norm.A.weight',
      'self_attn_layer_norm.B.bias',
      'self_attn.q_proj.A.weight',
      'self_attn.k_proj.B.bias',
      'self_attn.v_proj.A.weight',
      'self_attn.out_proj.B.weight',
      'self_attn.inner_attn_ln.A.weight',
      'final_layer_norm.B.weight',
      'ffn.A.fc1.weight',
      'ffn.B.ffn_layernorm.weight',
      'ffn.B.fc2.bias',
    ])
      expect(k).toContain(key);
    randomize(mw, 6);
    const x = randomTensor([2, 4, D], new Rng(7));
    for (const [route, tag] of [
      ['image', 'A'],
      ['text', 'B'],
    ] as const) {
      const plain = new TransformerLayer(
        { ...base, names: TORCHSCALE_LAYER_NAMES, qkvLayout: 'separate', subLn: true, layerNormEps: 1e-5 },
        new Rng(8),
      );
      loadExpert(plain, mw, (key) => {
        const m = /^(.*)\.(A|B)(\..*)$/.exec(key);
        return !m ? key : m[2] === tag ? `${m[1]}${m[3]}` : null;
      });
      expect(maxAbsDiff(mw.forward(x, { route }).hidden, plain.forward(x).hidden)).toBeLessThan(1e-5);
    }
  });

  it('gradients match finite differences with a split route (VLMo and BEiT-3 modes)', () => {
    const x = tf.variable(randomTensor([1, 4, D], new Rng(9), 0.7));
    const p = probe([1, 4, D], 3);
    const vlmo = new MultiwayLayer({ ...base, ...SUFFIX_EXPERT_LAYOUT }, new Rng(0));
    randomize(vlmo, 10);
    const textFirst = [
      { expert: 'text', length: 2 },
      { expert: 'image', length: 2 },
    ];
    gradCheck(() => p(vlmo.forward(x, { route: textFirst }).hidden), { x, ...params(vlmo) }, { samples: 2 });
    const beit3 = new MultiwayLayer({ ...base, ...CHILD_EXPERT_LAYOUT }, new Rng(0));
    randomize(beit3, 11);
    const imageFirst = [
      { expert: 'image', length: 1 },
      { expert: 'text', length: 3 },
    ];
    gradCheck(() => p(beit3.forward(x, { route: imageFirst }).hidden), { x, ...params(beit3) }, { samples: 1 });
  });

  it('does not leak', () => {
    const mw = new MultiwayLayer({ ...base, ...CHILD_EXPERT_LAYOUT }, new Rng(0));
    const x = randomTensor([2, 4, D], new Rng(1));
    const route = [
      { expert: 'image', length: 3 },
      { expert: 'text', length: 1 },
    ];
    expectNoLeak(() => mw.forward(x, { route, outputAttentions: true }));
    const vlmo = new MultiwayLayer({ ...base, ...SUFFIX_EXPERT_LAYOUT, experts: VLMO_FUSION_EXPERTS }, new Rng(0));
    expectNoLeak(() => vlmo.forward(x, { route: 'vl' }));
    expectNoLeak(() =>
      vlmo.forward(x, {
        route: [
          { expert: 'text', length: 1 },
          { expert: 'image', length: 3 },
        ],
      }),
    );
  });
});

describe('AttentionPooler', () => {
  it('has open_clip names, pools to [B, Q, D], and its gradients match finite differences', () => {
    const pooler = new AttentionPooler({ dModel: D, contextDim: 6, numHeads: 2, numQueries: 3 }, new Rng(0));
    expect(keys(pooler)).toEqual(
      [
        'query',
        'attn.q_proj_weight',
        'attn.k_proj_weight',
        'attn.v_proj_weight',
        'attn.in_proj_bias',
        'attn.out_proj.weight',
        'attn.out_proj.bias',
        'ln_q.weight',
        'ln_q.bias',
        'ln_k.weight',
        'ln_k.bias',
      ].sort(),
    );
    const same = new AttentionPooler({ dModel: D, contextDim: D, numHeads: 2, numQueries: 1 }, new Rng(0));
    expect(keys(same)).toContain('attn.in_proj_weight');
    randomize(pooler, 1);
    const x = tf.variable(randomTensor([2, 5, 6], new Rng(2), 0.7));
    const out = pooler.forward(x, { outputAttentions: true });
    expect(out.pooled.shape).toEqual([2, 3, D]);
    expect(out.attentions?.shape).toEqual([2, 2, 3, 5]);
    const p = probe([2, 3, D], 4);
    gradCheck(() => p(pooler.forward(x).pooled), { x, ...params(pooler) }, { samples: 3 });
    expectNoLeak(() => pooler.forward(x));
  });
});
