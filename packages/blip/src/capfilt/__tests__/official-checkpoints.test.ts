// CapFilt with Salesforce's original checkpoints as released: `--captioner` and `--filter` name `.pth` files
// (the tiny BLIP_Decoder and BLIP_Retrieval of fixtures/blip-official, each with its config.json and a vocab.txt of
// the fixture's word-level vocabulary next to it). It runs, accounts for every record, and writes its outputs.
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initRuntime } from '@vl/core';
import { writeSynthDataset } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OFFICIAL } from '../../__tests__/official-helpers.js';
import { runCapfiltCli } from '../cli.js';

/** The fixtures' vocabulary (fixtures/blip-official/README.md): specials, words w<i> (a, picture, of at 14, 61, 30), [DEC], [ENC]. */
function fixtureVocab(): string {
  const words = new Map([
    [14, 'a'],
    [61, 'picture'],
    [30, 'of'],
  ]);
  const tokens = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
  for (let i = 5; i < 97; i++) tokens.push(words.get(i) ?? `w${i}`);
  return `${[...tokens, '[DEC]', '[ENC]'].join('\n')}\n`;
}

let dir: string;
let train: string;
let captioner: string;
let filter: string;

async function officialCheckpoint(name: string, from: string, file: string): Promise<string> {
  const folder = join(dir, name);
  await mkdir(folder);
  await copyFile(join(from, 'config.json'), join(folder, 'config.json'));
  await copyFile(join(from, 'pytorch_model.pth'), join(folder, file));
  await writeFile(join(folder, 'vocab.txt'), fixtureVocab());
  return join(folder, file);
}

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
  dir = await mkdtemp(join(tmpdir(), 'capfilt-official-'));
  const data = join(dir, 'data');
  await writeSynthDataset({ out: data, images: 6, seed: 5, imageSize: 32, captionsPerImage: 1, noise: 0.3, splits: [1, 0, 0] });
  train = join(data, 'train.jsonl');
  captioner = await officialCheckpoint('captioner', OFFICIAL.BLIP_Decoder, 'model_base_caption_capfilt_large.pth');
  filter = await officialCheckpoint('filter', OFFICIAL.BLIP_Retrieval, 'model_base_retrieval_coco.pth');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('blip capfilt with original BLIP .pth checkpoints', () => {
  it('loads both files, captions and filters every record, and writes the outputs', async () => {
    const out = join(dir, 'out');
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    const code = await runCapfiltCli(
      [
        '--data',
        train,
        '--out',
        out,
        '--captioner',
        captioner,
        '--filter',
        filter,
        '--num-captions',
        '2',
        '--seed',
        '1',
        '--quiet',
        '--backend',
        'cpu',
      ],
      io,
    );
    expect(code, lines.join('\n')).toBe(0);
    for (const f of ['records.jsonl', 'report.json', 'report.md', 'histograms.png', 'samples.png', 'train.jsonl', 'capfilt.done.json']) {
      expect(existsSync(join(out, f)), f).toBe(true);
    }
    const records = (await readFile(join(out, 'records.jsonl'), 'utf8')).trim().split('\n');
    const source = (await readFile(train, 'utf8')).trim().split('\n');
    expect(records).toHaveLength(source.length);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as { balanced: boolean; counts: Record<string, number> };
    expect(report.balanced).toBe(true);
    expect(report.counts.failed).toBe(0);
    const statuses = records.map((r) => (JSON.parse(r) as { status: string }).status);
    expect(statuses.every((s) => ['kept', 'replaced', 'dropped'].includes(s))).toBe(true);
    // Every record got synthetic captions from the captioner, made of its own words (w<i>, a, picture, of): no special token.
    const journal = (await readFile(join(out, 'journal.jsonl'), 'utf8')).trim().split('\n').slice(1);
    type Scored = { text: string; score: number };
    const scored = journal.flatMap((l) => (JSON.parse(l) as { p: { records: { synthetic?: Scored[] }[] } }).p.records);
    expect(scored).toHaveLength(source.length);
    for (const r of scored) {
      expect(r.synthetic?.length).toBeGreaterThan(0);
      for (const s of r.synthetic ?? []) {
        expect(s.text).toMatch(/^((w\d+|a|picture|of)( |$))+$/);
        expect(s.score).toBeGreaterThanOrEqual(0);
        expect(s.score).toBeLessThanOrEqual(1);
      }
    }
  });
});
