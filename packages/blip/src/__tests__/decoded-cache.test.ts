// Decoded images kept across epochs (decoded-cache.ts): every epoch's batches equal core's loader's
// (keys, caption draws, pixels, token ids), a record whose image fails is dropped after the shuffle as
// there, too-big or random-transform datasets are left to core's loader, and `pretrainBlip` trains to
// the same weights and losses with and without it.
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime } from '@vl/core';
import { createDataLoader, type ImageTextBatch, loadBertTokenizer, writeSynthDataset } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecodedImages } from '../decoded-cache.js';
import { BLIP_ADDED_TOKENS, BLIP_IMAGE_NORM } from '../processor.js';
import { pretrainBlip } from '../train.js';

const tmp = mkdtempSync(join(tmpdir(), 'blip-decoded-'));
const data = join(tmp, 'data');
const train = join(data, 'train.jsonl');
const spec = { format: 'jsonl', path: train } as const;
const transform = { size: 32, mode: 'squash' as const, interpolation: 'bicubic' as const, norm: BLIP_IMAGE_NORM };

beforeAll(async () => {
  await initRuntime({ backend: 'wasm' });
  await writeSynthDataset({ out: data, images: 30, seed: 3, imageSize: 32, captionsPerImage: 3, splits: [1, 0, 0] });
  // A record whose image is missing, in the middle of the file: core's loader drops it after shuffling.
  const lines = readFileSync(train, 'utf8').trim().split('\n');
  lines.splice(7, 0, JSON.stringify({ image: 'images/train/missing.png', captions: ['a missing image'] }));
  rmSync(train);
  appendFileSync(train, `${lines.join('\n')}\n`);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function collect(batches: AsyncGenerator<ImageTextBatch>) {
  const out = [];
  for await (const b of batches) {
    out.push({
      keys: b.keys,
      captions: b.captions,
      pixels: Array.from(await b.pixelValues.data()),
      ids: Array.from(await b.inputIds.data()),
      mask: Array.from(await b.attentionMask.data()),
      shape: b.inputIds.shape,
    });
    b.dispose();
  }
  return out;
}

describe('DecodedImages', () => {
  it("gives core's loader's batches in every epoch, bit for bit, without leaking tensors", async () => {
    const tok = await loadBertTokenizer(join(data, 'vocab.txt'), { addedTokens: BLIP_ADDED_TOKENS });
    const decoded = await DecodedImages.load(spec, transform, 31);
    expect(decoded?.size).toBe(30); // the missing image is not kept
    const options = { batchSize: 8, tokenizer: tok, maxLength: 30, shuffle: 100_000, dropLast: true };
    const before = tf.memory().numTensors;
    for (const seed of [0, 1, 1001]) {
      const mine = await collect((decoded as DecodedImages).batches(seed, options));
      const core = await collect(createDataLoader(spec, { ...options, captions: 'random', transform, seed }).batches);
      expect(mine.length).toBe(3); // 30 images, batches of 8, the last 6 dropped
      expect(mine).toEqual(core);
    }
    // File order (no shuffle) and a final short batch kept.
    const plain = { ...options, shuffle: 0, dropLast: false };
    const mine = await collect((decoded as DecodedImages).batches(5, plain));
    expect(mine.map((b) => b.keys.length)).toEqual([8, 8, 8, 6]);
    expect(mine).toEqual(await collect(createDataLoader(spec, { ...plain, captions: 'random', transform, seed: 5 }).batches));
    expect(tf.memory().numTensors).toBe(before);
  });

  it("leaves random transforms and datasets over the byte budget to core's loader", async () => {
    expect(await DecodedImages.load(spec, { ...transform, flip: true }, 31)).toBeNull();
    expect(await DecodedImages.load(spec, { ...transform, mode: 'random-resized-crop' as const }, 31)).toBeNull();
    // 31 records × 3 × 32 × 32 float32 = 380,928 bytes.
    expect(await DecodedImages.load(spec, transform, 31, 380_927)).toBeNull();
    expect(await DecodedImages.load(spec, transform, 31, 380_928)).not.toBeNull();
  });

  it('pretrainBlip trains to the same weights and losses with the images kept as without', async () => {
    const run = async (name: string, cacheImages: false | undefined) => {
      const out = join(tmp, name);
      // 30 images, batch 8: 3 steps an epoch, so 7 steps cross two epoch boundaries.
      await pretrainBlip({
        train,
        vocab: join(data, 'vocab.txt'),
        out,
        imageSize: 32,
        pretraining: { momentumDistillation: false, useQueue: false, objectives: { itm: { enabled: false } } },
        batchSize: 8,
        maxSteps: 7,
        seed: 2,
        cacheImages,
      });
      const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').replace(/"ms":\d+/g, '');
      return { metrics, weights: readFileSync(join(out, 'pretrain', 'model.safetensors')) };
    };
    const kept = await run('kept', undefined);
    const streamed = await run('streamed', false);
    expect(kept.metrics.trim().split('\n')).toHaveLength(7);
    expect(kept.metrics).toBe(streamed.metrics);
    expect(kept.weights.equals(streamed.weights)).toBe(true);
  }, 90_000);
});
