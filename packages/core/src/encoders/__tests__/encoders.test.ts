// Encoders on tiny configs: patch embedding equals the convolution it replaces, position
// interpolation (identity at the native size, PyTorch bicubic values otherwise), timm names,
// text transformer masks (padding, causal), ALBEF text/fusion split, heads, no leaks.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { KVCache } from '../../attention/kv-cache.js';
import { expectNoLeak, gradCheck, maxAbsDiff, probe, randomTensor } from '../../attention/__tests__/helpers.js';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { BertLMPredictionHead, BertPooler, l2Normalize, ProjectionHead } from '../heads.js';
import { bicubicMatrix, interpolatePositionEmbedding, resizeGridBicubic } from '../position-interpolation.js';
import { BertEmbeddings } from '../text-embeddings.js';
import { TextTransformer } from '../text-transformer.js';
import { PatchEmbedding, TIMM_VIT_NAMES, VisionTransformer } from '../vision-transformer.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

const vitConfig = { imageSize: 16, patchSize: 4, hiddenSize: 8, numLayers: 2, numHeads: 2, intermediateSize: 16 };
const textConfig = {
  vocabSize: 30,
  hiddenSize: 8,
  maxPositionEmbeddings: 16,
  numHiddenLayers: 3,
  numAttentionHeads: 2,
  intermediateSize: 16,
  encoderHiddenSize: 8,
};

function randomize(m: { namedParameters(): [string, tf.Variable][] }, seed: number) {
  const rng = new Rng(seed);
  for (const [, p] of m.namedParameters()) p.assign(tf.add(randomTensor(p.shape, rng, 0.5), p.shape.length === 1 ? 0.5 : 0));
}

describe('PatchEmbedding', () => {
  it('equals a stride-P convolution with the stored [D, C, P, P] kernel', () => {
    const pe = new PatchEmbedding(3, 4, 5, new Rng(0));
    randomize(pe, 1);
    const pixels = randomTensor([2, 3, 8, 12], new Rng(2)); // NCHW
    const { patches, grid } = pe.forward(pixels);
    expect(grid).toEqual([2, 3]);
    const nhwc = tf.transpose(pixels, [0, 2, 3, 1]);
    const kernel = tf.transpose(pe.weight, [2, 3, 1, 0]); // [P, P, C, D]
    const conv = tf.add(tf.conv2d(nhwc as tf.Tensor4D, kernel as tf.Tensor4D, 4, 'valid'), pe.bias as tf.Tensor); // [B, gh, gw, D]
    expect(maxAbsDiff(patches, tf.reshape(conv, [2, 6, 5]))).toBeLessThan(1e-5);
    expect(() => pe.forward(randomTensor([1, 3, 7, 8], new Rng(0)))).toThrow(/multiples of 4/);
  });
});

describe('position embedding interpolation', () => {
  it('is exactly the identity at the native grid', () => {
    const pos = randomTensor([1, 1 + 9, 4], new Rng(1));
    expect(interpolatePositionEmbedding(pos, [3, 3], [3, 3])).toBe(pos);
    // The weight matrix itself is the identity too, so a resize to the same size is exact.
    const grid = randomTensor([3, 3, 4], new Rng(2));
    expect(maxAbsDiff(resizeGridBicubic(grid, 3, 3), grid)).toBe(0);
    expect(Array.from(bicubicMatrix(3, 3))).toEqual([1, 0, 0, 0, 1, 0, 0, 0, 1]);
  });

  it('matches PyTorch bicubic (align_corners=False): [[1, 2], [3, 4]] → 4×4', () => {
    // 1-D weights at source -0.25 are (-0.03515625, 0.26171875, 0.87890625, -0.10546875) on
    // clamped indices (0, 0, 0, 1), which gives 0.89453125 for [1, 2]; the 2-D result of the
    // linear grid 1 + 2i + j is separable: row 0 = 1 + 2·u0 + u(j), u = (-0.10546875,
    // 0.2265625, 0.7734375, 1.10546875). torch.nn.functional.interpolate gives the same.
    const grid = tf.tensor3d([
      [[1], [2]],
      [[3], [4]],
    ]);
    const out = resizeGridBicubic(grid, 4, 4).dataSync();
    const u = [-0.10546875, 0.2265625, 0.7734375, 1.10546875];
    for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) expect(out[i * 4 + j]).toBeCloseTo(1 + 2 * u[i]! + u[j]!, 6);
    // Rows of the matrix sum to 1: a constant grid stays constant when down- or up-sampled.
    const flat = resizeGridBicubic(tf.fill([5, 5, 2], 3), 3, 7);
    expect(maxAbsDiff(flat, tf.fill([3, 7, 2], 3))).toBeLessThan(1e-6);
  });

  it('keeps the class row and lets the ViT run at another resolution', () => {
    const pos = randomTensor([1, 1 + 4, 3], new Rng(3));
    const out = interpolatePositionEmbedding(pos, [2, 2], [3, 5]);
    expect(out.shape).toEqual([1, 1 + 15, 3]);
    expect(maxAbsDiff(tf.slice(out, [0, 0, 0], [1, 1, 3]), tf.slice(pos, [0, 0, 0], [1, 1, 3]))).toBe(0);
    const vit = new VisionTransformer(vitConfig, new Rng(0));
    expect(vit.forward(randomTensor([1, 3, 24, 20], new Rng(4))).lastHiddenState.shape).toEqual([1, 1 + 30, 8]);
  });
});

describe('VisionTransformer', () => {
  it('timm names (ALBEF visual_encoder layout)', () => {
    const vit = new VisionTransformer({ ...vitConfig, names: TIMM_VIT_NAMES }, new Rng(0));
    const keys = [...vit.stateDict().keys()];
    for (const k of [
      'cls_token',
      'pos_embed',
      'patch_embed.proj.weight',
      'patch_embed.proj.bias',
      'blocks.1.attn.qkv.weight',
      'blocks.0.mlp.fc2.bias',
      'norm.weight',
    ]) {
      expect(keys).toContain(k);
    }
    expect(vit.stateDict().get('pos_embed')?.shape).toEqual([1, 17, 8]);
  });

  it('returns hidden states and attentions on request, and does not leak', () => {
    const vit = new VisionTransformer({ ...vitConfig, dropPathRate: 0.1 }, new Rng(0));
    vit.eval();
    const pixels = randomTensor([2, 3, 16, 16], new Rng(1));
    const out = vit.forward(pixels, { outputAttentions: true, outputHiddenStates: true });
    expect(out.poolerOutput.shape).toEqual([2, 8]);
    expect(out.attentions?.length).toBe(2);
    expect(out.hiddenStates?.length).toBe(3);
    expectNoLeak(() => vit.forward(pixels));
    vit.train();
    expectNoLeak(() => vit.forward(pixels, { rng: new Rng(5) }));
  });
});

describe('TextTransformer', () => {
  it('embeddings: position ids are an I64 buffer and new tokens are placed after the cache', () => {
    const emb = new BertEmbeddings({ ...textConfig, typeVocabSize: 2 }, new Rng(0));
    expect([...emb.stateDict().keys()].sort()).toEqual([
      'LayerNorm.bias',
      'LayerNorm.weight',
      'position_embeddings.weight',
      'position_ids',
      'token_type_embeddings.weight',
      'word_embeddings.weight',
    ]);
    expect(emb.storedDtypes().get('position_ids')).toBe('I64');
    const ids = tf.tensor2d([[3, 4, 5]], [1, 3], 'int32');
    const all = emb.forward({ inputIds: ids });
    const last = emb.forward({ inputIds: tf.tensor2d([[5]], [1, 1], 'int32'), pastLength: 2 });
    expect(maxAbsDiff(last, tf.slice(all, [0, 2, 0], [1, 1, 8]))).toBe(0);
    expect(() => emb.forward({ inputIds: ids, pastLength: 14 })).toThrow(/maxPositionEmbeddings/);
  });

  it("embeddings with a relative position type keep the position table but do not add it (VLMo 'rel_pos')", () => {
    const config = { ...textConfig, typeVocabSize: 2 };
    const absolute = new BertEmbeddings(config, new Rng(0));
    const relative = new BertEmbeddings({ ...config, positionEmbeddingType: 'rel_pos' }, new Rng(0));
    randomize(absolute, 1);
    randomize(relative, 1);
    expect([...relative.stateDict().keys()]).toEqual([...absolute.stateDict().keys()]);
    expect(relative.absolutePositions).toBe(false);
    const ids = tf.tensor2d([[3, 4, 5]], [1, 3], 'int32');
    // Hand-built: LayerNorm(word[ids] + token_type[0]), no position rows.
    const sum = tf.add(tf.gather(relative.word_embeddings.weight, ids), tf.gather(relative.token_type_embeddings!.weight, [0]));
    expect(maxAbsDiff(relative.forward({ inputIds: ids }), relative.LayerNorm.forward(sum))).toBeLessThan(1e-6);
    // The same weights with absolute positions differ by exactly the position rows inside the norm.
    const withPos = tf.add(sum, tf.slice(absolute.position_embeddings.weight, [0, 0], [3, 8]));
    expect(maxAbsDiff(absolute.forward({ inputIds: ids }), absolute.LayerNorm.forward(withPos))).toBeLessThan(1e-6);
    expectNoLeak(() => relative.forward({ inputIds: ids }));
  });

  it('bidirectional encoder: padding does not change real tokens', () => {
    const enc = new TextTransformer(textConfig, new Rng(0), { crossAttentionFrom: 1, pooler: true });
    randomize(enc, 1);
    const ids = tf.tensor2d(
      [
        [5, 6, 7, 8, 9],
        [5, 6, 7, 0, 0],
      ],
      [2, 5],
      'int32',
    );
    const mask = tf.tensor2d([
      [1, 1, 1, 1, 1],
      [1, 1, 1, 0, 0],
    ]);
    const image = randomTensor([2, 4, 8], new Rng(2));
    const padded = enc.forward({ inputIds: ids, attentionMask: mask, encoderHiddenStates: image });
    const alone = enc.forward({ inputIds: tf.slice(ids, [1, 0], [1, 3]), encoderHiddenStates: tf.slice(image, [1, 0, 0], [1, 4, 8]) });
    expect(maxAbsDiff(tf.slice(padded.lastHiddenState, [1, 0, 0], [1, 3, 8]), alone.lastHiddenState)).toBeLessThan(1e-5);
    expect(padded.poolerOutput?.shape).toEqual([2, 8]);
    // Image padding too: masked image tokens do not matter.
    const imageMask = tf.tensor2d([
      [1, 1, 1, 1],
      [1, 1, 0, 0],
    ]);
    const withImagePad = enc.forward({ inputIds: ids, attentionMask: mask, encoderHiddenStates: image, encoderAttentionMask: imageMask });
    const imageAlone = enc.forward({ inputIds: tf.slice(ids, [1, 0], [1, 3]), encoderHiddenStates: tf.slice(image, [1, 0, 0], [1, 2, 8]) });
    expect(maxAbsDiff(tf.slice(withImagePad.lastHiddenState, [1, 0, 0], [1, 3, 8]), imageAlone.lastHiddenState)).toBeLessThan(1e-5);
  });

  it('causal decoder never leaks the future: perturbing a later token leaves earlier outputs unchanged', () => {
    const dec = new TextTransformer(textConfig, new Rng(0), { causal: true, crossAttentionFrom: 0 });
    randomize(dec, 3);
    const image = randomTensor([1, 4, 8], new Rng(4));
    const a = dec.forward({ inputIds: tf.tensor2d([[5, 6, 7, 8, 9]], [1, 5], 'int32'), encoderHiddenStates: image }).lastHiddenState;
    const b = dec.forward({ inputIds: tf.tensor2d([[5, 6, 7, 20, 21]], [1, 5], 'int32'), encoderHiddenStates: image }).lastHiddenState;
    expect(maxAbsDiff(tf.slice(a, [0, 0, 0], [1, 3, 8]), tf.slice(b, [0, 0, 0], [1, 3, 8]))).toBe(0);
    expect(maxAbsDiff(tf.slice(a, [0, 3, 0], [1, 2, 8]), tf.slice(b, [0, 3, 0], [1, 2, 8]))).toBeGreaterThan(1e-3);
  });

  it('ALBEF split: text layers then fusion layers equal the whole stack', () => {
    const albef = new TextTransformer(textConfig, new Rng(0), { crossAttentionFrom: 2 });
    randomize(albef, 5);
    expect(albef.textLayers()).toEqual([0, 2]);
    expect(albef.fusionLayers()).toEqual([2, 3]);
    expect([...albef.stateDict().keys()].some((k) => k.startsWith('encoder.layer.1.crossattention'))).toBe(false);
    expect([...albef.stateDict().keys()]).toContain('encoder.layer.2.crossattention.self.key.weight');
    const ids = tf.tensor2d([[5, 6, 7, 0]], [1, 4], 'int32');
    const mask = tf.tensor2d([[1, 1, 1, 0]]);
    const image = randomTensor([1, 3, 8], new Rng(6));
    const text = albef.forward({ inputIds: ids, attentionMask: mask, layers: albef.textLayers() });
    const fused = albef.forward({
      hiddenStates: text.lastHiddenState,
      attentionMask: mask,
      encoderHiddenStates: image,
      layers: albef.fusionLayers(),
    });
    const whole = albef.forward({ inputIds: ids, attentionMask: mask, encoderHiddenStates: image });
    expect(maxAbsDiff(fused.lastHiddenState, whole.lastHiddenState)).toBe(0);
  });

  it('decoding step with a cache does not leak; the cache owns what it keeps until disposed', () => {
    const dec = new TextTransformer(textConfig, new Rng(0), { causal: true, crossAttentionFrom: 0 });
    const image = randomTensor([2, 4, 8], new Rng(1));
    const prompt = tf.tensor2d(
      [
        [1, 2],
        [3, 4],
      ],
      [2, 2],
      'int32',
    );
    const step = tf.tensor2d([[5], [6]], [2, 1], 'int32');
    const before = tf.memory().numTensors;
    const cache = new KVCache(dec.layer.length);
    tf.dispose(dec.forward({ inputIds: prompt, encoderHiddenStates: image, cache }));
    // 3 layers × (self k, v + cross k, v)
    expect(tf.memory().numTensors - before).toBe(12);
    expectNoLeak(() => dec.forward({ inputIds: step, cache, outputAttentions: true }));
    expect(cache.length).toBe(4);
    cache.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(() => dec.forward({ inputIds: step, cache: new KVCache(2) })).toThrow(/cache has 2 layers/);
  });
});

describe('backward passes', () => {
  it('every ViT and text-decoder parameter gets a finite gradient; interpolated positions check by finite differences', () => {
    const vit = new VisionTransformer({ ...vitConfig, numLayers: 1 }, new Rng(0));
    // O(1) weights: at the 0.02 init a 1e-2 step is half a weight and LayerNorm of the tiny
    // embeddings is far from linear, so differences would measure curvature, not the slope.
    randomize(vit, 7);
    const pixels = randomTensor([1, 3, 12, 12], new Rng(1), 0.5); // 3×3 grid from a 4×4 native grid
    const p = probe([1, 10, 8], 2);
    const f = () => p(vit.forward(pixels).lastHiddenState);
    const { grads } = tf.variableGrads(f, vit.trainableParameters());
    for (const [name, v] of vit.namedParameters()) {
      const g = grads[v.name] as tf.Tensor;
      expect(g.shape, name).toEqual(v.shape);
      expect(Number.isFinite(tf.sum(tf.abs(g)).dataSync()[0]), name).toBe(true);
    }
    tf.dispose(Object.values(grads));
    gradCheck(f, { pos: vit.positionEmbedding, patch: vit.patchEmbedding.weight, cls: vit.classEmbedding }, { samples: 4 });
    const dec = new TextTransformer(textConfig, new Rng(0), { causal: true, crossAttentionFrom: 0 });
    const image = randomTensor([1, 4, 8], new Rng(3));
    const ids = tf.tensor2d([[1, 2, 3]], [1, 3], 'int32');
    const g2 = tf.variableGrads(
      () => tf.sum(tf.square(dec.forward({ inputIds: ids, encoderHiddenStates: image }).lastHiddenState)) as tf.Scalar,
      dec.trainableParameters(),
    ).grads;
    expect(Object.keys(g2).length).toBe(dec.trainableParameters().length);
    tf.dispose(Object.values(g2));
  });
});

describe('heads', () => {
  it('ProjectionHead normalises on request; pooler and LM head have the HF names and shapes', () => {
    const proj = new ProjectionHead(8, 4, new Rng(0), { normalize: true });
    expect([...proj.stateDict().keys()]).toEqual(['weight', 'bias']);
    const y = proj.forward(randomTensor([3, 8], new Rng(1)));
    expect(Array.from(tf.norm(y, 'euclidean', -1).dataSync()).every((n) => Math.abs(n - 1) < 1e-5)).toBe(true);
    expect(Array.from(l2Normalize(tf.zeros([1, 3])).dataSync())).toEqual([0, 0, 0]);
    expect([...new BertPooler(8, new Rng(0)).stateDict().keys()]).toEqual(['dense.weight', 'dense.bias']);
    const lm = new BertLMPredictionHead({ hiddenSize: 8, vocabSize: 30 }, new Rng(0));
    expect([...lm.stateDict().keys()].sort()).toEqual([
      'bias',
      'decoder.weight',
      'transform.LayerNorm.bias',
      'transform.LayerNorm.weight',
      'transform.dense.bias',
      'transform.dense.weight',
    ]);
    const h = randomTensor([2, 3, 8], new Rng(2));
    expect(lm.forward(h).shape).toEqual([2, 3, 30]);
    expectNoLeak(() => lm.forward(h));
  });
});
