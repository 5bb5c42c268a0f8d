// VLMo configs: the fixtures' config.json round trip (snake_case file ↔ camelCase config), what the
// official code derives (transformer kwargs from model_arch, BertConfig, text-only MLM without VL-FFN),
// presets against the released sizes and the tiny fixture, every bad field listed in one error, and
// models of other shapes than the fixtures' (sizes only from the config) in all three modes.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, isVlError, Rng } from '@vl/core';
import { readSafetensorsFile } from '@vl/core/node';
import { beforeAll, describe, expect, it } from 'vitest';
import { toOfficialStateDict } from '../checkpoint.js';
import { type VlmoConfig, vlmoConfigFromJson, vlmoConfigToJson, vlmoDims, vlmoPreset } from '../config.js';
import { Vlmo } from '../model.js';
import { allNumRelativeDistance } from '../relative-position.js';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/vlmo-official/', import.meta.url));

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

const readJson = async (path: string) => JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(isVlError(err, 'CONFIG_INVALID'), String(err)).toBe(true);
    return (err as Error).message;
  }
  throw new Error('expected CONFIG_INVALID');
}

describe('config.json', () => {
  for (const name of ['vlmo-seed0', 'vlmo-plus-seed4']) {
    it(`${name}: reads into camelCase and writes back the same JSON`, async () => {
      const json = await readJson(join(FIXTURES, name, 'config.json'));
      const config = vlmoConfigFromJson(json);
      expect(config.vlmoConfig.maxTextLen).toBe((json.vlmo_config as Record<string, unknown>).max_text_len);
      expect(config.transformerKwargs.embedDim).toBe((json.transformer_kwargs as Record<string, unknown>).embed_dim);
      expect(vlmoConfigToJson(config)).toEqual(json);
    });
  }

  it('a config.json with only vlmo_config (the sacred dict) builds the entry point of its model_arch', () => {
    const base = vlmoConfigFromJson({ vlmo_config: { model_arch: 'vlmo_base_patch16' } });
    const dims = vlmoDims(base);
    expect([dims.hiddenSize, dims.depth, dims.numHeads, dims.intermediateSize, dims.vlffnStart]).toEqual([768, 12, 12, 3072, 10]);
    expect([dims.relativePosition, dims.absolutePosition, dims.layerScaleInit]).toEqual([true, false, 0.1]);
    expect(base.bertConfig).toMatchObject({
      maxPositionEmbeddings: 40,
      positionEmbeddingType: 'rel_pos',
      hiddenDropoutProb: 0.1,
      vocabSize: 30522,
    });
    expect(base.tokens).toEqual({ pad: 0, unk: 100, cls: 101, sep: 102, mask: 103 });
    const plus = vlmoDims(vlmoConfigFromJson({ vlmo_config: { model_arch: 'vlmo_base_plus_patch16' } }));
    expect([
      plus.hiddenSize,
      plus.depth,
      plus.numHeads,
      plus.vlffnStart,
      plus.relativePosition,
      plus.absolutePosition,
      plus.layerScaleInit,
    ]).toEqual([544, 24, 16, 21, false, true, null]);
  });

  it('text-only MLM (stage 2) drops the VL-FFN, and the heads follow loss_names as VLMo.__init__ builds them', () => {
    const json = { vlmo_config: { model_arch: 'vlmo_base_patch16', loss_names: { textmlm: 1 } } };
    const dims = vlmoDims(vlmoConfigFromJson(json));
    expect(dims.vlffnStart).toBe(dims.depth);
    expect(dims.heads).toEqual({ mlm: true, itm: false, itc: false, itcVl: false });
    const irtr = vlmoDims(vlmoConfigFromJson({ vlmo_config: { loss_names: { irtr: 1 } } }));
    expect(irtr.heads).toEqual({ mlm: false, itm: false, itc: true, itcVl: false });
  });

  it('lists every bad field by its snake_case path in one error', () => {
    const message = configError(() =>
      vlmoConfigFromJson({
        vlmo_config: { max_text_len: 'forty', model_arch: 'vlmo_huge' },
        transformer_kwargs: { depth: 0, qkv_bias: false },
      }),
    );
    for (const path of ['vlmo_config.max_text_len', 'vlmo_config.model_arch', 'transformer_kwargs.depth', 'transformer_kwargs.qkv_bias']) {
      expect(message).toContain(path);
    }
    expect(message).toMatch(/^CONFIG_INVALID.*4 invalid fields/);
  });

  it('refuses configs the official code would not build, naming the fields', () => {
    const sizes = { patch_size: 8, embed_dim: 32, depth: 4, num_heads: 4, mlp_ratio: 2, vlffn_start_layer_index: 2 };
    expect(
      configError(() => vlmoConfigFromJson({ vlmo_config: { image_size: 32 }, transformer_kwargs: { ...sizes, img_size: 48 } })),
    ).toMatch(/transformer_kwargs\.img_size 48 ≠ vlmo_config\.image_size 32/);
    expect(
      configError(() =>
        vlmoConfigFromJson({ vlmo_config: { image_size: 32, max_text_len: 20, max_text_len_of_initckpt: 12 }, transformer_kwargs: sizes }),
      ),
    ).toMatch(/max_text_len 20 > vlmo_config\.max_text_len_of_initckpt 12/);
    expect(configError(() => vlmoConfigFromJson({ vlmo_config: { image_size: 30 }, transformer_kwargs: sizes }))).toMatch(
      /not a multiple of patch size 8/,
    );
    expect(configError(() => vlmoConfigFromJson({ vlmo_config: {}, bert_config: { hidden_size: 100 } }))).toMatch(
      /bert_config\.hidden_size 100 ≠ 768/,
    );
  });
});

describe('presets', () => {
  it('tiny has the vlmo-seed0 sizes: the same keys and shapes as its checkpoint', async () => {
    const tiny = new Vlmo(vlmoPreset('tiny'));
    const file = await readSafetensorsFile(join(FIXTURES, 'vlmo-seed0', 'model.safetensors'));
    const ours = toOfficialStateDict(tiny);
    expect([...ours.keys()].sort()).toEqual([...file.tensors.keys()].sort());
    for (const [k, t] of file.tensors) expect(ours.get(k)?.shape, k).toEqual(t.shape);
    tiny.dispose();
  });

  it('base, large and basePlus have the released sizes; overrides change vocabulary and image size', () => {
    const base = vlmoDims(vlmoPreset('base'));
    expect([base.hiddenSize, base.depth, base.numHeads, base.vlffnStart, base.imageSize, base.maxTextLen]).toEqual([
      768, 12, 12, 10, 224, 40,
    ]);
    // The released table [1126, 144] (microsoft/unilm issue #1256): 12 layers × 12 heads.
    expect([allNumRelativeDistance(base.grid, base.maxTextLenOfInitckpt), base.depth * base.numHeads]).toEqual([1126, 144]);
    const large = vlmoDims(vlmoPreset('large'));
    expect([large.hiddenSize, large.depth, large.numHeads, large.vlffnStart]).toEqual([1024, 24, 16, 21]);
    const plus = vlmoDims(vlmoPreset('basePlus', { imageSize: 384, vocabSize: 1000 }));
    expect([plus.hiddenSize, plus.depth, plus.absolutePosition, plus.numImageTokens, plus.vocabSize]).toEqual([
      544,
      24,
      true,
      24 * 24 + 1,
      1000,
    ]);
    const tiny = vlmoDims(vlmoPreset('tiny', { imageSize: 48 }));
    expect(tiny.numImageTokens).toBe(37);
  });
});

/** O(1) weights everywhere, as the fixtures draw them, so every parameter visibly matters. */
function randomize(model: Vlmo, seed: number): void {
  const rng = new Rng(seed);
  for (const [, p] of model.namedParameters()) {
    const values = Float32Array.from({ length: p.size }, () => 0.2 * rng.normal());
    p.assign(tf.tensor(values, p.shape));
  }
}

describe.each([
  ['relative positions, layer scale', 'vlmo_base_patch16'],
  ['absolute positions, no layer scale', 'vlmo_base_plus_patch16'],
] as const)('another shape (%s)', (_label, arch) => {
  // Grid 3, width 24 in 3 heads, depth 3 with the VL-FFN in layers 1 and 2, texts of 7, FFN ratio 3.
  const json = {
    vlmo_config: {
      model_arch: arch,
      image_size: 24,
      max_text_len: 7,
      max_text_len_of_initckpt: 10,
      vocab_size: 50,
      loss_names: { itm: 1, itc: 1, mlm: 1 },
    },
    transformer_kwargs: { img_size: 24, patch_size: 8, embed_dim: 24, depth: 3, num_heads: 3, mlp_ratio: 3, vlffn_start_layer_index: 1 },
    tokens: { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 },
  };
  let config: VlmoConfig;
  let model: Vlmo;
  let image: tf.Tensor;
  let ids: tf.Tensor;
  let mask: tf.Tensor;

  beforeAll(() => {
    config = vlmoConfigFromJson(json);
    model = new Vlmo(config, new Rng(3));
    randomize(model, 4);
    model.eval();
    image = tf.tensor(
      Float32Array.from({ length: 2 * 3 * 24 * 24 }, (_, i) => Math.sin(i * 0.37)),
      [2, 3, 24, 24],
    );
    ids = tf.tensor2d(
      [
        [2, 10, 11, 12, 13, 14, 3],
        [2, 20, 21, 3, 0, 0, 0],
      ],
      [2, 7],
      'int32',
    );
    mask = tf.tensor2d(
      [
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0, 0, 0],
      ],
      [2, 7],
      'int32',
    );
  });

  it('builds the keys its config implies and runs every mode with shapes from the config', () => {
    const keys = [...model.stateDict().keys()];
    expect(keys.filter((k) => k.includes('mlp_vl.fc1.weight'))).toEqual([
      'transformer.blocks.1.mlp_vl.fc1.weight',
      'transformer.blocks.2.mlp_vl.fc1.weight',
    ]);
    expect(keys.includes('relative_position_bias_table')).toBe(arch === 'vlmo_base_patch16');
    expect(keys.includes('transformer.pos_embed')).toBe(arch === 'vlmo_base_plus_patch16');
    expect(keys.includes('transformer.blocks.0.gamma_1')).toBe(arch === 'vlmo_base_patch16');
    tf.tidy(() => {
      const img = model.encodeImage(image);
      expect(img.feats.shape).toEqual([2, 10, 24]);
      expect(img.clsVlffnFeats?.shape).toEqual([2, 24]);
      const txt = model.encodeText(ids, mask);
      expect(txt.feats.shape).toEqual([2, 7, 24]);
      const fused = model.fuse(image, ids, mask);
      expect(fused.textFeats.shape).toEqual([2, 7, 24]);
      expect(fused.imageFeats.shape).toEqual([2, 10, 24]);
      expect(model.itmLogits(fused.clsFeats).shape).toEqual([2, 2]);
      expect(model.mlmLogits(fused.textFeats).shape).toEqual([2, 7, 50]);
      // Unit-length ITC features.
      const norms = tf.norm(txt.clsFeats as tf.Tensor, 'euclidean', -1).dataSync();
      for (const n of norms) expect(n).toBeCloseTo(1, 5);
    });
  });

  it('padding never reaches real tokens: a text-only pass on the unpadded row equals its padded row', () => {
    tf.tidy(() => {
      const padded = model.encodeText(ids, mask);
      const short = model.encodeText(tf.slice(ids, [1, 0], [1, 4]), tf.slice(mask, [1, 0], [1, 4]));
      const real = tf.slice(padded.feats, [1, 0, 0], [1, 4, 24]);
      expect(tf.max(tf.abs(tf.sub(short.feats, real))).dataSync()[0]).toBeLessThan(1e-5);
      expect(
        tf.max(tf.abs(tf.sub(short.clsFeats as tf.Tensor, tf.slice(padded.clsFeats as tf.Tensor, [1, 0], [1, 24])))).dataSync()[0],
      ).toBeLessThan(1e-5);
    });
  });

  it('the fused route splits experts at max_text_len: below the VL-FFN, text rows use the L-FFN and image rows the V-FFN', () => {
    // With the VL-FFN pushed past the last layer (text-only MLM config), the first layer of a fused pass
    // must equal the text expert on the text rows and the image expert on the image rows.
    const below = vlmoConfigFromJson({ ...json, vlmo_config: { ...json.vlmo_config, loss_names: { mlm: 1, textmlm: 1, itm: 1 } } });
    const m = new Vlmo(below, new Rng(3));
    randomize(m, 4);
    m.eval();
    tf.tidy(() => {
      const block = m.transformer.blocks.at(0);
      const x = tf.tensor(
        Float32Array.from({ length: 2 * 17 * 24 }, (_, i) => Math.cos(i * 0.11)),
        [2, 17, 24],
      );
      const split = block.forward(x, {
        route: [
          { expert: 'text', length: 7 },
          { expert: 'image', length: 10 },
        ],
      }).hidden;
      const allText = block.forward(x, { route: 'text' }).hidden;
      const allImage = block.forward(x, { route: 'image' }).hidden;
      expect(tf.max(tf.abs(tf.sub(tf.slice(split, [0, 0, 0], [2, 7, 24]), tf.slice(allText, [0, 0, 0], [2, 7, 24])))).dataSync()[0]).toBe(
        0,
      );
      expect(
        tf.max(tf.abs(tf.sub(tf.slice(split, [0, 7, 0], [2, 10, 24]), tf.slice(allImage, [0, 7, 0], [2, 10, 24])))).dataSync()[0],
      ).toBe(0);
      expect(m.fuse(image, ids, mask).textFeats.shape).toEqual([2, 7, 24]);
    });
    m.dispose();
  });

  it('does not leak across forwards', () => {
    for (const run of [() => model.encodeImage(image), () => model.encodeText(ids, mask), () => model.fuse(image, ids, mask)]) {
      const keep = (o: object) => Object.values(o).filter((t): t is tf.Tensor => t instanceof tf.Tensor);
      tf.dispose(keep(run()));
      const before = tf.memory().numTensors;
      tf.dispose(keep(run()));
      expect(tf.memory().numTensors).toBe(before);
    }
  });
});
