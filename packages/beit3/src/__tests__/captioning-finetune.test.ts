// Captioning fine-tuning as the official code trains it: the caption masking of
// `CaptioningDataset._masking_on_text_tokens` (counts by hand, positions uniform over [1, n − 1] with eos
// included, 80/10/10 within 3.5 standard errors, random ids never bos/pad/eos), `captioningTrainBatch` equal to
// the official `train_batch` loss and accuracy on the captioning fixture (and to a brute-force loss from the
// full logits), the MDM checkpoint's backbone and mlm_head under the captioning model, and `beit3 train --task
// captioning` from scratch and from MDM with finite losses, CIDEr-D in range and no leaked tensors. wasm.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, Rng } from '@vl/core';
import { writeSynthDataset } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finetuneBeit3Captioning, maskCaptionRows } from '../captioning-finetune.js';
import { loadBeit3 } from '../checkpoint.js';
import { beit3Preset } from '../config.js';
import { runCli } from '../cli.js';
import { loadBeit3Backbone, loadBeit3Mdm } from '../mdm-train.js';
import { Beit3ForCaptioning } from '../model.js';
import { captioningTrainBatch } from '../objectives.js';

const FIXTURE = fileURLToPath(new URL('../../../../fixtures/beit3-official/beit3-captioning-seed0/', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'beit3-cap-'));
const data = join(tmp, 'data');

beforeAll(async () => {
  await initRuntime({ backend: 'wasm' });
  await writeSynthDataset({ out: data, images: 24, seed: 5, imageSize: 32, captionsPerImage: 1, splits: [0.5, 0.25, 0.25] });
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function cli(args: string[]): Promise<string> {
  const lines: string[] = [];
  const io = { out: (l: string) => void lines.push(l), err: (l: string) => void lines.push(l) };
  const code = await runCli([...args, '--quiet', '--backend', 'wasm'], io);
  expect(code, lines.join('\n')).toBe(0);
  return lines.join('\n');
}

describe('maskCaptionRows', () => {
  // Rows of n = 10 tokens (bos, 8 words, eos) then 4 pads; vocabulary 99, bos 0, pad 1, eos 2, mask 97.
  const seq = 14;
  const rows = 3000;
  const ids = new Int32Array(rows * seq).fill(1);
  const am = new Int32Array(rows * seq);
  for (let r = 0; r < rows; r++) {
    ids[r * seq] = 0;
    for (let j = 1; j <= 8; j++) ids[r * seq + j] = 10 + j;
    ids[r * seq + 9] = 2;
    for (let j = 0; j < 10; j++) am[r * seq + j] = 1;
  }
  const excludeIds = [0, 1, 2];

  it('masks max(1, min(⌊n·p + ½⌋, n − 1)) positions of [1, n − 1], uniformly, eos included, 80/10/10', () => {
    // n = 10: p 0.7 → ⌊7.5⌋ = 7; p 0.6 → 6; p 0.02 → ⌊0.7⌋ = 0, raised to 1; p 1 → 10, capped at n − 1 = 9.
    for (const [prob, want] of [
      [0.7, 7],
      [0.6, 6],
      [0.02, 1],
      [1, 9],
    ] as const) {
      const m = maskCaptionRows(ids, am, seq, { rng: new Rng(11), prob, maskId: 97, vocabSize: 99, excludeIds });
      const perPosition = new Array<number>(seq).fill(0);
      let toMask = 0;
      let kept = 0;
      let random = 0;
      for (let r = 0; r < rows; r++) {
        const row = m.masked.subarray(r * seq, (r + 1) * seq);
        expect(row.reduce((s, v) => s + v, 0)).toBe(want);
        row.forEach((v, j) => (perPosition[j]! += v));
      }
      expect(perPosition[0]).toBe(0); // bos
      for (let j = 10; j < seq; j++) expect(perPosition[j]).toBe(0); // pads
      // Each of positions 1..9 (eos is 9) is chosen with probability want / 9.
      const q = want / 9;
      for (let j = 1; j <= 9; j++)
        expect(Math.abs(perPosition[j]! / rows - q)).toBeLessThanOrEqual(3.5 * Math.sqrt((q * (1 - q)) / rows) + 1e-12);
      for (let k = 0; k < ids.length; k++) {
        expect(m.targets[k]).toBe(ids[k]);
        if (!m.masked[k]) {
          expect(m.inputIds[k]).toBe(ids[k]);
          continue;
        }
        if (m.inputIds[k] === 97) toMask++;
        else if (m.inputIds[k] === ids[k]) kept++;
        else {
          random++;
          expect(excludeIds).not.toContain(m.inputIds[k]);
        }
      }
      const n = rows * want;
      // A random draw (96 allowed ids) equals the original token 1 time in 96, and may be the mask id.
      expect(Math.abs(toMask / n - (0.8 + 0.1 / 96))).toBeLessThan(3.5 * Math.sqrt(0.16 / n));
      expect(Math.abs(random / n - 0.1 * (1 - 2 / 96))).toBeLessThan(3.5 * Math.sqrt(0.09 / n));
      expect(Math.abs(kept / n - (0.1 + 0.1 / 96))).toBeLessThan(3.5 * Math.sqrt(0.09 / n));
    }
  });

  it('leaves a row of bos alone and refuses a probability outside (0, 1]', () => {
    const m = maskCaptionRows(Int32Array.from([0, 1, 1]), Int32Array.from([1, 0, 0]), 3, {
      rng: new Rng(1),
      prob: 0.7,
      maskId: 97,
      vocabSize: 99,
      excludeIds,
    });
    expect(Array.from(m.masked)).toEqual([0, 0, 0]);
    // bos, one word, eos: n = 3, ⌊2.6⌋ = 2 of positions 1 and 2.
    const two = maskCaptionRows(Int32Array.from([0, 50, 2]), Int32Array.from([1, 1, 1]), 3, {
      rng: new Rng(1),
      prob: 0.7,
      maskId: 97,
      vocabSize: 99,
      excludeIds,
    });
    expect(Array.from(two.masked)).toEqual([0, 1, 1]);
    expect(() => maskCaptionRows(ids, am, seq, { rng: new Rng(1), prob: 0, maskId: 97, vocabSize: 99, excludeIds })).toThrow(/\(0, 1\]/);
  });
});

describe('captioningTrainBatch', () => {
  it('equals the official train_batch loss and accuracy on the captioning fixture, and a brute-force loss', async () => {
    const model = (await loadBeit3(FIXTURE)) as Beit3ForCaptioning;
    model.eval();
    type Arr = { shape: number[]; data: number[] };
    const inputs = JSON.parse(readFileSync(join(FIXTURE, 'inputs.json'), 'utf8')) as Record<string, Arr>;
    const expected = JSON.parse(readFileSync(join(FIXTURE, 'expected.json'), 'utf8')) as { outputs: Record<string, { data: number }> };
    const t = (x: Arr, dtype: 'float32' | 'int32') => tf.tensor(x.data.flat(Infinity as 1) as number[], x.shape, dtype);
    const pixels = t(inputs.image!, 'float32');
    const textIds = t(inputs.masked_tokens!, 'int32');
    const paddingMask = t(inputs.padding_mask!, 'int32');
    const languageMaskedPos = t(inputs.language_masked_pos!, 'int32');
    const languageTokens = t(inputs.language_tokens!, 'int32');
    const before = tf.memory().numTensors;
    const r = captioningTrainBatch(model, { pixels, textIds, paddingMask, languageMaskedPos, languageTokens }, { step: 0 });
    expect(Math.abs(r.loss.dataSync()[0]! - expected.outputs.captioning_loss!.data)).toBeLessThan(1e-5);
    expect(r.acc).toBeCloseTo(expected.outputs.captioning_acc!.data, 6);
    // Brute force from the full logits [B, T, V]: at each masked position, Σ_v t_v (log t_v − log p_v).
    const full = model.forward({ pixels, textIds, paddingMask });
    const logits = full.logits.arraySync() as number[][][];
    const pos = languageMaskedPos.arraySync() as number[][];
    const lab = languageTokens.arraySync() as number[][];
    const v = model.dims.vocabSize;
    const eps = 0.1;
    let sum = 0;
    let count = 0;
    pos.forEach((row, b) =>
      row.forEach((flag, j) => {
        if (!flag) return;
        const z = logits[b]![j]!;
        const max = Math.max(...z);
        const lse = max + Math.log(z.reduce((s, x) => s + Math.exp(x - max), 0));
        let kl = 0;
        for (let k = 0; k < v; k++) {
          const tk = k === lab[b]![j] ? 1 - eps : eps / (v - 1);
          kl += tk * (Math.log(tk) - (z[k]! - lse));
        }
        sum += kl;
        count++;
      }),
    );
    expect(Array.from(r.labels)).toEqual(pos.flatMap((row, b) => row.flatMap((f, j) => (f ? [lab[b]![j]!] : []))));
    expect(Math.abs(r.loss.dataSync()[0]! - sum / count)).toBeLessThan(1e-4);
    tf.dispose([r.loss, r.logits, r.encoderOut, full.logits, full.encoderOut]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([pixels, textIds, paddingMask, languageMaskedPos, languageTokens]);
    model.dispose();
  });
});

describe('beit3 train --task captioning', () => {
  it('fine-tunes from scratch and from an MDM checkpoint (its backbone and mlm_head), reports CIDEr-D, leaks nothing', async () => {
    const tok = join(tmp, 'tok');
    const mdm = join(tmp, 'mdm');
    await cli(['train', '--task', 'tokenizer', '--data', data, '--out', tok, '--visual-vocab', '8', '--seed', '1']);
    await cli(['train', '--data', data, '--tokenizer', tok, '--out', mdm, '--batch-size', '6', '--max-steps', '2', '--seed', '1']);

    // The MDM backbone and text head go under the captioning model; its other weights stay as built.
    const pre = await loadBeit3Mdm(mdm);
    const vocab = pre.dims.vocabSize;
    const cap = new Beit3ForCaptioning(
      { ...beit3Preset('tiny', { task: 'captioning', vocabSize: vocab }), tokens: pre.config.tokens },
      new Rng(9),
    );
    const { loaded } = await loadBeit3Backbone(cap, mdm, { heads: ['mlm_head.'] });
    const mine = cap.stateDict();
    const theirs = pre.stateDict();
    expect(loaded).toBe(mine.size); // every tensor of the captioning model: backbone + mlm_head
    for (const [k, v] of mine) expect(Array.from(v.dataSync()), k).toEqual(Array.from(theirs.get(k)!.dataSync()));
    await expect(loadBeit3Backbone(cap, mdm, { heads: ['pooler.'] })).rejects.toThrow(/pooler\.\* \(not in the checkpoint\)/);
    cap.dispose();
    pre.dispose();

    const before = tf.memory().numTensors;
    const scratch = await cli([
      'train',
      '--task',
      'captioning',
      '--data',
      data,
      '--out',
      join(tmp, 'cap0'),
      '--batch-size',
      '6',
      '--max-steps',
      '3',
      '--text-len',
      '12',
    ]);
    expect(scratch).toMatch(/captioning fine-tuning from scratch: 3 steps .*loss \d+\.\d+ → \d+\.\d+, masked-token accuracy/);
    expect(scratch).toMatch(/captioning \(6 held-out images, 3 beams\): CIDEr-D \d+\.\d+ BLEU-4 \d+\.\d+ \(chance/);
    const fromMdm = await cli([
      'train',
      '--task',
      'captioning',
      '--data',
      data,
      '--init',
      mdm,
      '--out',
      join(tmp, 'cap1'),
      '--batch-size',
      '6',
      '--max-steps',
      '3',
      '--text-len',
      '12',
      '--train-records',
      '6',
    ]);
    expect(fromMdm).toMatch(new RegExp(`from ${mdm} \\(${loaded} tensors\\): 3 steps`));
    expect(tf.memory().numTensors).toBe(before);
    // The saved model loads as a captioning model that generates at the trained length.
    const saved = (await loadBeit3(join(tmp, 'cap1', 'model'))) as Beit3ForCaptioning;
    expect(saved.task).toBe('captioning');
    expect(saved.config.captionGeneration).toEqual({ numMaxBpeTokens: 12, numBeams: 3, lengthPenalty: 0.6 });
    saved.dispose();
    const captions = JSON.parse(readFileSync(join(tmp, 'cap1', 'captions.json'), 'utf8')) as { caption: string; references: string[] }[];
    expect(captions).toHaveLength(6);
    for (const c of captions) expect(c.references.length).toBeGreaterThan(0);
  }, 120_000);

  it('resumes exactly: a crash after the step-2 checkpoint, then the same run again, equals the run without the crash', async () => {
    const options = (out: string) => ({
      train: join(data, 'train.jsonl'),
      test: join(data, 'test.jsonl'),
      vocab: join(data, 'vocab.txt'),
      out: join(tmp, out),
      batchSize: 4, // 12 records: 3 steps an epoch, so the checkpoint at step 2 is mid-epoch
      maxSteps: 5,
      checkpointEvery: 2,
      textLength: 12,
      seed: 4,
      numBeams: 1,
      maxTestRecords: 2,
    });
    const whole = await finetuneBeit3Captioning(options('whole'));
    await expect(
      finetuneBeit3Captioning({
        ...options('crash'),
        onProgress: (done) => {
          if (done === 3) throw new Error('crash after step 3');
        },
      }),
    ).rejects.toThrow(/crash/);
    const resumed = await finetuneBeit3Captioning({ ...options('crash'), resume: true });
    expect(resumed.resumedFrom).toMatch(/ckpt/);
    expect(whole.resumedFrom).toBeNull();
    expect(resumed.lastLoss).toBe(whole.lastLoss);
    const weights = async (out: string) => {
      const m = await loadBeit3(join(tmp, out, 'model'));
      const w = new Map([...m.stateDict()].map(([k, t]) => [k, Array.from(t.dataSync())]));
      m.dispose();
      return w;
    };
    const a = await weights('whole');
    const b = await weights('crash');
    for (const [k, v] of a) expect(b.get(k), k).toEqual(v);
    // From the command line, --fresh starts over and a plain rerun resumes.
    const cmd = ['train', '--task', 'captioning', '--data', data, '--out', join(tmp, 'crash'), '--batch-size', '4', '--max-steps', '5'];
    expect(await cli([...cmd, '--text-len', '12'])).toMatch(/resumed from .*ckpt/);
    expect(await cli([...cmd, '--text-len', '12', '--fresh'])).not.toMatch(/resumed from/);
  }, 120_000);

  it('refuses a mask probability outside (0, 1] and a missing test list (exit 2, naming them)', async () => {
    const lines: string[] = [];
    const io = { out: (l: string) => void lines.push(l), err: (l: string) => void lines.push(l) };
    const base = ['train', '--task', 'captioning', '--data', data, '--out', join(tmp, 'bad'), '--quiet', '--backend', 'wasm'];
    expect(await runCli([...base, '--mask-prob', '1.5'], io)).toBe(2);
    expect(lines.join('\n')).toMatch(/--mask-prob must be in \(0, 1\], got 1\.5/);
    expect(await runCli([...base, '--test', join(tmp, 'nope.jsonl')], io)).toBe(2);
    expect(lines.join('\n')).toMatch(/no held-out records to caption at .*nope\.jsonl/);
  });

  it('computes finite losses and a CIDEr-D in [0, 10] through the function', async () => {
    const r = await finetuneBeit3Captioning({
      train: join(data, 'train.jsonl'),
      test: join(data, 'test.jsonl'),
      vocab: join(data, 'vocab.txt'),
      out: join(tmp, 'cap2'),
      batchSize: 6,
      maxSteps: 2,
      textLength: 12,
      numBeams: 1,
      maxTestRecords: 3,
    });
    expect(Number.isFinite(r.firstLoss) && Number.isFinite(r.lastLoss)).toBe(true);
    expect(r.initTensors).toBe(0);
    expect(r.images).toBe(3);
    expect(r.cider).toBeGreaterThanOrEqual(0);
    expect(r.cider).toBeLessThanOrEqual(10);
    expect(r.chance.cider).toBeGreaterThanOrEqual(0);
    expect(r.mismatched.cider).toBeGreaterThanOrEqual(0);
  }, 60_000);
});
