// Multiway experts: routes by hand, typed errors for missing or bad routes (wrapper, layer, attention),
// N = 3 experts, gradients only where tokens went, finite differences, checkpoint keys of both presets
// against the official fixtures (key lists and strict loads of their layers), no leaks.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { expectNoLeak, gradCheck, probe, randomTensor } from '../../attention/__tests__/helpers.js';
import { MultiHeadAttention, TORCHSCALE_ATTENTION_NAMES } from '../../attention/multi-head-attention.js';
import { isVlError } from '../../errors.js';
import { FIXTURES_DIR } from '../../io/__tests__/helpers.js';
import { readSafetensorsFile } from '../../node/safetensors-file.js';
import { Linear } from '../../nn/layers.js';
import type { Module } from '../../nn/module.js';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { Multiway, type Route, TORCHSCALE_EXPERTS, VLMO_EXPERTS, VLMO_FUSION_EXPERTS } from '../multiway.js';
import { MultiwayLayer, type MultiwayLayerConfig } from '../multiway-layer.js';
import { Container } from '../path-module.js';
import { TIMM_VIT_LAYER_NAMES, TORCHSCALE_LAYER_NAMES, TransformerLayer } from '../transformer-layer.js';

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
const layerSizes = { hiddenSize: D, numHeads: 2, intermediateSize: 16 };

/** Three 1→1 experts with hand-set weights: text y = −x, image y = 2x + 1, vl y = 10x. */
function scalarExperts(): { owner: Container; mw: Multiway<Linear> } {
  const owner = new Container();
  const mw = Multiway.place(owner, 'mlp', VLMO_FUSION_EXPERTS, () => new Linear(1, 1, new Rng(0)));
  const set: Record<string, [number, number]> = { text: [-1, 0], imag: [2, 1], vl: [10, 0] };
  for (const [key, [w, b]] of Object.entries(set)) {
    const dict = owner.stateDict();
    (dict.get(`mlp_${key}.weight`) as tf.Variable).assign(tf.tensor2d([[w]]));
    (dict.get(`mlp_${key}.bias`) as tf.Variable).assign(tf.tensor1d([b]));
  }
  return { owner, mw };
}

function run(mw: Multiway<Linear>, x: tf.Tensor, route: Route | undefined): number[] {
  return tf.tidy(() => Array.from(mw.forward(x, route, (lin, part) => lin.forward(part)).dataSync()));
}

/** Calls fn, expects a VlError with code ROUTE_INVALID, and checks no tensor was left behind. */
function expectRouteError(fn: () => unknown, message: RegExp): void {
  const before = tf.memory().numTensors;
  let error: unknown = null;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(isVlError(error, 'ROUTE_INVALID'), String(error)).toBe(true);
  expect((error as Error).message).toMatch(message);
  expect(tf.memory().numTensors).toBe(before);
}

function randomize(m: Module, seed: number) {
  const rng = new Rng(seed);
  for (const [name, p] of m.namedParameters()) {
    const noise = randomTensor(p.shape, rng, p.shape.length === 1 ? 0.2 : 0.5);
    p.assign(/norm[^.]*\.(\w\.)?weight$|gamma/.test(name) ? tf.add(noise, 1) : noise);
    noise.dispose();
  }
}

describe('Multiway (N named experts)', () => {
  const seq = () => tf.tensor3d([[[1], [2], [3], [4]]]); // [1, 4, 1]

  it('names its experts as the checkpoints do: suffix siblings (VLMo) or children (torchscale)', () => {
    const { owner, mw } = scalarExperts();
    expect(mw.names).toEqual(['text', 'image', 'vl']);
    expect([...owner.stateDict().keys()]).toEqual([
      'mlp_text.weight',
      'mlp_text.bias',
      'mlp_imag.weight',
      'mlp_imag.bias',
      'mlp_vl.weight',
      'mlp_vl.bias',
    ]);
    const ts = new Container();
    Multiway.place(ts, 'encoder.layer_norm', TORCHSCALE_EXPERTS, () => new Linear(2, 2, new Rng(0)));
    expect([...ts.stateDict().keys()]).toEqual([
      'encoder.layer_norm.A.weight',
      'encoder.layer_norm.A.bias',
      'encoder.layer_norm.B.weight',
      'encoder.layer_norm.B.bias',
    ]);
  });

  it('one expert for all tokens, or each segment through its own expert (hand-computed)', () => {
    const x = seq();
    const { mw } = scalarExperts();
    expect(run(mw, x, 'text')).toEqual([-1, -2, -3, -4]);
    expect(run(mw, x, 'vl')).toEqual([10, 20, 30, 40]);
    // [text | image image | vl]: −1, 2·2+1, 2·3+1, 10·4.
    const three = [
      { expert: 'text', length: 1 },
      { expert: 'image', length: 2 },
      { expert: 'vl', length: 1 },
    ];
    expect(run(mw, x, three)).toEqual([-1, 5, 7, 40]);
    // Empty segments are skipped; an expert may come back later in the sequence.
    const back = [
      { expert: 'image', length: 1 },
      { expert: 'vl', length: 0 },
      { expert: 'text', length: 2 },
      { expert: 'image', length: 1 },
    ];
    expect(run(mw, x, back)).toEqual([3, -2, -3, 9]);
    expect(
      run(mw, x, [
        { expert: 'vl', length: 0 },
        { expert: 'image', length: 4 },
      ]),
    ).toEqual([3, 5, 7, 9]);
  });

  it('a missing, unknown or ill-fitting route is a typed error, not a default', () => {
    const x = seq();
    const { mw } = scalarExperts();
    expectRouteError(() => run(mw, x, undefined), /no route given.*text, image, vl/);
    expectRouteError(() => run(mw, x, 'vision'), /unknown expert "vision": this module has text, image, vl/);
    expectRouteError(() => run(mw, x, [{ expert: 'A', length: 4 }]), /unknown expert "A"/);
    const short = [
      { expert: 'text', length: 1 },
      { expert: 'image', length: 2 },
    ];
    expectRouteError(() => run(mw, x, short), /covers 3 tokens but the sequence has 4/);
    expectRouteError(
      () =>
        run(mw, x, [
          { expert: 'text', length: 5 },
          { expert: 'image', length: -1 },
        ]),
      /length -1/,
    );
    expectRouteError(
      () =>
        run(mw, x, [
          { expert: 'text', length: 1.5 },
          { expert: 'image', length: 2.5 },
        ]),
      /length 1.5/,
    );
    expectRouteError(() => run(mw, x, { split: 2 } as unknown as Route), /expert name or an array of segments/);
    // torchscale has no third expert.
    const ts = Multiway.place(new Container(), 'ffn', TORCHSCALE_EXPERTS, () => new Linear(1, 1, new Rng(0)));
    expect(ts.names).toEqual(['image', 'text']);
    expectRouteError(() => ts.forward(x, 'vl', (l, p) => l.forward(p)), /unknown expert "vl": this module has image, text/);
  });

  it('gradients match finite differences through a split route', () => {
    const owner = new Container();
    const mw = Multiway.place(owner, 'proj', VLMO_FUSION_EXPERTS, () => new Linear(3, 2, new Rng(1)));
    randomize(owner, 2);
    const xv = tf.variable(randomTensor([2, 5, 3], new Rng(3)));
    const route = [
      { expert: 'vl', length: 2 },
      { expert: 'text', length: 1 },
      { expert: 'image', length: 2 },
    ];
    const p = probe([2, 5, 2], 4);
    const f = () => p(tf.tanh(mw.forward(xv, route, (l, part) => l.forward(part))));
    const result = gradCheck(f, { x: xv, ...Object.fromEntries(owner.namedParameters()) }, { samples: 3 });
    expect(result.checked).toBe(3 + 3 * 3 + 3 * 2); // x; three weights [2, 3]; three biases [2], all of each
  });

  it('does not leak', () => {
    const { mw } = scalarExperts();
    const x = seq();
    expectNoLeak(() =>
      mw.forward(
        x,
        [
          { expert: 'text', length: 3 },
          { expert: 'vl', length: 1 },
        ],
        (l, p) => l.forward(p),
      ),
    );
    expectNoLeak(() => mw.forward(x, 'image', (l, p) => l.forward(p)));
  });
});

describe('Multiway layers built from TransformerLayer', () => {
  it('VLMo keys equal the official Block, in its state_dict order (vlmo-seed0 blocks.0)', () => {
    const official = [
      'gamma_1',
      'gamma_2',
      'norm1.weight',
      'norm1.bias',
      'attn.q_bias',
      'attn.v_bias',
      'attn.qkv.weight',
      'attn.proj.weight',
      'attn.proj.bias',
      'norm2_text.weight',
      'norm2_text.bias',
      'norm2_imag.weight',
      'norm2_imag.bias',
      'mlp_text.fc1.weight',
      'mlp_text.fc1.bias',
      'mlp_text.fc2.weight',
      'mlp_text.fc2.bias',
      'mlp_imag.fc1.weight',
      'mlp_imag.fc1.bias',
      'mlp_imag.fc2.weight',
      'mlp_imag.fc2.bias',
    ];
    expect([...new MultiwayLayer({ ...layerSizes, ...SUFFIX_EXPERT_LAYOUT }, new Rng(0)).stateDict().keys()]).toEqual(official);
    // A layer from vlffn_start_layer_index on (blocks.3) adds the VL expert. VLMo registers mlp_vl before
    // norm2_vl; here both parts list their experts in the same order, so only the set is compared.
    const fusion = new MultiwayLayer({ ...layerSizes, ...SUFFIX_EXPERT_LAYOUT, experts: VLMO_FUSION_EXPERTS }, new Rng(0));
    const vl = ['mlp_vl.fc1.weight', 'mlp_vl.fc1.bias', 'mlp_vl.fc2.weight', 'mlp_vl.fc2.bias', 'norm2_vl.weight', 'norm2_vl.bias'];
    expect([...fusion.stateDict().keys()].sort()).toEqual([...official, ...vl].sort());
    // VLMo-base_plus has no layer scale: no gamma keys.
    const plus = new MultiwayLayer({ ...layerSizes, ...SUFFIX_EXPERT_LAYOUT, layerScaleInit: null }, new Rng(0));
    expect([...plus.stateDict().keys()]).toEqual(official.slice(2));
  });

  it('BEiT-3 keys equal the official torchscale EncoderLayer (beit3-retrieval-seed0 layers.1)', () => {
    const official = [
      'self_attn.k_proj.A.weight',
      'self_attn.k_proj.A.bias',
      'self_attn.k_proj.B.weight',
      'self_attn.k_proj.B.bias',
      'self_attn.v_proj.A.weight',
      'self_attn.v_proj.A.bias',
      'self_attn.v_proj.B.weight',
      'self_attn.v_proj.B.bias',
      'self_attn.q_proj.A.weight',
      'self_attn.q_proj.A.bias',
      'self_attn.q_proj.B.weight',
      'self_attn.q_proj.B.bias',
      'self_attn.out_proj.A.weight',
      'self_attn.out_proj.A.bias',
      'self_attn.out_proj.B.weight',
      'self_attn.out_proj.B.bias',
      'self_attn.inner_attn_ln.A.weight',
      'self_attn.inner_attn_ln.A.bias',
      'self_attn.inner_attn_ln.B.weight',
      'self_attn.inner_attn_ln.B.bias',
      'self_attn_layer_norm.A.weight',
      'self_attn_layer_norm.A.bias',
      'self_attn_layer_norm.B.weight',
      'self_attn_layer_norm.B.bias',
      'ffn.A.fc1.weight',
      'ffn.A.fc1.bias',
      'ffn.A.fc2.weight',
      'ffn.A.fc2.bias',
      'ffn.A.ffn_layernorm.weight',
      'ffn.A.ffn_layernorm.bias',
      'ffn.B.fc1.weight',
      'ffn.B.fc1.bias',
      'ffn.B.fc2.weight',
      'ffn.B.fc2.bias',
      'ffn.B.ffn_layernorm.weight',
      'ffn.B.ffn_layernorm.bias',
      'final_layer_norm.A.weight',
      'final_layer_norm.A.bias',
      'final_layer_norm.B.weight',
      'final_layer_norm.B.bias',
    ];
    const keys = [...new MultiwayLayer({ ...layerSizes, ...CHILD_EXPERT_LAYOUT }, new Rng(0)).stateDict().keys()];
    expect([...keys].sort()).toEqual([...official].sort());
    // Within each multiway part, A comes before B as in torchscale.
    for (const key of keys.filter((k) => k.includes('.A.'))) {
      expect(keys.indexOf(key)).toBeLessThan(keys.indexOf(key.replace('.A.', '.B.')));
    }
  });

  it('loads every layer of the official VLMo and BEiT-3 fixture checkpoints strictly', async () => {
    /** Strict load of the keys under `prefix`: throws on any missing, extra or mis-shaped key. */
    const loadLayer = async (dir: string, prefix: string, layer: TransformerLayer) => {
      const { tensors } = await readSafetensorsFile(join(FIXTURES_DIR, dir, 'model.safetensors'));
      const dict = new Map<string, tf.Tensor>();
      for (const [k, v] of tensors) if (k.startsWith(prefix)) dict.set(k.slice(prefix.length), tf.tensor(v.data, v.shape));
      const report = layer.loadStateDict(dict);
      tf.dispose([...dict.values()]);
      layer.dispose();
      return report.loaded;
    };
    // vlmo-seed0: D 32, 4 heads, mlp 64, depth 4, vlffn_start_layer_index 2; plus: D 30, 3 heads, no layer scale.
    const base = { hiddenSize: 32, numHeads: 4, intermediateSize: 64, ...SUFFIX_EXPERT_LAYOUT };
    for (const i of [0, 1, 2, 3]) {
      const layer = new MultiwayLayer({ ...base, experts: i >= 2 ? VLMO_FUSION_EXPERTS : VLMO_EXPERTS }, new Rng(0));
      expect(await loadLayer('vlmo-official/vlmo-seed0', `transformer.blocks.${i}.`, layer)).toBe(i >= 2 ? 27 : 21);
    }
    const plus = new MultiwayLayer({ ...base, hiddenSize: 30, numHeads: 3, intermediateSize: 60, layerScaleInit: null }, new Rng(0));
    expect(await loadLayer('vlmo-official/vlmo-plus-seed4', 'transformer.blocks.0.', plus)).toBe(19);
    // BEiT-3 tiny: D 32, 4 heads, ffn 80, in every fine-tuned model of the release.
    for (const task of ['retrieval', 'captioning', 'vqa', 'classification', 'nlvr2']) {
      const layer = new MultiwayLayer({ hiddenSize: 32, numHeads: 4, intermediateSize: 80, ...CHILD_EXPERT_LAYOUT }, new Rng(0));
      expect(await loadLayer(`beit3-official/beit3-${task}-seed0`, 'beit3.encoder.layers.0.', layer)).toBe(40);
    }
  });

  it('a missing route is a typed error in the layer and in multiway attention', () => {
    const x = randomTensor([1, 3, D], new Rng(1));
    const vlmo = new MultiwayLayer({ ...layerSizes, ...SUFFIX_EXPERT_LAYOUT }, new Rng(0));
    expectRouteError(() => (vlmo as TransformerLayer).forward(x), /no route given.*text, image/);
    expectRouteError(() => vlmo.forward(x, { route: 'vl' }), /unknown expert "vl": this module has text, image/);
    const attn = new MultiHeadAttention(
      { hiddenSize: D, numHeads: 2, multiway: TORCHSCALE_EXPERTS, innerNormEps: 1e-5, names: TORCHSCALE_ATTENTION_NAMES },
      new Rng(0),
    );
    expectRouteError(() => attn.forward(x), /Multiway 'q_proj'.*no route given/);
    expectRouteError(() => attn.forward(x, { route: [{ expert: 'image', length: 1 }] }), /covers 1 tokens but the sequence has 3/);
    expect(() => attn.forward(x, { route: 'image', context: x })).toThrow(/self-attention only/);
    // A layer without experts needs no route, and ignores one.
    const plain = new TransformerLayer(layerSizes, new Rng(0));
    expect(() => tf.dispose(plain.forward(x))).not.toThrow();
  });

  it('gradients reach exactly the experts that got tokens (N = 3)', () => {
    const layer = new MultiwayLayer({ ...layerSizes, ...SUFFIX_EXPERT_LAYOUT, experts: VLMO_FUSION_EXPERTS }, new Rng(0));
    randomize(layer, 5);
    const x = randomTensor([2, 5, D], new Rng(6));
    const params = layer.namedParameters();
    const reached = (route: Route) => {
      const p = probe([2, 5, D], 7);
      const { value, grads } = tf.variableGrads(
        () => p(layer.forward(x, { route }).hidden),
        params.map(([, v]) => v),
      );
      const names = params
        .filter(([, v]) => grads[v.name] && tf.tidy(() => tf.max(tf.abs(grads[v.name]!)).dataSync()[0]!) > 0)
        .map(([n]) => n);
      tf.dispose([value, ...Object.values(grads)]);
      return new Set(names.map((n) => /^(norm2|mlp)_(\w+)\./.exec(n)?.[2] ?? 'shared'));
    };
    expect(
      reached([
        { expert: 'text', length: 2 },
        { expert: 'image', length: 3 },
      ]),
    ).toEqual(new Set(['shared', 'text', 'imag']));
    expect(reached('vl')).toEqual(new Set(['shared', 'vl']));
    expect(
      reached([
        { expert: 'image', length: 5 },
        { expert: 'vl', length: 0 },
      ]),
    ).toEqual(new Set(['shared', 'imag']));
  });

  it('BEiT-3: a split route equals each part run through its own expert, attention joint over all tokens', () => {
    const layer = new MultiwayLayer({ ...layerSizes, ...CHILD_EXPERT_LAYOUT }, new Rng(0));
    randomize(layer, 8);
    const x = randomTensor([2, 5, D], new Rng(9));
    const nv = 3;
    const split = layer.forward(x, {
      route: [
        { expert: 'image', length: nv },
        { expert: 'text', length: 5 - nv },
      ],
    }).hidden;
    // By hand from the parts: norm1 and q/k/v per expert on their rows, one joint softmax, then the rest per expert.
    const byHand = tf.tidy(() => {
      const sd = layer.stateDict();
      const w = (k: string) => sd.get(k) as tf.Tensor;
      const ln = (h: tf.Tensor, k: string) => {
        const { mean, variance } = tf.moments(h, -1, true);
        return tf.add(tf.mul(tf.div(tf.sub(h, mean), tf.sqrt(tf.add(variance, 1e-5))), w(`${k}.weight`)), w(`${k}.bias`));
      };
      const lin = (h: tf.Tensor, k: string) => tf.add(tf.matMul(h, w(`${k}.weight`), false, true), w(`${k}.bias`));
      const rows = (h: tf.Tensor, e: 'A' | 'B') =>
        e === 'A' ? tf.slice(h, [0, 0, 0], [-1, nv, -1]) : tf.slice(h, [0, nv, 0], [-1, -1, -1]);
      const perExpert = (h: tf.Tensor, f: (part: tf.Tensor, e: 'A' | 'B') => tf.Tensor) =>
        tf.concat([f(rows(h, 'A'), 'A'), f(rows(h, 'B'), 'B')], 1);
      const heads = (h: tf.Tensor) => tf.transpose(tf.reshape(h, [2, 5, 2, D / 2]), [0, 2, 1, 3]);
      const h1 = perExpert(x, (p, e) => ln(p, `self_attn_layer_norm.${e}`));
      const [q, k, v] = ['q', 'k', 'v'].map((n) => heads(perExpert(h1, (p, e) => lin(p, `self_attn.${n}_proj.${e}`))));
      const probs = tf.softmax(tf.mul(tf.matMul(q!, k!, false, true), 1 / Math.sqrt(D / 2)));
      const merged = tf.reshape(tf.transpose(tf.matMul(probs, v!), [0, 2, 1, 3]), [2, 5, D]);
      const attn = perExpert(merged, (p, e) => lin(ln(p, `self_attn.inner_attn_ln.${e}`), `self_attn.out_proj.${e}`));
      const h = tf.add(x, attn);
      const erfGelu = (t: tf.Tensor) => tf.mul(tf.mul(t, 0.5), tf.add(1, tf.erf(tf.div(t, Math.SQRT2))));
      const ffn = perExpert(h, (p, e) => {
        const inner = erfGelu(lin(ln(p, `final_layer_norm.${e}`), `ffn.${e}.fc1`));
        return lin(ln(inner, `ffn.${e}.ffn_layernorm`), `ffn.${e}.fc2`);
      });
      return tf.add(h, ffn);
    });
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(split, byHand))).dataSync()[0]!)).toBeLessThan(1e-5);
  });

  it('does not leak', () => {
    const layer = new MultiwayLayer({ ...layerSizes, ...CHILD_EXPERT_LAYOUT }, new Rng(0));
    const x = randomTensor([2, 4, D], new Rng(1));
    const route = [
      { expert: 'image', length: 1 },
      { expert: 'text', length: 3 },
    ];
    expectNoLeak(() => layer.forward(x, { route, outputAttentions: true }));
    expectNoLeak(() => layer.forward(x, { route: 'text' }));
  });
});
