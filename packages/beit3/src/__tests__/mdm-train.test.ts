// `beit3 train` (= `vl train beit3`) on a tiny synthetic dataset: `--task tokenizer` writes a k-means visual
// tokenizer with its codebook usage; `--task mdm` pretrains with it, every loss finite; frozen weights
// (--config freeze) stay bit-identical to the initialisation; 2 steps + resume to 4 equal 4 steps at once
// bit for bit; the model folder loads back and its backbone goes under a retrieval model. wasm, for speed.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initRuntime, Rng } from '@vl/core';
import { readJsonFile, writeSynthDataset } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli.js';
import { loadBeit3 } from '../checkpoint.js';
import { beit3ConfigFromJson } from '../config.js';
import { type Beit3MdmConfig, Beit3ForMaskedDataModeling } from '../mdm.js';
import { loadBeit3Backbone, loadBeit3Mdm, pretrainBeit3Mdm } from '../mdm-train.js';
import { Beit3ForRetrieval } from '../model.js';
import { finetuneBeit3Retrieval } from '../retrieval-finetune.js';

const tmp = mkdtempSync(join(tmpdir(), 'beit3-mdm-'));
const data = join(tmp, 'data');
const tok = join(tmp, 'tok');
const CLIP = fileURLToPath(new URL('../../../../fixtures/coca-openclip/clip-seed0/', import.meta.url));

beforeAll(async () => {
  await initRuntime({ backend: 'wasm' });
  await writeSynthDataset({ out: data, images: 24, seed: 2, imageSize: 32, captionsPerImage: 1, splits: [0.5, 0.25, 0.25] });
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function cli(args: string[]): Promise<string> {
  const lines: string[] = [];
  const io = { out: (l: string) => void lines.push(l), err: (l: string) => void lines.push(l) };
  const code = await runCli([...args, '--quiet', '--backend', 'wasm'], io);
  expect(code, lines.join('\n')).toBe(0);
  return lines.join('\n');
}

const mdm = (out: string, extra: string[] = []) =>
  cli(['train', '--data', data, '--tokenizer', tok, '--out', out, '--batch-size', '6', '--lr', '3e-3', '--seed', '1', ...extra]);

function weights(m: { stateDict(): Map<string, { dataSync(): ArrayLike<number> }> }): Map<string, number[]> {
  return new Map([...m.stateDict()].map(([k, t]) => [k, Array.from(t.dataSync())]));
}

describe('beit3 train --task tokenizer | mdm', () => {
  it('trains the visual tokenizer and reports its codebook usage on training and held-out images', async () => {
    const text = await cli(['train', '--task', 'tokenizer', '--data', data, '--out', tok, '--visual-vocab', '16', '--seed', '3']);
    expect(text).toMatch(/16 codes from 192 patches of 12 images/);
    expect(text).toMatch(/codebook usage, training images: 16 of 16 codes used, 0 dead/);
    expect(text).toMatch(/codebook usage, held-out images: \d+ of 16 codes used/);
    const file = await readJsonFile<{ vocab_size: number; usage: { train: { dead: number } } }>(
      join(tok, 'tokenizer', 'visual_tokenizer.json'),
    );
    expect(file.vocab_size).toBe(16);
  }, 60_000);

  it('--teacher clip:DIR: k-means over a CLIP vision tower, embedded in the tokenizer folder, read by MDM; bad specs refused', async () => {
    const clipTok = join(tmp, 'tok-clip');
    const text = await cli([
      'train',
      '--task',
      'tokenizer',
      '--data',
      data,
      '--out',
      clipTok,
      '--visual-vocab',
      '16',
      '--seed',
      '3',
      '--teacher',
      `clip:${CLIP}`,
    ]);
    expect(text).toMatch(/k-means over the patch tokens of the CLIP vision tower in .*clip-seed0\/?, 32 wide\): 16 codes from 192 patches/);
    const file = await readJsonFile<{ teacher: { kind: string; dim: number; config: { layers: number } } }>(
      join(clipTok, 'tokenizer', 'visual_tokenizer.json'),
    );
    expect(file.teacher).toMatchObject({ kind: 'vit', dim: 32, config: { layers: 3 } });
    const run = await cli([
      'train',
      '--data',
      data,
      '--tokenizer',
      clipTok,
      '--out',
      join(tmp, 'mdm-clip2'),
      '--batch-size',
      '6',
      '--max-steps',
      '1',
    ]);
    expect(run).toMatch(/masked data modeling: 1 steps/);
    const lines: string[] = [];
    const io = { out: (l: string) => void lines.push(l), err: (l: string) => void lines.push(l) };
    const tokArgs = ['train', '--task', 'tokenizer', '--data', data, '--out', join(tmp, 'x'), '--quiet', '--teacher'];
    expect(await runCli([...tokArgs, 'vit:/nowhere'], io)).not.toBe(0);
    expect(lines.join('\n')).toMatch(/INVALID_ARGUMENT.*--teacher must be 'random' or 'clip:DIR'/);
    expect(await runCli([...tokArgs, `clip:${tmp}`], io)).not.toBe(0);
    expect(lines.join('\n')).toMatch(/CHECKPOINT_INVALID \[.*\]: no config.json/);
  }, 60_000);

  it('pretrains by MDM with frozen parts left bit-identical, and resumes exactly', async () => {
    writeFileSync(join(tmp, 'freeze.json'), JSON.stringify({ freeze: ['beit3.vision_embed.**', 'beit3.encoder.layers.0.ffn.B.**'] }));
    const text = await mdm(join(tmp, 'full'), ['--max-steps', '4', '--checkpoint-every', '2', '--config', join(tmp, 'freeze.json')]);
    expect(text).toMatch(/masked data modeling: 4 steps .*rows per batch: 2 mim, 2 mlm, 2 mvlm/);
    expect(text).toMatch(/frozen: 10 tensors/); // proj.{weight,bias}, cls_token, mask_token; fc1, ffn_layernorm, fc2 (weight, bias)
    const records = readFileSync(join(tmp, 'full', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { loss: number; losses: Record<string, number> });
    expect(records).toHaveLength(4);
    for (const r of records) {
      expect(Object.keys(r.losses).sort()).toEqual(['mim', 'mlm', 'mvlm']);
      for (const v of [r.loss, ...Object.values(r.losses)]) expect(Number.isFinite(v)).toBe(true);
    }
    const trained = await loadBeit3Mdm(join(tmp, 'full'));
    const config = beit3ConfigFromJson(JSON.parse(readFileSync(join(tmp, 'full', 'model', 'config.json'), 'utf8'))) as Beit3MdmConfig;
    expect(config.mdm.visualVocabSize).toBe(16);
    const init = new Beit3ForMaskedDataModeling(config, new Rng(1).fork('init'));
    const a = weights(trained);
    const b = weights(init);
    for (const [k, v] of a) {
      const frozen = k.startsWith('beit3.vision_embed.') || k.startsWith('beit3.encoder.layers.0.ffn.B.');
      expect(v === b.get(k) || JSON.stringify(v) === JSON.stringify(b.get(k)), k).toBe(frozen);
    }
    init.dispose();

    // A crash during step 3 (after the step-2 checkpoint), then the same command again: bit-identical to the
    // uninterrupted run (same schedule, data order, masks and drop-path draws).
    const options = {
      train: join(data, 'train.jsonl'),
      vocab: join(data, 'vocab.txt'),
      tokenizer: tok,
      out: join(tmp, 'part'),
      batchSize: 6,
      lr: 3e-3,
      seed: 1,
      maxSteps: 4,
      checkpointEvery: 2,
      freeze: ['beit3.vision_embed.**', 'beit3.encoder.layers.0.ffn.B.**'],
    };
    await expect(
      pretrainBeit3Mdm({
        ...options,
        onProgress: (done) => {
          if (done === 3) throw new Error('simulated crash');
        },
      }),
    ).rejects.toThrow(/simulated crash/);
    const resumed = await pretrainBeit3Mdm(options);
    expect(resumed.resumedFrom).toMatch(/step-0+2/);
    expect(resumed.steps).toBe(4);
    const c = await loadBeit3Mdm(join(tmp, 'part'));
    for (const [k, v] of weights(c)) expect(v, k).toEqual(a.get(k));
    c.dispose();

    // The backbone under a retrieval model; the MDM folder itself is refused by loadBeit3 with a pointer.
    const retrieval = new Beit3ForRetrieval({ ...config, mdm: undefined } as never, new Rng(5));
    const r = await loadBeit3Backbone(retrieval, join(tmp, 'full'));
    expect(r.loaded).toBe([...trained.stateDict().keys()].filter((k) => k.startsWith('beit3.')).length);
    const rw = weights(retrieval);
    for (const [k, v] of a) if (k.startsWith('beit3.')) expect(rw.get(k), k).toEqual(v);
    await expect(loadBeit3(join(tmp, 'full', 'model'))).rejects.toThrow(/masked-data-modeling pretraining weights/);
    retrieval.dispose();
    trained.dispose();

    // Retrieval fine-tuning from that backbone runs and measures Recall@K on the test split (6 images, 6 captions).
    const ft = await finetuneBeit3Retrieval({
      train: join(data, 'train.jsonl'),
      test: join(data, 'test.jsonl'),
      vocab: join(data, 'vocab.txt'),
      out: join(tmp, 'ft'),
      init: join(tmp, 'full'),
      maxTrainRecords: 6,
      batchSize: 6,
      maxSteps: 2,
      seed: 1,
    });
    expect(ft.steps).toBe(2);
    expect(Number.isFinite(ft.lastLoss)).toBe(true);
    expect(ft.recall.imageToText.ranks).toHaveLength(6);
    for (const k of [1, 5]) expect(ft.recall.textToImage.recall[k]).toBeGreaterThanOrEqual(0);
    expect(ft.recall.imageToText.recall[10]).toBe(100);
  }, 180_000);

  it('refuses a missing tokenizer, unknown config keys and a task preset', async () => {
    const lines: string[] = [];
    const io = { out: (l: string) => void lines.push(l), err: (l: string) => void lines.push(l) };
    expect(await runCli(['train', '--data', data, '--out', join(tmp, 'x'), '--quiet'], io)).not.toBe(0);
    expect(lines.join('\n')).toMatch(/needs --tokenizer DIR/);
    writeFileSync(join(tmp, 'bad.json'), JSON.stringify({ nope: 1 }));
    expect(
      await runCli(
        ['train', '--data', data, '--tokenizer', tok, '--out', join(tmp, 'x'), '--config', join(tmp, 'bad.json'), '--quiet'],
        io,
      ),
    ).not.toBe(0);
    expect(lines.join('\n')).toMatch(/unknown keys nope/);
    expect(
      await runCli(['train', '--data', data, '--tokenizer', tok, '--out', join(tmp, 'x'), '--preset', 'tinyVqa', '--quiet'], io),
    ).not.toBe(0);
    expect(lines.join('\n')).toMatch(/--preset must be tiny, base or large/);
  });
});
