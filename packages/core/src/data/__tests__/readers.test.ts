// Readers on fixtures with every bad-record kind (counts add up), streaming across chunk
// boundaries, shuffle buffer, batching with padding, and tensor accounting.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { IMAGE_NORMS } from '../image.js';
import { batchExamples, createDataLoader, loadExamples, shuffleBuffer } from '../../node/loader.js';
import { type CaptionRecord, DataReport, type DropReason } from '../records.js';
import { type DatasetSpec, expandBraces, readDataset, splitWdsName, streamJsonArrayElements } from '../../node/readers.js';
import { writeSynthDataset } from '../../node/synth-writer.js';
import { BertTokenizer } from '../tokenizer.js';
import { bertBaseUncasedVocab } from './bert-vocab.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const transform = { size: 8, norm: IMAGE_NORMS.clip } as const;

let tok: BertTokenizer;

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
  tok = BertTokenizer.fromVocab(bertBaseUncasedVocab(), { addedTokens: ['[DEC]', '[ENC]'] });
});

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Reads, loads images and batches everything; returns kept keys and the report. */
async function runAll(spec: DatasetSpec): Promise<{ keys: string[]; captions: string[][]; report: DataReport }> {
  const { batches, report } = createDataLoader(spec, { batchSize: 4, tokenizer: tok, transform, captions: 'all' });
  const keys: string[] = [];
  const captions: string[][] = [];
  for await (const b of batches) {
    keys.push(...b.keys);
    b.keys.forEach((_, i) => captions.push(b.captions.filter((_, t) => b.textToImage[t] === i)));
    b.dispose();
  }
  return { keys, captions, report };
}

function expectCounts(report: DataReport, input: number, kept: number, dropped: Partial<Record<DropReason, number>>, filtered = 0) {
  const s = report.summary();
  const nonZero = Object.fromEntries(Object.entries(s.dropped).filter(([, n]) => n > 0));
  expect(nonZero).toEqual(dropped);
  expect(s.input).toBe(input);
  expect(s.kept).toBe(kept);
  expect(s.filtered).toBe(filtered);
  // The accounting invariant: every input record is kept, filtered or dropped.
  expect(s.kept + s.filtered + s.droppedTotal).toBe(s.input);
  expect(s.balanced).toBe(true);
}

describe('readers on fixtures with every bad-record kind', () => {
  it('JSONL: 16 records (the blank line is none), 3 kept, 13 dropped with their reasons', async () => {
    const { keys, captions, report } = await runAll({ path: join(fixtures, 'bad.jsonl') });
    expect(keys).toEqual(['bad.jsonl:1', 'bad.jsonl:2', 'bad.jsonl:15']);
    expect(captions).toEqual([['a red square'], ['a blue square', 'blue'], ['a green square']]);
    expectCounts(report, 16, 3, {
      malformed_record: 3, // invalid JSON, a JSON array, caption 42
      missing_caption: 1,
      empty_caption: 1,
      non_utf8_caption: 1,
      missing_image: 2, // file absent, no image field
      corrupt_image: 2, // truncated JPEG, text named .png
      image_too_large: 1,
      unsafe_path: 2, // ../../../etc/passwd, /etc/hostname
    });
    // The empty third caption of line 2 was removed from a record that stayed.
    expect(report.summary().captionsDropped).toEqual({ empty_caption: 1 });
    expect(report.examples.find((e) => e.reason === 'unsafe_path')?.subject).toBe('bad.jsonl:8');
    expect(report.format()).toMatch(/^input 16, kept 3, dropped 13 \(malformed_record 3, /);
  });

  it('CSV: 10 rows, 3 kept; an unclosed quote costs its own row only, reading goes on at the next line', async () => {
    const { keys, captions, report } = await runAll({ path: join(fixtures, 'bad.csv') });
    expect(keys).toEqual(['bad.csv:2', 'bad.csv:3', 'bad.csv:11']);
    expect(captions).toEqual([['a red square'], ['a blue square, small'], ['swallowed']]);
    expectCounts(report, 10, 3, {
      malformed_record: 2, // too many fields (line 6), quote never closed (line 10)
      non_utf8_caption: 1,
      empty_caption: 1,
      unsafe_path: 1,
      corrupt_image: 1,
      missing_image: 1,
    });
    expect(report.examples.filter((e) => e.reason === 'malformed_record').map((e) => e.subject)).toEqual(['bad.csv:6', 'bad.csv:10']);
  });

  it('COCO Karpathy: 8 entries, split filter, tricky strings; only the top-level "images" array', async () => {
    const spec = { path: join(fixtures, 'karpathy.json'), splits: ['test'] };
    const { keys, captions, report } = await runAll(spec);
    expect(keys).toEqual(['karpathy.json#0', 'karpathy.json#1']);
    expect(captions).toEqual([['A red square.', 'Red.'], ['A blue square.']]);
    expectCounts(report, 8, 2, { non_utf8_caption: 1, empty_caption: 1, missing_image: 1, malformed_record: 1, unsafe_path: 1 }, 1);
    const all = await runAll({ path: join(fixtures, 'karpathy.json') });
    expect(all.keys).toEqual(['karpathy.json#0', 'karpathy.json#1', 'karpathy.json#2']);
    const recs = await collect(readDataset({ path: join(fixtures, 'karpathy.json') }));
    expect(recs[0]?.meta).toMatchObject({ cocoid: 11, split: 'test' });
  });

  it('WebDataset: 12 samples in shard 0, a truncated shard 1 counted once, brace patterns', async () => {
    const { keys, report } = await runAll({ path: join(fixtures, 'shard-{000000..000001}.tar') });
    expect(keys).toEqual([
      'shard-000000.tar:000000',
      'shard-000000.tar:000001',
      'shard-000000.tar:sub/000008',
      'shard-000001.tar:000100',
      'shard-000001.tar:000101',
    ]);
    expectCounts(report, 12 + 3, 5, {
      missing_image: 1,
      missing_caption: 1,
      non_utf8_caption: 1,
      empty_caption: 1,
      unsafe_path: 2, // ../evil, /abs/000010
      corrupt_image: 1,
      image_too_large: 1,
      malformed_record: 1, // .json that does not parse
      corrupt_shard: 1,
    });
    const recs = await collect(readDataset({ path: join(fixtures, 'shard-000000.tar') }));
    expect(recs[1]?.captions).toEqual(['a blue square']);
    expect(recs[1]?.meta).toEqual({ caption: 'a blue square', width: 8 });
  });

  it('a consumer may stop early; what was read and not finished shows as pending', async () => {
    const report = new DataReport();
    const got: string[] = [];
    for await (const r of readDataset({ path: join(fixtures, 'shard-000000.tar') }, report)) {
      got.push(r.key);
      if (got.length === 2) break;
    }
    expect(got).toEqual(['shard-000000.tar:000000', 'shard-000000.tar:000001']);
    expect(report.summary()).toMatchObject({ input: 2, kept: 0, pending: 2, balanced: false });
  });

  it('names, braces and formats', () => {
    expect(splitWdsName('a/b/000123.seg.PNG')).toEqual({ key: 'a/b/000123', ext: 'seg.png' });
    expect(splitWdsName('noext')).toBeNull();
    expect(expandBraces('s-{08..11}.tar')).toEqual(['s-08.tar', 's-09.tar', 's-10.tar', 's-11.tar']);
    expect(expandBraces('{a,b}/x{1..2}')).toEqual(['a/x1', 'a/x2', 'b/x1', 'b/x2']);
    return expect(collect(readDataset({ path: join(fixtures, 'bad.unknown') }))).rejects.toThrow(/format/);
  });
});

describe('streaming', () => {
  it('reads JSONL and COCO JSON element by element across read-chunk boundaries', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vl-stream-'));
    const rng = new Rng(5);
    // ~400 KB: several 64 KB stream chunks; captions with escapes, brackets and multi-byte text.
    const images = Array.from({ length: 1500 }, (_, i) => ({
      filepath: 'x',
      filename: `${i}.jpg`,
      split: i % 3 ? 'train' : 'val',
      sentences: Array.from({ length: 1 + rng.int(4) }, (_, k) => ({
        raw: `caption ${i}.${k} "q" [b] {c} é中 \\ ${'w'.repeat(rng.int(200))}`,
      })),
    }));
    const big = join(dir, 'coco.json');
    writeFileSync(big, JSON.stringify({ info: { images: [] }, images, licenses: [1, 2] }));
    const elements = await collect(streamJsonArrayElements(big, 'images'));
    expect(elements).toHaveLength(1500);
    elements.forEach((e, i) => expect(JSON.parse(Buffer.from(e.bytes).toString('utf8'))).toEqual(images[i]));
    const scalars = join(dir, 'scalars.json');
    writeFileSync(scalars, '{"images": [1, "two, three", null , {"a": [4]}]}');
    expect((await collect(streamJsonArrayElements(scalars, 'images'))).map((e) => JSON.parse(Buffer.from(e.bytes).toString()))).toEqual([
      1,
      'two, three',
      null,
      { a: [4] },
    ]);

    const jsonl = join(dir, 'big.jsonl');
    writeFileSync(
      jsonl,
      images.map((im) => JSON.stringify({ image: `x/${im.filename}`, captions: im.sentences.map((s) => s.raw) })).join('\n'),
    );
    const report = new DataReport();
    const recs = await collect(readDataset({ path: jsonl, imageRoot: dir }, report));
    expect(recs).toHaveLength(1500);
    recs.forEach((r, i) => expect(r.captions).toEqual(images[i]?.sentences.map((s) => s.raw.trim())));
    expect(report.summary()).toMatchObject({ input: 1500, pending: 1500 });
  });
});

describe('shuffle and batches', () => {
  it('the shuffle buffer is a seeded permutation that only moves items within reach', async () => {
    async function* numbers(n: number) {
      for (let i = 0; i < n; i++) yield i;
    }
    const a = await collect(shuffleBuffer(numbers(1000), 64, new Rng(1)));
    const b = await collect(shuffleBuffer(numbers(1000), 64, new Rng(1)));
    const c = await collect(shuffleBuffer(numbers(1000), 64, new Rng(2)));
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    // Nothing comes out before it is read: when output p is emitted, inputs 0..p+63 have been
    // read (64 fill the buffer, then one in per one out), so a[p] ≤ p + 63.
    a.forEach((v, p) => expect(v).toBeLessThanOrEqual(p + 63));
    const moved = a.filter((v, p) => v !== p).length;
    expect(moved).toBeGreaterThan(900);
  });

  it('batches images and padded captions; all-captions rows point at their image', async () => {
    const recs: CaptionRecord[] = [
      { key: 'r', image: { kind: 'path', path: join(fixtures, 'images', 'ok1.png') }, captions: ['a red square'], meta: {} },
      { key: 'b', image: { kind: 'path', path: join(fixtures, 'images', 'ok2.jpg') }, captions: ['a blue square', 'blue'], meta: {} },
      { key: 'g', image: { kind: 'path', path: join(fixtures, 'images', 'ok3.webp') }, captions: ['green'], meta: {} },
    ];
    async function* src() {
      yield* recs;
    }
    const report = new DataReport();
    for (let i = 0; i < 3; i++) report.read();
    const before = tf.memory().numTensors;
    const batches = await collect(
      batchExamples(loadExamples(src(), { transform: { size: 4, norm: IMAGE_NORMS.inception }, report }), {
        batchSize: 2,
        tokenizer: tok,
        captions: 'all',
        maxLength: 8,
        report,
      }),
    );
    expect(batches.map((b) => b.keys)).toEqual([['r', 'b'], ['g']]);
    const [b0] = batches;
    expect(b0?.pixelValues.shape).toEqual([2, 3, 4, 4]);
    expect(b0?.inputIds.shape).toEqual([3, 5]); // [CLS] a blue square [SEP] is the longest
    expect(Array.from(b0!.textToImage)).toEqual([0, 1, 1]);
    expect(await b0!.inputIds.array()).toEqual([
      [101, 1037, 2417, 2675, 102],
      [101, 1037, 2630, 2675, 102],
      [101, 2630, 102, 0, 0],
    ]);
    expect(await b0!.attentionMask.array()).toEqual([
      [1, 1, 1, 1, 1],
      [1, 1, 1, 1, 1],
      [1, 1, 1, 0, 0],
    ]);
    const px = await b0!.pixelValues.data();
    // Image 0 is solid red: R plane +1, B plane -1 under the inception norm; image 1 is blue.
    expect(px[0]).toBeCloseTo(1, 1);
    expect(px[32]).toBeCloseTo(-1, 1);
    expect(px[48 + 32]).toBeGreaterThan(0.9);
    expect(tf.memory().numTensors).toBe(before + 6);
    for (const b of batches) b.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(report.summary()).toMatchObject({ input: 3, kept: 3, balanced: true });
  });

  it('loads the synthetic set in seeded order with augmentation, counts dropLast, does not leak', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vl-synth-load-'));
    await writeSynthDataset({ out: dir, images: 50, seed: 4, noise: 0 });
    const spec = { path: join(dir, 'train.jsonl') };
    const options = {
      batchSize: 16,
      tokenizer: tok,
      transform: { size: 32, mode: 'random-resized-crop', scale: [0.5, 1], flip: true } as const,
      shuffle: 20,
      seed: 9,
      captions: 'random' as const,
      dropLast: true,
      firstToken: '[DEC]',
    };
    const runOnce = async () => {
      const { batches, report } = createDataLoader(spec, options);
      const keys: string[] = [];
      const sums: number[] = [];
      const caps: string[] = [];
      for await (const b of batches) {
        keys.push(...b.keys);
        caps.push(...b.captions);
        sums.push(Array.from(await b.pixelValues.data()).reduce((x, y) => x + y, 0));
        expect((await b.inputIds.array()).every((row) => row[0] === tok.tokenToId('[DEC]'))).toBe(true);
        b.dispose();
      }
      return { keys, sums, caps, report };
    };
    const before = tf.memory().numTensors;
    const a = await runOnce();
    const b = await runOnce();
    // Every batch's tensors were disposed: nothing left behind after two epochs.
    expect(tf.memory().numTensors).toBe(before);
    // Same seed: same order, same crops/flips (pixel sums), same caption choices.
    expect(a).toEqual(b);
    // 40 train images, batches of 16: 2 full batches, 8 dropped as incomplete_batch.
    expect(a.keys).toHaveLength(32);
    expect(new Set(a.keys).size).toBe(32);
    expect(a.keys).not.toEqual([...a.keys].sort());
    expectCounts(a.report, 40, 32, { incomplete_batch: 8 });
    const lines = readFileSync(join(dir, 'train.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { captions: string[] });
    for (let i = 0; i < a.keys.length; i++) {
      const line = Number(a.keys[i]!.split(':')[1]) - 1;
      expect(lines[line]!.captions).toContain(a.caps[i]);
    }
  });
});
