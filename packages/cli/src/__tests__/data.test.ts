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
const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'bin.js');

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
    for (const split of ['val', 'test']) expect(lines(join(dir, `${split}.jsonl`)).every((l) => l.noise.every((n) => n === null))).toBe(true);
    // Each label's `clean` is what the caption was before; the caption now differs from it.
    for (const l of train) l.noise.forEach((n, i) => n && expect(l.captions[i]).not.toBe(n.clean));
  });

  it('is deterministic by seed', async () => {
    const again = mkdtempSync(join(tmpdir(), 'vl-cli-synth-'));
    await vl('data', 'synth', '--out', again, '--images', '2000', '--noise', '0.3', '--seed', '1', '--quiet');
    expect(treeHash(again)).toBe(treeHash(dir));
    const other = mkdtempSync(join(tmpdir(), 'vl-cli-synth-'));
    await vl('data', 'synth', '--out', other, '--images', '50', '--noise', '0.3', '--seed', '2', '--quiet');
    expect(readFileSync(join(other, 'train.jsonl'), 'utf8').slice(0, 300)).not.toBe(readFileSync(join(dir, 'train.jsonl'), 'utf8').slice(0, 300));
  });

  it('rejects bad options with a message', async () => {
    await expect(vl('data', 'synth', '--out', dir, '--noise', '2')).rejects.toMatchObject({ stderr: expect.stringMatching(/--noise.*\[0, 1\]/) });
    await expect(vl('data', 'synth', '--out', dir, '--captions', '9')).rejects.toMatchObject({ stderr: expect.stringMatching(/--captions/) });
  });
});
