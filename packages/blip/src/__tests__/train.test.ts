// `blip pretrain` → `blip eval` end to end on a small synthetic dataset: checkpoints, HF-layout
// exports that load and caption, metrics with chance baselines, resume from the checkpoint.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initRuntime } from '@vl/core';
import { writeSynthDataset } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlipForConditionalGeneration } from '../modeling.js';
import { runCli } from '../cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'blip-train-'));
const data = join(tmp, 'data');
const out = join(tmp, 'run');

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
  await writeSynthDataset({ out: data, images: 40, seed: 1, imageSize: 32, captionsPerImage: 2, splits: [0.6, 0.1, 0.3] });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('pretrain and eval commands', () => {
  it('pretrain writes a resumable run and HF-layout exports; eval reports metrics with chance', async () => {
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    const args = [
      'pretrain',
      '--data',
      data,
      '--out',
      out,
      '--batch-size',
      '8',
      '--max-steps',
      '2',
      '--queue-size',
      '16',
      '--quiet',
      '--backend',
      'cpu',
    ];
    expect(await runCli(args, io)).toBe(0);
    expect(lines.join('\n')).toMatch(/pretrained 2 steps/);
    expect(lines.join('\n')).toMatch(/itc .*itm .*lm /);
    for (const d of ['pretrain', 'captioning', 'retrieval']) {
      expect(existsSync(join(out, d, 'model.safetensors')), d).toBe(true);
      expect(existsSync(join(out, d, 'vocab.txt')), d).toBe(true);
    }
    expect(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2);
    // The exported captioner is an ordinary HF-layout checkpoint with the synthetic vocabulary.
    const cap = await BlipForConditionalGeneration.fromPretrained(join(out, 'captioning'));
    expect(cap.tokenizer?.tokenToId('[DEC]')).toBe(cap.config.textConfig.bosTokenId);
    const [text] = await cap.caption(join(data, 'images', 'test', '000039.png'), { maxLength: 6 });
    expect(typeof text).toBe('string');
    cap.dispose();
    // Resume: two more steps continue from step 2.
    lines.length = 0;
    expect(
      await runCli(
        args.map((a) => (a === '2' ? '4' : a)),
        io,
      ),
    ).toBe(0);
    expect(lines.join('\n')).toMatch(/pretrained 4 steps/);
    expect(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(4);
    lines.length = 0;
    expect(
      await runCli(
        [
          'eval',
          '--model',
          out,
          '--data',
          join(data, 'test.jsonl'),
          '--beams',
          '1',
          '--max-length',
          '8',
          '--quiet',
          '--json',
          '--backend',
          'cpu',
        ],
        io,
      ),
    ).toBe(0);
    const r = JSON.parse(lines.join('\n')) as {
      images: number;
      texts: number;
      retrieval: { textToImage: Record<string, number>; chance: { textToImageR1: number } };
      captioning: { cider: number; chance: { cider: number } };
    };
    expect(r.images).toBe(12);
    expect(r.texts).toBe(24);
    expect(r.retrieval.chance.textToImageR1).toBeCloseTo(100 / 12);
    expect(r.retrieval.textToImage['1']).toBeGreaterThanOrEqual(0);
    expect(Number.isFinite(r.captioning.cider)).toBe(true);
    expect(r.captioning.chance.cider).toBeGreaterThanOrEqual(0);
  });

  it('bad options are usage errors', async () => {
    const io = { out: () => {}, err: () => {} };
    expect(await runCli(['pretrain', '--out', out], io)).toBe(2);
    expect(await runCli(['pretrain', '--data', data, '--out', out, '--preset', 'huge'], io)).toBe(2);
    expect(await runCli(['eval', '--model', out], io)).toBe(2);
  });
});
