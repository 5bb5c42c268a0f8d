// BEiT-3 config.json: the fixtures' files read and write back unchanged; a factory alone gives the released
// sizes; bad fields are listed in one typed error; the tiny presets build exactly the fixtures' state
// dicts; the image norms are the official transforms'.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IMAGE_NORMS, initRuntime, isVlError } from '@vl/core';
import { readSafetensorsHeader } from '@vl/core/node';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BEIT3_IMAGE_NORM,
  BEIT3_IMAGENET_NORM,
  BEIT3_TASKS,
  beit3ConfigFromJson,
  beit3ConfigToJson,
  beit3Dims,
  beit3Preset,
  parseBeit3Factory,
} from '../config.js';
import { beit3Model } from '../model-spec.js';
import { buildBeit3 } from '../model.js';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/beit3-official/', import.meta.url));
const rawConfig = async (task: string) =>
  JSON.parse(await readFile(join(FIXTURES, `beit3-${task}-seed0`, 'config.json'), 'utf8')) as Record<string, unknown>;

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(isVlError(e, 'CONFIG_INVALID'), String(e)).toBe(true);
    return (e as Error).message;
  }
  throw new Error('no error');
}

describe('BEiT-3 config.json', () => {
  it.each(BEIT3_TASKS)('the %s fixture reads, gives its sizes, and writes back exactly', async (task) => {
    const raw = await rawConfig(task);
    const config = beit3ConfigFromJson(raw);
    const dims = beit3Dims(config);
    expect(dims.task).toBe(task);
    expect(dims.numVisionTokens).toBe(raw.vision_tokens);
    expect(dims).toMatchObject({ hiddenSize: 32, numHeads: 4, headDim: 8, ffnSize: 80, depth: 3, vocabSize: 99, maxTextLength: 62 });
    expect(dims.normalizeOutput).toBe(task !== 'vqa' && task !== 'classification');
    expect(dims.numClasses).toBe(raw.num_classes ?? null);
    expect(config.tokens.mask).toBe(97);
    expect(beit3ConfigToJson(config)).toEqual(raw);
  });

  it('a factory alone builds the released architecture (base / large, the image size, the head width)', () => {
    const base = beit3Dims(beit3ConfigFromJson({ factory: 'beit3_base_patch16_480_vqav2' }));
    expect(base).toMatchObject({ task: 'vqa', hiddenSize: 768, numHeads: 12, ffnSize: 3072, depth: 12, imageSize: 480, patchSize: 16 });
    expect(base).toMatchObject({
      numVisionTokens: 901,
      vocabSize: 64010,
      maxSourcePositions: 1024,
      normalizeOutput: false,
      numClasses: 3129,
    });
    const large = beit3Dims(beit3ConfigFromJson({ factory: 'beit3_large_patch16_384_retrieval' }));
    expect(large).toMatchObject({ task: 'retrieval', hiddenSize: 1024, numHeads: 16, ffnSize: 4096, depth: 24, numVisionTokens: 577 });
    expect(large.normalizeOutput).toBe(true);
    expect(large.numClasses).toBeNull();
    expect(beit3Dims(beit3ConfigFromJson({ factory: 'beit3_base_patch16_224_imageclassification' })).numClasses).toBe(1000);
    expect(parseBeit3Factory('beit3_base_patch16_224_nlvr2')).toEqual({ size: 'base', patchSize: 16, imgSize: 224, task: 'nlvr2' });
    expect(parseBeit3Factory('beit3_base_patch16_224')).toBeNull();
  });

  it('lists every bad field in one typed error, with the file’s spelling', async () => {
    const raw = await rawConfig('vqa');
    const enc = raw.encoder_config as Record<string, unknown>;
    const zodLevel = configError(() =>
      beit3ConfigFromJson({ ...raw, encoder_config: { ...enc, deepnorm: true, multiway: false, encoder_layers: 0 } }),
    );
    expect(zodLevel).toMatch(/3 invalid fields/);
    expect(zodLevel).toMatch(/encoder_config\.deepnorm/);
    expect(zodLevel).toMatch(/Sub-LN, not DeepNorm/);
    expect(zodLevel).toMatch(/encoder_config\.multiway/);
    expect(zodLevel).toMatch(/encoder_config\.encoder_layers/);
    const derived = configError(() =>
      beit3ConfigFromJson({
        ...raw,
        encoder_config: { ...enc, normalize_output: true, img_size: 30, encoder_attention_heads: 5 },
        tokens: { bos: 0, pad: 1, eos: 2, unk: 3, mask: 99 },
      }),
    );
    expect(derived).toMatch(/encoder_config\.normalize_output true, but the vqa factory sets it false/);
    expect(derived).toMatch(/image size 30 is not a multiple of patch size 8/);
    expect(derived).toMatch(/width 32 is not divisible by 5 heads/);
    expect(derived).toMatch(/tokens\.mask 99 is outside the vocabulary of 99/);
    expect(configError(() => beit3ConfigFromJson({ ...raw, factory: 'beit3_base_patch16_224' }))).toMatch(
      /not a BEiT-3 fine-tuning factory/,
    );
    expect(configError(() => beit3ConfigFromJson({ factory: 'beit3_base_patch16_384_retrieval', num_classes: 10 }))).toMatch(
      /num_classes: the retrieval model has no classifier/,
    );
    expect(configError(() => beit3ConfigFromJson({ factory: 'beit3_base_patch16_224_nlvr2', num_classes: 3 }))).toMatch(
      /true\/false \(2\)/,
    );
  });

  it.each(BEIT3_TASKS)('the tiny %s preset builds exactly the fixture’s keys and shapes', async (task) => {
    const preset = beit3Preset('tiny', { task });
    const header = await readSafetensorsHeader(join(FIXTURES, `beit3-${task}-seed0`, 'model.safetensors'));
    const model = buildBeit3(preset);
    const ours = new Map([...model.stateDict()].map(([k, t]) => [k, t.shape]));
    expect([...ours.keys()].sort()).toEqual([...header.entries.keys()].sort());
    for (const [k, t] of header.entries) expect(ours.get(k), k).toEqual(t.shape);
    model.dispose();
    // The registry names the same presets: tiny, tinyCaptioning, …, base, large.
    const name =
      task === 'retrieval'
        ? 'tiny'
        : `tiny${{ captioning: 'Captioning', vqa: 'Vqa', classification: 'Classification', nlvr2: 'Nlvr2' }[task]}`;
    expect(beit3Model.checkpoint.presets[name]!()).toEqual(preset);
  });

  it('base and large presets have the released sizes at each task’s released image size', () => {
    expect(beit3Dims(beit3Preset('base')).imageSize).toBe(384);
    expect(beit3Dims(beit3Preset('base', { task: 'captioning' }))).toMatchObject({ imageSize: 480, hiddenSize: 768 });
    expect(beit3Dims(beit3Preset('large', { task: 'classification', imageSize: 224 }))).toMatchObject({
      hiddenSize: 1024,
      numClasses: 1000,
    });
    expect(beit3Preset('base', { task: 'captioning' }).captionGeneration).toEqual({ numMaxBpeTokens: 64, numBeams: 3, lengthPenalty: 0.6 });
    expect(Object.keys(beit3Model.checkpoint.presets)).toEqual(
      expect.arrayContaining(['tiny', 'base', 'large', 'baseCaptioning', 'largeVqa']),
    );
  });

  it('image norms follow datasets.py: inception 0.5/0.5 for the vision-language tasks, ImageNet’s for classification', () => {
    expect(BEIT3_IMAGE_NORM).toEqual({ mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
    expect(BEIT3_IMAGE_NORM).toBe(IMAGE_NORMS.inception);
    expect(BEIT3_IMAGENET_NORM).toBe(IMAGE_NORMS.imagenet);
  });
});
