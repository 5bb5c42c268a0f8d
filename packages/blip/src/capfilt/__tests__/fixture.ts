// Test fixture for CapFilt: a small synthetic dataset (with noisy captions and a few broken records)
// and randomly initialised `tiny` captioner and filter checkpoints saved in the Hugging Face layout.
import { mkdir, writeFile, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { initRuntime, Rng } from '@vl/core';
import { writeSynthDataset, loadBertTokenizer } from '@vl/core/node';
import { BlipForConditionalGeneration, BlipForImageTextRetrieval } from '../../modeling.js';
import { pretrainConfig } from '../../train.js';
import { BLIP_ADDED_TOKENS } from '../../processor.js';

export interface CapfiltFixture {
  data: string;
  train: string;
  captioner: string;
  filter: string;
}

/** Writes the dataset and both checkpoints under `dir`; `bad` appends broken records to train.jsonl. */
export async function makeFixture(dir: string, o: { images?: number; bad?: boolean } = {}): Promise<CapfiltFixture> {
  await initRuntime({ backend: 'cpu' });
  const data = join(dir, 'data');
  await writeSynthDataset({
    out: data,
    images: o.images ?? 30,
    seed: 3,
    imageSize: 32,
    captionsPerImage: 2,
    noise: 0.3,
    splits: [0.8, 0.1, 0.1],
  });
  const train = join(data, 'train.jsonl');
  if (o.bad) {
    await writeFile(join(data, 'images', 'corrupt.png'), 'not a png at all');
    await appendFile(
      train,
      [
        '{"image": "images/missing.png", "captions": ["a red circle"]}',
        '{"image": "images/corrupt.png", "captions": ["a blue square"]}',
        '{"image": "images/train/x.png", "captions": [',
        '',
      ].join('\n'),
    );
    await appendFile(
      train,
      Buffer.concat([Buffer.from('{"image": "images/corrupt.png", "captions": ["caf'), Buffer.from([0xe9, 0xff]), Buffer.from('"]}\n')]),
    );
    await appendFile(train, '{"image": "../outside.png", "captions": ["escape"]}\n');
  }
  const tok = await loadBertTokenizer(join(data, 'vocab.txt'), { addedTokens: BLIP_ADDED_TOKENS });
  const config = pretrainConfig('tiny', tok, 32);
  const captioner = join(dir, 'captioner');
  const filter = join(dir, 'filter');
  await mkdir(captioner, { recursive: true });
  const cap = new BlipForConditionalGeneration(config, new Rng(1));
  cap.tokenizerDir = data;
  await cap.savePretrained(captioner);
  cap.dispose();
  const ret = new BlipForImageTextRetrieval(config, new Rng(2));
  ret.tokenizerDir = data;
  await ret.savePretrained(filter);
  ret.dispose();
  return { data, train, captioner, filter };
}
