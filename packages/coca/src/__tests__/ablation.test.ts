// CoCa's ablation adapter on a hand-made AblationData: trains a few steps per caption-loss weight, the
// curve logs exactly the enabled objectives, evaluation returns finite metrics in range, no leaks.
import * as tf from '@tensorflow/tfjs-core';
import { type AblationData, type AblationVariant, initRuntime, Rng } from '@vl/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ablationRows, cocaAblation } from '../ablation.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

/** 8 images, 2 captions each, vocabulary of 20 WordPiece ids (pad 0, cls 2, sep 3). */
function data(): AblationData {
  const rng = new Rng(1);
  const set = (count: number) => {
    const size = 32;
    const L = 8;
    const n = count * 2;
    const inputIds = new Int32Array(n * L);
    const attentionMask = new Int32Array(n * L);
    for (let p = 0; p < n; p++) {
      const words = 2 + (p % 4);
      inputIds[p * L] = 2;
      for (let k = 1; k <= words; k++) inputIds[p * L + k] = 5 + rng.int(15);
      inputIds[p * L + words + 1] = 3;
      for (let k = 0; k < words + 2; k++) attentionMask[p * L + k] = 1;
    }
    return {
      images: { pixels: Float32Array.from({ length: count * 3 * size * size }, () => rng.normal()), count, size },
      captions: { inputIds, attentionMask, seqLength: L, imageOf: Int32Array.from({ length: n }, (_, p) => Math.floor(p / 2)) },
    };
  };
  const train = set(8);
  const ev = set(4);
  return {
    key: 'test',
    vocabSize: 20,
    tokens: { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 },
    train: { ...train, noisy: 0 },
    eval: ev,
    summary: { trainImages: 8, trainCaptions: 16, noisyCaptions: 0, evalImages: 4, evalCaptions: 8 },
  };
}

const variant = (captionWeight: number): AblationVariant => ({
  name: `caption ${captionWeight}`,
  objectives: { caption: { weight: captionWeight } },
  negatives: 'hard',
  distill: false,
  queueSize: undefined,
  options: {},
  useQueue: false,
  train: { steps: 3, batchSize: 4, lr: 1e-3, minLr: 1e-5, weightDecay: 0.1, warmupSteps: 1 },
  eval: { k: 8 },
});

describe('CoCa ablation adapter', () => {
  it('lays captions out as [sot, w…, eot, 0…] over the vocabulary + 2', () => {
    const rows = ablationRows(data(), 'train', 8);
    expect(Array.from(rows.subarray(0, 8))).toEqual([20, rows[1], rows[2], 21, 0, 0, 0, 0]);
  });

  it('trains each caption-loss weight and evaluates retrieval and held-out caption CE', async () => {
    const d = data();
    for (const w of [0, 2]) {
      const before = tf.memory().numTensors;
      const run = await cocaAblation.train({ preset: 'tiny' }, variant(w), 0, d);
      expect(run.curve).toHaveLength(3);
      expect(Object.keys(run.curve[0]!.losses).sort()).toEqual(w ? ['caption', 'contrastive'] : ['contrastive']);
      const m = run.evaluate(variant(w));
      for (const k of ['tr_r1', 'ir_r1', 'r_mean']) expect(m[k]).toBeGreaterThanOrEqual(0);
      for (const k of ['tr_r1', 'ir_r1', 'r_mean']) expect(m[k]).toBeLessThanOrEqual(100);
      expect(Number.isFinite(m.caption_ce)).toBe(true);
      run.dispose();
      expect(tf.memory().numTensors).toBe(before);
    }
  });

  it('takes visionConfig overrides (the pooling ablation) and validates them', async () => {
    const run = await cocaAblation.train({ preset: 'tiny', visionConfig: { contrastivePool: 'cls' } }, variant(2), 0, data());
    expect(Number.isFinite(run.evaluate(variant(2)).r_mean)).toBe(true);
    run.dispose();
    await expect(cocaAblation.train({ preset: 'tiny', visionConfig: { contrastivePool: 'max' } }, variant(2), 0, data())).rejects.toThrow(
      /contrastive_pool/,
    );
    // Sections of other models are refused, not ignored.
    await expect(cocaAblation.train({ preset: 'tiny', albefConfig: { queueSize: 8 } }, variant(2), 0, data())).rejects.toThrow(
      /not albefConfig/,
    );
  });
});
