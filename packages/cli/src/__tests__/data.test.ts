// `vl data` through the built binary: synth is fast, deterministic and labels its noise; check and
// bench read the result back.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'vl.js');

async function vl(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [bin, ...args], { maxBuffer: 16 << 20 });
}

function treeHash(dir: string): string {
  const h = createHash('sha256');
  const walk = (rel: string) => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(p);
      else h.update(p).update(readFileSync(join(dir, p)));
    }
  };
  walk('');
  return h.digest('hex');
}

interface Line {
  captions: string[];
  noise: Array<null | { kind: string; clean: string; source?: string }>;
}

const lines = (file: string): Line[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);

let dir: string;
let summary: { seconds: number; splits: Record<string, number>; noisyCaptions: Record<string, number>; trainCaptions: number };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vl-cli-synth-'));
  const t0 = performance.now();
  const { stdout } = await vl('data', 'synth', '--out', dir, '--images', '2000', '--noise', '0.3', '--seed', '1', '--json');
  summary = JSON.parse(stdout);
  // Whole process (node start, imports, 2000 PNGs): seconds, not minutes.
  expect((performance.now() - t0) / 1000).toBeLessThan(30);
});

describe('vl data synth', () => {
  it('writes 2000 images in seconds with 30% of training captions corrupted', () => {
    expect(summary.splits).toEqual({ train: 1600, val: 200, test: 200 });
    expect(summary.seconds).toBeLessThan(20);
    expect(readdirSync(join(dir, 'images', 'train'))).toHaveLength(1600);
    const train = lines(join(dir, 'train.jsonl'));
    const noisy = train.flatMap((l) => l.noise).filter((n) => n !== null);
    // 1600 × 3 captions = 4800; 0.3 × 4800 = 1440, 480 of each kind.
    expect(noisy).toHaveLength(1440);
    expect(summary.noisyCaptions).toEqual({ total: 1440, other_caption: 480, keyword_soup: 480, wrong_attribute: 480 });
    for (const split of ['val', 'test'])
      expect(lines(join(dir, `${split}.jsonl`)).every((l) => l.noise.every((n) => n === null))).toBe(true);
    // Each label's `clean` is what the caption was before; the caption now differs from it.
    for (const l of train) l.noise.forEach((n, i) => n && expect(l.captions[i]).not.toBe(n.clean));
  });

  it('is deterministic by seed', async () => {
    const again = mkdtempSync(join(tmpdir(), 'vl-cli-synth-'));
    await vl('data', 'synth', '--out', again, '--images', '2000', '--noise', '0.3', '--seed', '1', '--quiet');
    expect(treeHash(again)).toBe(treeHash(dir));
    const other = mkdtempSync(join(tmpdir(), 'vl-cli-synth-'));
    await vl('data', 'synth', '--out', other, '--images', '50', '--noise', '0.3', '--seed', '2', '--quiet');
    expect(readFileSync(join(other, 'train.jsonl'), 'utf8').slice(0, 300)).not.toBe(
      readFileSync(join(dir, 'train.jsonl'), 'utf8').slice(0, 300),
    );
  });

  it('rejects bad options with a message', async () => {
    await expect(vl('data', 'synth', '--out', dir, '--noise', '2')).rejects.toMatchObject({
      stderr: expect.stringMatching(/--noise.*\[0, 1\]/),
    });
    await expect(vl('data', 'synth', '--out', dir, '--captions', '9')).rejects.toMatchObject({
      stderr: expect.stringMatching(/--captions/),
    });
    await expect(vl('data', 'synth', '--out', dir, '--task', 'gqa')).rejects.toMatchObject({
      stderr: expect.stringMatching(/--task must be one of captions, vqa, nlvr2/),
    });
  });

  it('--task vqa|nlvr2 writes questions / image-pair statements over the same scenes', async () => {
    const out = mkdtempSync(join(tmpdir(), 'vl-cli-synth-task-'));
    const { stdout } = await vl(
      'data',
      'synth',
      '--out',
      out,
      '--images',
      '30',
      '--size',
      '24',
      '--task',
      'vqa',
      '--per-image',
      '2',
      '--json',
    );
    expect(JSON.parse(stdout)).toMatchObject({ task: 'vqa', records: { train: 48, val: 6, test: 6 } });
    const q = JSON.parse(readFileSync(join(out, 'test.jsonl'), 'utf8').split('\n')[0]!);
    expect(q).toMatchObject({ question: expect.stringMatching(/\?$/), answers: [{ score: 1 }] });
    expect(readdirSync(out).sort()).toEqual(['answers.json', 'images', 'meta.json', 'test.jsonl', 'train.jsonl', 'val.jsonl', 'vocab.txt']);
    const text = await vl('data', 'synth', '--out', out, '--images', '30', '--size', '24', '--task', 'nlvr2');
    expect(text.stdout).toMatch(/nlvr2 train 48, val 6, test 6 image-pair statements, half true/);
  });
});

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'core', 'src', 'data', '__tests__', 'fixtures');

describe('vl data check / bench', () => {
  it('check counts every bad record by reason and the counts add up', async () => {
    const { stdout } = await vl('data', 'check', '--data', join(fixtures, 'bad.jsonl'), '--vocab', join(dir, 'vocab.txt'), '--json');
    const r = JSON.parse(stdout);
    expect(r).toMatchObject({ input: 16, kept: 3, droppedTotal: 13, balanced: true, captions: 4 });
    expect(r.dropped).toMatchObject({ malformed_record: 3, unsafe_path: 2, image_too_large: 1, non_utf8_caption: 1 });
    const text = await vl('data', 'check', '--data', join(fixtures, 'shard-{000000..000001}.tar'), '--vocab', join(dir, 'vocab.txt'));
    expect(text.stdout).toMatch(/^input 15, kept 5, dropped 10 \(/);
    expect(text.stdout).toMatch(/corrupt_shard: shard-000001.tar/);
  });

  it('bench reads the synthetic train split into batches and reports images/second', async () => {
    const { stdout } = await vl('data', 'bench', '--data', join(dir, 'train.jsonl'), '--batch-size', '64', '--json');
    const r = JSON.parse(stdout);
    expect(r).toMatchObject({ images: 1600, batches: 25, captions: 1600, batchSize: 64 });
    expect(r.imagesPerSecond).toBeGreaterThan(50);
    expect(r.report).toMatchObject({ input: 1600, kept: 1600, balanced: true });
    await expect(vl('data', 'bench', '--data', join(fixtures, 'bad.jsonl'))).rejects.toMatchObject({
      stderr: expect.stringMatching(/--vocab/),
    });
  });
});
