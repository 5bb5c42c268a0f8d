// Config validation and presets, state-dict keys against the reference files, the
// savePretrained → fromPretrained round trip, cached vs uncached decoding, and leak checks.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { fullSequenceDecoder, generate, initRuntime, isVlError } from '@vl/core';
import { readSafetensorsFile, readSafetensorsHeader } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBlipConfig } from '../checkpoint.js';
import { blipPreset, parseBlipConfig } from '../config.js';
import { textDecoderStep } from '../decoder-step.js';
import { BlipForConditionalGeneration, BlipForImageTextRetrieval } from '../modeling.js';
import { CAPTIONING, leakedTensors, RETRIEVAL } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'blip-model-'));

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('config', () => {
  it('reads the fixture config.json with HF keys and keeps unknown keys', async () => {
    const cfg = await readBlipConfig(CAPTIONING);
    expect(cfg.modelType).toBe('blip');
    expect(cfg.textConfig.sepTokenId).toBe(3);
    expect(cfg.textConfig.bosTokenId).toBe(97);
    expect(cfg.visionConfig.layerNormEps).toBe(1e-5);
    expect(cfg.textConfig.topK).toBe(50); // unknown to us, preserved for savePretrained
  });

  it('fills HF defaults and lists every invalid field with its JSON path', () => {
    const cfg = parseBlipConfig({});
    expect(cfg.textConfig.vocabSize).toBe(30524);
    expect(cfg.visionConfig.imageSize).toBe(384);
    let err: unknown;
    try {
      parseBlipConfig({ visionConfig: { hiddenSize: 'big', patchSize: -1 }, textConfig: { numHiddenLayers: 1.5 } });
    } catch (e) {
      err = e;
    }
    expect(isVlError(err, 'CONFIG_INVALID')).toBe(true);
    const msg = (err as Error).message;
    expect(msg).toContain('visionConfig.hiddenSize');
    expect(msg).toContain('visionConfig.patchSize');
    expect(msg).toContain('textConfig.numHiddenLayers');
  });

  it('names a bad field of a config.json by its snake_case path in the file', async () => {
    const bad = join(tmp, 'bad-config');
    mkdirSync(bad, { recursive: true });
    writeFileSync(join(bad, 'config.json'), JSON.stringify({ vision_config: { hidden_size: 'big' }, transformers_version: '4.30.0' }));
    await expect(readBlipConfig(bad)).rejects.toThrow(/\$\.vision_config\.hidden_size/);
  });

  it('rejects towers that do not fit together', () => {
    expect(() => parseBlipConfig({ visionConfig: { hiddenSize: 32, numAttentionHeads: 4 } })).toThrow(/encoderHiddenSize/);
  });

  it('presets: tiny matches the fixture sizes, base is ViT-B/16 at 384px with BERT-base', () => {
    const tiny = blipPreset('tiny');
    expect(tiny.visionConfig.hiddenSize).toBe(32);
    expect(tiny.textConfig.bosTokenId).toBe(97);
    const base = blipPreset('base');
    expect([
      base.visionConfig.hiddenSize,
      base.visionConfig.numHiddenLayers,
      base.visionConfig.patchSize,
      base.visionConfig.imageSize,
    ]).toEqual([768, 12, 16, 384]);
    expect([
      base.textConfig.hiddenSize,
      base.textConfig.numHiddenLayers,
      base.textConfig.numAttentionHeads,
      base.textConfig.vocabSize,
    ]).toEqual([768, 12, 12, 30524]);
    expect(base.imageTextHiddenSize).toBe(256);
  });
});

describe('checkpoints', () => {
  it('our key names and shapes are exactly the files (captioning without the tied decoder bias)', async () => {
    for (const [dir, make] of [
      [CAPTIONING, (c: ReturnType<typeof blipPreset>) => new BlipForConditionalGeneration(c)],
      [RETRIEVAL, (c: ReturnType<typeof blipPreset>) => new BlipForImageTextRetrieval(c)],
    ] as const) {
      const model = make(await readBlipConfig(dir));
      const header = await readSafetensorsHeader(join(dir, 'model.safetensors'));
      const theirs = new Map([...header.entries].map(([k, e]) => [k, e.shape]));
      const ours = new Map([...model.stateDict()].map(([k, t]) => [k, t.shape]));
      expect([...ours.keys()].sort()).toEqual([...theirs.keys()].sort());
      for (const [k, s] of theirs) expect(ours.get(k), k).toEqual(s);
      expect(ours.has('text_decoder.cls.predictions.decoder.bias')).toBe(false);
      model.dispose();
    }
  });

  it('savePretrained → fromPretrained reproduces every tensor bit for bit, in the HF layout', async () => {
    for (const [dir, load] of [
      [CAPTIONING, (d: string) => BlipForConditionalGeneration.fromPretrained(d)],
      [RETRIEVAL, (d: string) => BlipForImageTextRetrieval.fromPretrained(d)],
    ] as const) {
      const a = await load(dir);
      const out = join(tmp, dir.split('/').pop() as string);
      await a.savePretrained(out);
      const saved = await readSafetensorsFile(join(out, 'model.safetensors'));
      const original = await readSafetensorsFile(join(dir, 'model.safetensors'));
      expect([...saved.tensors.keys()].sort()).toEqual([...original.tensors.keys()].sort());
      for (const [k, t] of original.tensors) {
        const s = saved.tensors.get(k);
        expect(s?.fileDtype, k).toBe(t.fileDtype); // position_ids stay I64
        expect(Buffer.from((s?.data as Float32Array).buffer).equals(Buffer.from(t.data.buffer)), k).toBe(true);
      }
      // The saved config.json keeps every key and value of the original file in HF's snake_case.
      const fileBefore = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
      const fileAfter = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
      expect(fileAfter).toMatchObject(fileBefore);
      expect(Object.keys(fileAfter).filter((k) => /[A-Z]/.test(k))).toEqual([]);
      const cfg = await readBlipConfig(out);
      expect(cfg.architectures?.[0]).toBe(a.constructor.name);
      expect(cfg.textConfig).toEqual(a.config.textConfig);
      const b = await load(out);
      for (const [k, t] of a.stateDict()) expect(tf.max(tf.abs(tf.sub(t, b.stateDict().get(k) as tf.Tensor))).dataSync()[0], k).toBe(0);
      a.dispose();
      b.dispose();
    }
  });

  it('a missing or mis-shaped key is a STATE_DICT_MISMATCH naming it', async () => {
    const cfg = await readBlipConfig(CAPTIONING);
    const wrong = parseBlipConfig({ ...cfg, textConfig: { ...cfg.textConfig, vocabSize: 100 } });
    const model = new BlipForConditionalGeneration(wrong);
    const { loadBlipWeights } = await import('../checkpoint.js');
    await expect(loadBlipWeights(model, CAPTIONING)).rejects.toThrow(/word_embeddings\.weight expected \[100,32\] got \[99,32\]/);
    model.dispose();
  });
});

describe('decoding', () => {
  it('the KV-cached decoder step equals full recomputation (greedy and beam, same ids and scores)', async () => {
    const model = await BlipForConditionalGeneration.fromPretrained(CAPTIONING);
    const pixels = tf.randomNormal([2, 3, 32, 32], 0, 1, 'float32', 7);
    const image = model.vision_model.forward(pixels).lastHiddenState;
    const full = fullSequenceDecoder((ids) => model.text_decoder.forward({ inputIds: ids, encoderHiddenStates: image }));
    for (const numBeams of [1, 3]) {
      const opts = { inputIds: [[97], [97]], maxLength: 12, numBeams, eosTokenId: 3, padTokenId: 0, outputScores: true };
      // The full-sequence reference sees rows in prompt order only for greedy; for beams compare per item.
      if (numBeams === 1) {
        const a = await generate(textDecoderStep(model.text_decoder.bert, model.text_decoder.predictions, image), opts);
        const b = await generate(full, opts);
        expect(a.sequences).toEqual(b.sequences);
        a.scores?.forEach((s, i) => expect(Math.abs(s - (b.scores?.[i] as number))).toBeLessThan(1e-4));
      } else {
        for (let item = 0; item < 2; item++) {
          const one = tf.slice(image, [item, 0, 0], [1, -1, -1]);
          const a = await generate(textDecoderStep(model.text_decoder.bert, model.text_decoder.predictions, one), {
            ...opts,
            inputIds: [[97]],
          });
          const ref = fullSequenceDecoder((ids) =>
            model.text_decoder.forward({ inputIds: ids, encoderHiddenStates: tf.tile(one, [ids.shape[0], 1, 1]) }),
          );
          const b = await generate(ref, { ...opts, inputIds: [[97]] });
          expect(a.sequences).toEqual(b.sequences);
          expect(Math.abs((a.scores?.[0] as number) - (b.scores?.[0] as number))).toBeLessThan(1e-4);
          one.dispose();
        }
      }
    }
    tf.dispose([pixels, image]);
    model.dispose();
  });

  it('generate, forward and retrieval calls leak no tensors', async () => {
    const cap = await BlipForConditionalGeneration.fromPretrained(CAPTIONING);
    const ret = await BlipForImageTextRetrieval.fromPretrained(RETRIEVAL);
    const pixels = tf.randomNormal([2, 3, 32, 32], 0, 1, 'float32', 3);
    const ids = tf.tensor2d(
      [
        [4, 10, 11, 12, 3],
        [4, 20, 21, 3, 0],
      ],
      [2, 5],
      'int32',
    );
    const mask = tf.tensor2d(
      [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0],
      ],
      [2, 5],
      'int32',
    );
    const leaked = await leakedTensors(async () => {
      await cap.generate(pixels, { maxLength: 8, numBeams: 3 });
      await cap.generate(pixels, { maxLength: 8, inputIds: ids as tf.Tensor2D });
      const f = cap.forward({ pixelValues: pixels, inputIds: ids, attentionMask: mask });
      tf.dispose([f.decoderLogits, f.imageEmbeds]);
      const itm = ret.forwardItm({ pixelValues: pixels, inputIds: ids, attentionMask: mask });
      const itc = ret.forwardItc({ pixelValues: pixels, inputIds: ids, attentionMask: mask });
      tf.dispose([...Object.values(itm), ...Object.values(itc)]);
      tf.dispose([ret.getImageFeatures(pixels), ret.getTextFeatures(ids, mask)]);
    });
    expect(leaked).toBe(0);
    tf.dispose([pixels, ids, mask]);
    cap.dispose();
    ret.dispose();
  });
});
