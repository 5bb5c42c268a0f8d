// BlipForPretraining: the shared-MED key layout, decoder sharing equal to the exported captioner,
// switches, losses falling on a fixed batch under the core Trainer, checkpoint round trip, no leaks.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, Rng } from '@vl/core';
import { readSafetensorsFile, Trainer } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blipPreset } from '../config.js';
import { BlipForPretraining, type PretrainBatch } from '../pretraining.js';

const tmp = mkdtempSync(join(tmpdir(), 'blip-pretrain-'));
beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const cfg = blipPreset('tiny');
const ENC = 98;

/** B images of distinct random pixels, each with its own caption ([CLS] w w w [SEP] pad…). */
function batch(b = 6, seed = 1): PretrainBatch {
  const rng = new Rng(seed);
  const t = 7;
  const pixels = Float32Array.from({ length: b * 3 * 32 * 32 }, () => rng.normal());
  const inputIds = new Int32Array(b * t);
  const attentionMask = new Int32Array(b * t);
  for (let r = 0; r < b; r++) {
    const len = 5 + (r % 3);
    for (let c = 0; c < t; c++) {
      const tok = c === 0 ? 4 : c === len - 1 ? 3 : c < len ? 10 + ((r * 7 + c * 3) % 60) : 0;
      inputIds[r * t + c] = tok;
      attentionMask[r * t + c] = c < len ? 1 : 0;
    }
  }
  return { pixels, imageSize: 32, inputIds, attentionMask, batchSize: b, seqLength: t };
}

describe('BlipForPretraining', () => {
  it("registers the decoder's own self-attention and LM head only; twins and queues under _m / queues.*", () => {
    const m = new BlipForPretraining(cfg, { queueSize: 12 }, new Rng(0), ENC);
    const keys = [...m.stateDict().keys()];
    const dec = keys.filter((k) => k.startsWith('text_decoder.'));
    expect(dec.every((k) => /^text_decoder\.(bert\.encoder\.layer\.\d+\.attention\.|cls\.predictions\.)/.test(k))).toBe(true);
    expect(dec).toContain('text_decoder.bert.encoder.layer.1.attention.self.query.weight');
    expect(keys).toContain('vision_model_m.embeddings.class_embedding');
    expect(keys).toContain('text_encoder_m.encoder.layer.0.crossattention.self.key.weight');
    expect(keys).toContain('queues.image_queue');
    expect(keys).toContain('queues.queue_ptr');
    expect(keys).toContain('temp');
    m.dispose();
    const plain = new BlipForPretraining(cfg, { momentumDistillation: false, useQueue: false, shareDecoder: false });
    const pk = [...plain.stateDict().keys()];
    expect(pk.some((k) => k.includes('_m.') || k.startsWith('queues.'))).toBe(false);
    expect(pk).toContain('text_decoder.bert.embeddings.word_embeddings.weight');
    plain.dispose();
    expect(() => new BlipForPretraining(cfg, { momentumDistillation: false })).toThrow(/useQueue needs momentumDistillation/);
  });

  it('the shared decoder computes what the exported BlipForConditionalGeneration computes', () => {
    const m = new BlipForPretraining(cfg, { queueSize: 12 }, new Rng(3), ENC);
    m.eval();
    const cap = m.toConditionalGeneration();
    const bt = batch(3);
    const pixels = tf.tensor4d(bt.pixels, [3, 3, 32, 32]);
    const ids = tf.tensor2d(bt.inputIds, [3, 7], 'int32');
    const mask = tf.tensor2d(bt.attentionMask, [3, 7], 'int32');
    const image = m.vision_model.forward(pixels).lastHiddenState;
    const ours = m.text_decoder.forward({ inputIds: ids, attentionMask: mask, encoderHiddenStates: image });
    const theirs = cap.forward({ pixelValues: pixels, inputIds: ids, attentionMask: mask });
    expect(tf.max(tf.abs(tf.sub(ours, theirs.decoderLogits))).dataSync()[0]).toBeLessThan(1e-6);
    const ret = m.toRetrieval();
    const feat = ret.getTextFeatures(ids, mask);
    expect(feat.shape).toEqual([3, 16]);
    tf.dispose([pixels, ids, mask, image, ours, theirs.decoderLogits, theirs.imageEmbeds, feat]);
    cap.dispose();
    ret.dispose();
    m.dispose();
  });

  it('all three losses fall on a fixed batch with the core Trainer; no tensors leak per step', async () => {
    const m = new BlipForPretraining(cfg, { queueSize: 12 }, new Rng(0), ENC);
    const trainer = new Trainer<PretrainBatch>({
      model: m,
      forward: (bt, ctx) => m.forward(bt, ctx),
      afterStep: () => m.afterStep(),
      stepsPerEpoch: 5,
      optimizer: { lr: 3e-3, weightDecay: 0.01 },
      seed: 0,
    });
    const data = batch(6);
    const first = trainer.trainStep([data]);
    expect(Object.keys(first.losses).sort()).toEqual(['itc', 'itm', 'lm']);
    const before = tf.memory().numTensors;
    let last = first;
    for (let i = 0; i < 11; i++) last = trainer.trainStep([data]);
    expect(tf.memory().numTensors).toBe(before);
    // ITC and LM memorise the batch; ITM (1 positive : 2 hard negatives, chance ≈ 0.64-0.69) falls more slowly.
    for (const k of ['itc', 'lm']) expect(last.losses[k] as number, k).toBeLessThan(0.8 * (first.losses[k] as number));
    expect(last.losses.itm as number).toBeLessThan(first.losses.itm as number);
    expect(m.queues?.pointer).toBe((12 * 6) % 12);
    trainer.optimizer.dispose();
    m.dispose();
  });

  it('objectives and parts switch off by config', () => {
    for (const [opts, expected] of [
      [{ objectives: { itm: { enabled: false } } }, ['itc', 'lm']],
      [{ objectives: { itc: { enabled: false }, lm: { weight: 0 } }, negatives: 'random' as const }, ['itm']],
      [{ momentumDistillation: false, useQueue: false, shareDecoder: false }, ['itc', 'itm', 'lm']],
    ] as const) {
      const m = new BlipForPretraining(cfg, { queueSize: 12, ...opts }, new Rng(0), ENC);
      const out = m.forward(batch(4), { rng: new Rng(1), alpha: 0.4 });
      expect(Object.keys(out.losses).sort()).toEqual([...expected]);
      tf.dispose([out.loss, ...Object.values(out.losses)]);
      m.dispose();
    }
  });

  it('randomNegativesSteps: random ITM negatives before that optimizer step, hard mining from it on', () => {
    const opts = { momentumDistillation: false, useQueue: false } as const;
    const warm = new BlipForPretraining(cfg, { ...opts, randomNegativesSteps: 3 }, new Rng(0), ENC);
    const random = new BlipForPretraining(cfg, { ...opts, negatives: 'random' }, new Rng(0), ENC);
    const hard = new BlipForPretraining(cfg, opts, new Rng(0), ENC);
    expect([0, 2, 3, 10].map((s) => warm.negativesAt(s))).toEqual(['random', 'random', 'hard', 'hard']);
    expect(hard.negativesAt(0)).toBe('hard');
    expect(random.negativesAt(10)).toBe('random');
    // Same weights and draws: the loss equals the random model's before step 3 and the hard model's from it.
    const itm = (m: BlipForPretraining, step: number) => {
      const out = m.forward(batch(6), { rng: new Rng(1), alpha: 0, step });
      const v = out.losses.itm!.dataSync()[0]!;
      tf.dispose([out.loss, ...Object.values(out.losses)]);
      return v;
    };
    expect(itm(warm, 2)).toBe(itm(random, 2));
    expect(itm(warm, 3)).toBe(itm(hard, 3));
    expect(itm(random, 2)).not.toBe(itm(hard, 2));
    for (const m of [warm, random, hard]) m.dispose();
  });

  it('savePretrained → fromPretrained restores weights, twins, queues and options exactly', async () => {
    const m = new BlipForPretraining(cfg, { queueSize: 12, negatives: 'random' }, new Rng(5), ENC);
    const out = m.forward(batch(4), { rng: new Rng(1), alpha: 0.4 }); // moves the queue pointer
    tf.dispose([out.loss, ...Object.values(out.losses)]);
    await m.savePretrained(join(tmp, 'pre'));
    const file = await readSafetensorsFile(join(tmp, 'pre', 'model.safetensors'));
    expect(file.tensors.get('queues.queue_ptr')?.fileDtype).toBe('I64');
    const back = await BlipForPretraining.fromPretrained(join(tmp, 'pre'));
    expect(back.options).toEqual(m.options);
    expect(back.encTokenId).toBe(ENC);
    for (const [k, v] of m.stateDict()) expect(tf.max(tf.abs(tf.sub(v, back.stateDict().get(k) as tf.Tensor))).dataSync()[0], k).toBe(0);
    m.dispose();
    back.dispose();
  });
});
