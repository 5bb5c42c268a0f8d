// CapFilt end to end on tiny random checkpoints: accounting (every record once, bad inputs failed
// with reasons), JSONL/CSV/COCO outputs, independence from batch size, rerun = same bytes,
// keep-rate calibration, sharding + merge = unsharded, and the journal's torn-tail handling.
import { execFileSync } from 'node:child_process';
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { readDataset } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCapfiltCli } from '../cli.js';
import { loadModels } from '../pipeline.js';
import { journalLine, parseJournalLine, scanJournal } from '../journal.js';
import { type CapfiltFixture, makeFixture } from './fixture.js';

let dir: string;
let fx: CapfiltFixture;
const lines: string[] = [];
const io = { out: (l: string) => lines.push(l), err: (_l: string) => {} };

const run = async (args: string[]) => {
  const code = await runCapfiltCli([...args, '--quiet', '--backend', 'cpu'], io);
  expect(code).toBe(0);
};
const base = (out: string, data = fx.train) => [
  '--data',
  data,
  '--out',
  out,
  '--captioner',
  fx.captioner,
  '--filter',
  fx.filter,
  '--num-captions',
  '2',
  '--seed',
  '7',
];
const OUTPUTS = ['report.json', 'report.md', 'records.jsonl', 'histograms.png', 'samples.png'];
const read = (d: string, f: string) => readFileSync(join(d, f));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'capfilt-'));
  fx = await makeFixture(dir, { bad: true });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('blip capfilt', () => {
  it('accounts for every record once, fails bad inputs with reasons, and does not depend on the batch size', async () => {
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    await run([...base(a), '--batch-size', '3']);
    // After a warm-up run, a whole run leaves no tensor behind beyond what loading and disposing
    // the two checkpoints leaves (fromPretrained's, measured here; not CapFilt's to fix).
    let tensors = tf.memory().numTensors;
    const m = await loadModels(fx);
    m.captioner.dispose();
    m.filter.dispose();
    const loadLeak = tf.memory().numTensors - tensors;
    tensors = tf.memory().numTensors;
    await run([...base(b), '--batch-size', '5']);
    expect(tf.memory().numTensors - tensors).toBe(loadLeak);
    const report = JSON.parse(read(a, 'report.json').toString()) as {
      input: number;
      counts: Record<string, number>;
      failed: Record<string, number>;
      balanced: boolean;
    };
    const inputLines = readFileSync(fx.train, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '').length;
    expect(report.input).toBe(inputLines);
    expect(report.balanced).toBe(true);
    expect(report.failed).toEqual({ missing_image: 1, corrupt_image: 1, malformed_record: 1, non_utf8_caption: 1, unsafe_path: 1 });
    const records = read(a, 'records.jsonl')
      .toString()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { index: number; status: string; reason?: string });
    expect(records.map((r) => r.index)).toEqual([...Array(inputLines).keys()]);
    expect(records.filter((r) => r.status === 'dropped').every((r) => r.reason === 'below_threshold')).toBe(true);
    expect(report.counts.kept! + report.counts.replaced! + report.counts.dropped!).toBeGreaterThan(0);
    for (const f of [...OUTPUTS, 'train.jsonl']) expect(read(b, f).equals(read(a, f)), f).toBe(true);
    // The cleaned JSONL has only captions that passed, and no record that was dropped or failed.
    const cleaned = read(a, 'train.jsonl')
      .toString()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { image: string; captions: string[] });
    expect(cleaned.length).toBe(report.counts.kept! + report.counts.replaced!);
    expect(cleaned.every((c) => c.captions.length > 0 && c.image.startsWith('images/'))).toBe(true);
  });

  it('a rerun of a finished command rewrites the same bytes', async () => {
    const a = join(dir, 'a');
    const before = OUTPUTS.map((f) => read(a, f));
    await run([...base(a), '--batch-size', '3']);
    OUTPUTS.forEach((f, i) => expect(read(a, f).equals(before[i] as Buffer), f).toBe(true));
  });

  it('refuses to resume with other options', async () => {
    const errs: string[] = [];
    const quietIo = { out: () => {}, err: (l: string) => errs.push(l) };
    expect(await runCapfiltCli([...base(join(dir, 'a')), '--batch-size', '4', '--quiet', '--backend', 'cpu'], quietIo)).toBe(2);
    expect(errs.join('\n')).toMatch(/another run \(other options, data or models\): option batchSize 3 → 4/);
  });

  it('writes CSV and COCO input back in their formats', async () => {
    const recs = readFileSync(fx.train, 'utf8')
      .split('\n')
      .slice(0, 6)
      .map((l) => JSON.parse(l) as { image: string; captions: string[]; split: string; id: string });
    const csv = join(fx.data, 'small.csv');
    writeFileSync(csv, `image,caption\n${recs.map((r) => `${r.image},"${r.captions[0]}"`).join('\n')}\nimages/nope.png,"a caption"\n`);
    const coco = join(fx.data, 'small.json');
    writeFileSync(
      coco,
      JSON.stringify({
        images: recs.map((r) => ({
          filepath: 'images/train',
          filename: r.image.split('/').pop(),
          split: 'train',
          cocoid: Number(r.id),
          sentences: r.captions.map((raw) => ({ raw })),
        })),
      }),
    );
    const c = join(dir, 'csv');
    await run([...base(c, csv), '--threshold', '0']);
    const csvOut = read(c, 'small.csv').toString().trim().split('\n');
    expect(csvOut[0]).toBe('image,caption');
    // Threshold 0 keeps all 6 originals plus every synthetic caption; the missing image fails.
    expect(JSON.parse(read(c, 'report.json').toString()).counts).toEqual({ kept: 6, replaced: 0, dropped: 0, failed: 1 });
    expect(csvOut.slice(1, 7).some((l) => l.includes(recs[0]!.captions[0]!))).toBe(true);
    const k = join(dir, 'coco');
    await run([...base(k, coco), '--threshold', '0', '--num-captions', '0']);
    const cocoOut = JSON.parse(read(k, 'small.json').toString()) as {
      images: { filename: string; filepath: string; cocoid: number; sentences: { raw: string }[] }[];
    };
    expect(cocoOut.images.map((i) => i.cocoid)).toEqual(recs.map((r) => Number(r.id)));
    expect(cocoOut.images[0]!.sentences.map((s) => s.raw)).toEqual(recs[0]!.captions);
    expect(cocoOut.images[0]!.filepath).toBe('images/train');
  });

  it('reads WebDataset shards and writes a cleaned shard', async () => {
    const recs = readFileSync(fx.train, 'utf8')
      .split('\n')
      .slice(0, 4)
      .map((l) => JSON.parse(l) as { image: string; captions: string[]; id: string });
    const staging = join(dir, 'wds');
    mkdirSync(staging, { recursive: true });
    for (const r of recs) {
      copyFileSync(join(fx.data, r.image), join(staging, `${r.id}.png`));
      writeFileSync(join(staging, `${r.id}.txt`), r.captions[0]!);
    }
    writeFileSync(join(staging, 'broken.png'), 'not an image');
    writeFileSync(join(staging, 'broken.txt'), 'a caption');
    const shard = join(dir, 'shard-0000.tar');
    execFileSync('tar', ['-cf', shard, '-C', staging, ...recs.flatMap((r) => [`${r.id}.png`, `${r.id}.txt`]), 'broken.png', 'broken.txt']);
    const w = join(dir, 'wds-out');
    await run([...base(w, shard), '--threshold', '0']);
    const report = JSON.parse(read(w, 'report.json').toString()) as { counts: Record<string, number>; failed: Record<string, number> };
    expect(report.counts).toEqual({ kept: 4, replaced: 0, dropped: 0, failed: 1 });
    expect(report.failed).toEqual({ corrupt_image: 1 });
    // The cleaned shard reads back with core's WebDataset reader: images and every kept caption.
    const back: { key: string; captions: string[]; bytes: number }[] = [];
    for await (const r of readDataset({ path: join(w, 'cleaned.tar') }))
      back.push({ key: r.key, captions: r.captions, bytes: r.image.kind === 'bytes' ? r.image.bytes.length : 0 });
    expect(back.map((b) => b.key)).toEqual(recs.map((r) => `cleaned.tar:shard-0000/${r.id}`));
    expect(back[0]!.captions[0]).toBe(recs[0]!.captions[0]);
    expect(back[0]!.captions.length).toBeGreaterThan(1); // + the synthetic captions (threshold 0)
    expect(back[0]!.bytes).toBe(readFileSync(join(fx.data, recs[0]!.image)).length);
  });

  it('beam captions and ITM+ITC scores', async () => {
    const o = join(dir, 'beam');
    await run([...base(o), '--beam', '3', '--num-captions', '2', '--itc']);
    const lines = readFileSync(join(o, 'journal.jsonl'), 'utf8').trim().split('\n').slice(1);
    const recs = lines.flatMap(
      (l) =>
        (
          JSON.parse(l) as {
            p: { records: { status: string; original?: { score: number }[]; synthetic?: { text: string; score: number }[] }[] };
          }
        ).p.records,
    );
    const scored = recs.filter((r) => r.status !== 'failed');
    expect(scored.length).toBeGreaterThan(0);
    for (const r of scored) {
      expect(r.synthetic!.length).toBeGreaterThanOrEqual(1);
      expect(r.synthetic!.length).toBeLessThanOrEqual(2);
      for (const c of [...r.original!, ...r.synthetic!]) expect(c.score >= 0 && c.score <= 1).toBe(true);
    }
  });

  it('calibrates the threshold to a keep-rate', async () => {
    const k = join(dir, 'keep');
    await run([...base(k), '--keep-rate', '0.25', '--calibrate-on', '100', '--num-captions', '0']);
    const r = JSON.parse(read(k, 'report.json').toString()) as { captions: { original: number; originalKept: number } };
    expect(r.captions.originalKept / r.captions.original).toBeCloseTo(0.25, 1);
  });

  it('shards and merges to the unsharded result', async () => {
    const full = join(dir, 'full');
    await run([...base(full), '--batch-size', '4']);
    const shards = [0, 1, 2].map((i) => join(dir, `shard${i}`));
    for (const [i, s] of shards.entries()) await run([...base(s), '--batch-size', '4', '--shard', `${i}/3`]);
    const merged = join(dir, 'merged');
    expect(await runCapfiltCli(['merge', '--out', merged, ...shards.reverse()], io)).toBe(0);
    for (const f of [...OUTPUTS, 'train.jsonl']) expect(read(merged, f).equals(read(full, f)), f).toBe(true);
    expect((await readdir(merged)).includes('journal.jsonl')).toBe(false);
    // A missing shard is refused.
    const errs: string[] = [];
    expect(await runCapfiltCli(['merge', '--out', join(dir, 'm2'), ...shards.slice(1)], { out: () => {}, err: (l) => errs.push(l) })).toBe(
      2,
    );
    expect(errs.join('\n')).toMatch(/missing/);
  });
});

describe('capfilt journal', () => {
  it('validates each line and ignores a torn or corrupt tail', async () => {
    const p = join(dir, 'j.jsonl');
    const header = {
      kind: 'capfilt-journal',
      version: 1,
      fingerprint: 'x',
      threshold: 0.5,
      format: 'jsonl',
      root: '/',
      dataName: 'a',
      shard: null,
    };
    writeFileSync(p, journalLine(header) + journalLine({ batch: 0, records: [] }) + journalLine({ batch: 1, records: [] }));
    expect((await scanJournal(p)).batches).toBe(2);
    const full = readFileSync(p);
    writeFileSync(p, full.subarray(0, full.length - 1)); // newline missing: the last line is not trusted
    expect((await scanJournal(p)).batches).toBe(1);
    writeFileSync(p, full.subarray(0, full.length - 9));
    expect((await scanJournal(p)).batches).toBe(1);
    writeFileSync(p, full);
    appendFileSync(p, journalLine({ batch: 3, records: [] })); // a gap: batch 2 missing
    expect((await scanJournal(p)).batches).toBe(2);
    const flipped = journalLine({ batch: 0, records: [] }).replace('"batch":0', '"batch":1');
    expect(parseJournalLine(flipped.trim())).toBeNull();
  });
});
