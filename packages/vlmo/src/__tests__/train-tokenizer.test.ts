// Stage 1 with a trained visual tokenizer (`--tokenizer`, core's k-means codebook): the MIM head is sized by
// the tokenizer's vocabulary and its loss goes down; a tokenizer fitted under another image normalisation is
// refused. wasm, for speed.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IMAGE_NORMS, initRuntime } from '@vl/core';
import { trainVisualTokenizer, writeSynthDataset } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'vlmo-tok-'));
const data = join(tmp, 'data');

beforeAll(async () => {
  await initRuntime({ backend: 'wasm' });
  await writeSynthDataset({ out: data, images: 20, seed: 2, imageSize: 32, captionsPerImage: 1, splits: [0.4, 0.1, 0.5] });
  for (const [name, norm] of [
    ['tok', IMAGE_NORMS.inception],
    ['tok-imagenet', IMAGE_NORMS.imagenet],
  ] as const) {
    const t = await trainVisualTokenizer({
      train: join(data, 'train.jsonl'),
      out: join(tmp, name),
      vocabSize: 12,
      imageSize: 32,
      patchSize: 8,
      norm,
      seed: 1,
    });
    t.tokenizer.dispose();
  }
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function stage1(tokenizer: string): Promise<{ code: number; text: string }> {
  const lines: string[] = [];
  const io = { out: (l: string) => void lines.push(l), err: (l: string) => void lines.push(l) };
  const args = [
    'train',
    '--stage',
    '1',
    '--data',
    data,
    '--out',
    join(tmp, 'run'),
    '--batch-size',
    '8',
    '--max-steps',
    '8',
    '--lr',
    '3e-3',
  ];
  const code = await runCli([...args, '--tokenizer', tokenizer, '--seed', '1', '--quiet', '--backend', 'wasm'], io);
  return { code, text: lines.join('\n') };
}

describe('vlmo train --stage 1 --tokenizer', () => {
  it('predicts the trained tokenizer codes (head sized by its vocabulary) and the MIM loss goes down', async () => {
    const r = await stage1(join(tmp, 'tok'));
    expect(r.code, r.text).toBe(0);
    const config = JSON.parse(readFileSync(join(tmp, 'run', 'model', 'config.json'), 'utf8')) as {
      vlmo_config: { visual_vocab_size: number };
    };
    expect(config.vlmo_config.visual_vocab_size).toBe(12);
    const steps = readFileSync(join(tmp, 'run', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { losses: { mim: number } }).losses.mim);
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(mean(steps.slice(-3))).toBeLessThan(mean(steps.slice(0, 3)));
  }, 60_000);

  it('refuses a tokenizer fitted on pixels normalised otherwise', async () => {
    const r = await stage1(join(tmp, 'tok-imagenet'));
    expect(r.code).not.toBe(0);
    expect(r.text).toMatch(/does not fit this model: it was fitted on pixels normalised with mean 0.485/);
  }, 60_000);
});
