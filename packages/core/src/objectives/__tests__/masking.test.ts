// Statistics over many draws: BERT masking (15%, 80/10/10, specials and padding untouched, whole
// words), hard negatives (never a positive, favour similar items), BEiT block masking, tokenizer.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { isVlError } from '../../errors.js';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { itmPairs, sampleItmNegatives } from '../itm.js';
import { IGNORE_INDEX } from '../losses.js';
import { BlockMaskingGenerator, PatchCodebookTokenizer } from '../mim.js';
import { maskTokens } from '../mlm.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

const CLS = 1;
const SEP = 2;
const PAD = 0;
const MASK = 3;
const VOCAB = 50;

/** Rows of [CLS] words… [SEP] [PAD]…, lengths varying. */
function makeBatch(rows: number, len: number, rng: Rng): Int32Array {
  const ids = new Int32Array(rows * len).fill(PAD);
  for (let r = 0; r < rows; r++) {
    const n = 4 + rng.int(len - 5);
    ids[r * len] = CLS;
    for (let c = 1; c <= n; c++) ids[r * len + c] = 10 + rng.int(VOCAB - 10);
    ids[r * len + n + 1] = SEP;
  }
  return ids;
}

describe('MLM masking', () => {
  const specials = [PAD, CLS, SEP, MASK];

  it('selects ~15% of real tokens; 80% [MASK], 10% random, 10% kept; never specials or padding', () => {
    const rng = new Rng(11);
    const ids = makeBatch(400, 32, rng);
    const { inputIds, labels } = maskTokens(ids, { rng, vocabSize: VOCAB, maskTokenId: MASK, specialTokenIds: specials });
    let eligible = 0;
    let selected = 0;
    let masked = 0;
    let random = 0;
    let kept = 0;
    for (let i = 0; i < ids.length; i++) {
      const special = specials.includes(ids[i]!);
      if (!special) eligible++;
      if (labels[i] === IGNORE_INDEX) {
        expect(inputIds[i]).toBe(ids[i]); // unselected positions are untouched
        continue;
      }
      expect(special).toBe(false);
      expect(labels[i]).toBe(ids[i]);
      selected++;
      if (inputIds[i] === MASK) masked++;
      else if (inputIds[i] === ids[i]) kept++;
      else {
        random++;
        expect(specials.includes(inputIds[i]!)).toBe(false);
      }
    }
    // eligible ≈ 400·17 ≈ 6800: the binomial sd of the rate is ~0.0043; allow ~3 sd.
    expect(Math.abs(selected / eligible - 0.15)).toBeLessThan(0.013);
    // Random replacements can redraw the original id (1/46): count them with 'kept'.
    expect(Math.abs(masked / selected - 0.8)).toBeLessThan(0.04);
    expect(Math.abs(random / selected - 0.1 * (1 - 1 / 46))).toBeLessThan(0.03);
    expect(Math.abs(kept / selected - (0.1 + 0.1 / 46))).toBeLessThan(0.03);
  });

  it('respects attention masks and special-token masks, and is deterministic per seed', () => {
    const ids = new Int32Array(2000).fill(20);
    const attention = Array.from({ length: 2000 }, (_, i) => (i % 4 === 3 ? 0 : 1));
    const specialMask = Array.from({ length: 2000 }, (_, i) => (i % 4 === 0 ? 1 : 0));
    const opts = {
      vocabSize: VOCAB,
      maskTokenId: MASK,
      specialTokenIds: specials,
      attentionMask: attention,
      specialTokensMask: specialMask,
    };
    const a = maskTokens(ids, { ...opts, rng: new Rng(5) });
    const b = maskTokens(ids, { ...opts, rng: new Rng(5) });
    expect([...a.inputIds]).toEqual([...b.inputIds]);
    for (let i = 0; i < 2000; i++) if (i % 4 === 0 || i % 4 === 3) expect(a.labels[i]).toBe(IGNORE_INDEX);
    expect(a.labels.some((l) => l !== IGNORE_INDEX)).toBe(true);
  });

  it('whole-word masking selects all pieces of a word together, ~15% of words', () => {
    const rng = new Rng(3);
    const rows = 300;
    const len = 24;
    const ids = new Int32Array(rows * len);
    const wordIds = new Int32Array(rows * len).fill(-1);
    let words = 0;
    for (let r = 0; r < rows; r++) {
      ids[r * len] = CLS;
      let c = 1;
      let w = 0;
      while (c < len - 4) {
        const pieces = 1 + rng.int(3);
        for (let k = 0; k < pieces; k++, c++) {
          ids[r * len + c] = 10 + rng.int(30);
          wordIds[r * len + c] = w;
        }
        w++;
        words++;
      }
      ids[r * len + c] = SEP;
    }
    const { labels } = maskTokens(ids, { rng, vocabSize: VOCAB, maskTokenId: MASK, specialTokenIds: specials, wordIds, seqLength: len });
    let selectedWords = 0;
    for (let i = 0; i < ids.length; i++) {
      if (wordIds[i]! < 0) {
        expect(labels[i]).toBe(IGNORE_INDEX);
        continue;
      }
      const start = i % len === 0 || wordIds[i - 1] !== wordIds[i];
      if (!start)
        expect(labels[i] !== IGNORE_INDEX).toBe(labels[i - 1] !== IGNORE_INDEX); // same fate as its first piece
      else if (labels[i] !== IGNORE_INDEX) selectedWords++;
    }
    expect(Math.abs(selectedWords / words - 0.15)).toBeLessThan(0.02);
  });
});

describe('ITM hard negatives', () => {
  it('never draws a positive (diagonal or same image id)', () => {
    const rng = new Rng(1);
    const b = 6;
    const ids = [0, 0, 1, 2, 2, 3];
    for (let trial = 0; trial < 200; trial++) {
      const sim = tf.randomNormal([b, b + 4], 0, 3, 'float32', trial);
      const neg = sampleItmNegatives({ simI2t: sim, simT2i: sim, rng, imageIds: ids });
      for (let k = 0; k < b; k++) {
        expect(ids[neg.imageForText[k]!]).not.toBe(ids[k]);
        expect(ids[neg.textForImage[k]!]).not.toBe(ids[k]);
      }
      sim.dispose();
    }
  });

  it('favours similar items in proportion to exp(sim); random strategy is uniform', () => {
    const b = 5;
    // Row i: candidate (i+1) mod b is very similar (sim 2), others 0, the positive is highest (never drawn).
    const data: number[] = [];
    for (let i = 0; i < b; i++) for (let j = 0; j < b; j++) data.push(j === i ? 10 : j === (i + 1) % b ? 2 : 0);
    const sim = tf.tensor2d(data, [b, b]);
    const rng = new Rng(42);
    const draws = 2000;
    let hardHits = 0;
    let randomHits = 0;
    for (let t = 0; t < draws; t++) {
      const hard = sampleItmNegatives({ simI2t: sim, simT2i: sim, rng });
      const rand = sampleItmNegatives({ simI2t: sim, simT2i: sim, rng, strategy: 'random' });
      for (let k = 0; k < b; k++) {
        if (hard.textForImage[k] === (k + 1) % b) hardHits++;
        if (rand.textForImage[k] === (k + 1) % b) randomHits++;
        expect(hard.textForImage[k]).not.toBe(k);
        expect(rand.imageForText[k]).not.toBe(k);
      }
    }
    const n = draws * b;
    const p = Math.exp(2) / (Math.exp(2) + 3); // ≈ 0.711
    expect(Math.abs(hardHits / n - p)).toBeLessThan(4 * Math.sqrt((p * (1 - p)) / n));
    expect(Math.abs(randomHits / n - 0.25)).toBeLessThan(4 * Math.sqrt((0.25 * 0.75) / n));
    sim.dispose();
  });

  it('is deterministic per seed, errors when no negative exists, and lays out ALBEF pairs', () => {
    const sim = tf.tensor2d([
      [1, 2, 3],
      [0, 1, 0],
      [3, 2, 1],
    ]);
    const a = sampleItmNegatives({ simI2t: sim, simT2i: sim, rng: new Rng(9) });
    const b = sampleItmNegatives({ simI2t: sim, simT2i: sim, rng: new Rng(9) });
    expect([...a.imageForText, ...a.textForImage]).toEqual([...b.imageForText, ...b.textForImage]);
    try {
      sampleItmNegatives({ simI2t: sim, simT2i: sim, rng: new Rng(0), imageIds: [4, 4, 4] });
      expect.unreachable();
    } catch (err) {
      expect(isVlError(err, 'DATA_INVALID')).toBe(true);
    }
    const pairs = itmPairs({ imageForText: new Int32Array([2, 0, 1]), textForImage: new Int32Array([1, 2, 0]) });
    expect([...pairs.imageIndex]).toEqual([0, 1, 2, 2, 0, 1, 0, 1, 2]);
    expect([...pairs.textIndex]).toEqual([0, 1, 2, 0, 1, 2, 1, 2, 0]);
    expect([...pairs.labels]).toEqual([1, 1, 1, 0, 0, 0, 0, 0, 0]);
    sim.dispose();
  });
});

describe('BEiT block masking', () => {
  it('masks close to the target count in blocks, never more, deterministically', () => {
    const gen = new BlockMaskingGenerator({ inputSize: [14, 14], numMaskingPatches: 75, minNumPatches: 16 });
    const rng = new Rng(0);
    let total = 0;
    let withNeighbour = 0;
    let masked = 0;
    const draws = 300;
    for (let d = 0; d < draws; d++) {
      const m = gen.generate(rng);
      const count = m.reduce((s, v) => s + v, 0);
      expect(count).toBeLessThanOrEqual(75);
      total += count;
      for (let i = 0; i < 14; i++) {
        for (let j = 0; j < 14; j++) {
          if (!m[i * 14 + j]) continue;
          masked++;
          const n = [
            [i - 1, j],
            [i + 1, j],
            [i, j - 1],
            [i, j + 1],
          ].some(([a, b]) => a! >= 0 && a! < 14 && b! >= 0 && b! < 14 && m[a! * 14 + b!] === 1);
          if (n) withNeighbour++;
        }
      }
    }
    expect(total / draws).toBeGreaterThan(70);
    // Blocks: nearly every masked patch touches another (independent 38% masking would give ~85%).
    expect(withNeighbour / masked).toBeGreaterThan(0.97);
    expect([...gen.generate(new Rng(4))]).toEqual([...gen.generate(new Rng(4))]);
    expect(gen.generateBatch(3, new Rng(1)).length).toBe(3 * 196);
  });

  it('honours max_num_patches and the aspect range', () => {
    const gen = new BlockMaskingGenerator({
      inputSize: [8, 8],
      numMaskingPatches: 4,
      minNumPatches: 4,
      maxNumPatches: 4,
      minAspect: 1,
      maxAspect: 1,
    });
    const rng = new Rng(2);
    for (let d = 0; d < 50; d++) {
      const m = gen.generate(rng);
      const rowsUsed = new Set<number>();
      const colsUsed = new Set<number>();
      m.forEach((v, k) => {
        if (v) {
          rowsUsed.add(Math.floor(k / 8));
          colsUsed.add(k % 8);
        }
      });
      // Aspect 1 with area 4: one 2×2 square.
      expect(m.reduce((s, v) => s + v, 0)).toBe(4);
      expect(rowsUsed.size).toBe(2);
      expect(colsUsed.size).toBe(2);
    }
  });
});

describe('PatchCodebookTokenizer', () => {
  it('gives one in-range token per patch, equal tokens for equal patches, deterministically', () => {
    const tok = new PatchCodebookTokenizer({ patchSize: 2, channels: 1, vocabSize: 16, rng: new Rng(3) });
    // 4×4 image, 2×2 patches: top-left and bottom-right patches are equal.
    const img = tf.tensor4d([
      [
        [
          [1, 0, 5, 2],
          [0, 1, -1, 3],
          [2, 2, 1, 0],
          [0, -3, 0, 1],
        ],
      ],
    ]);
    const ids = tok.tokenize(img);
    expect(ids.shape).toEqual([1, 4]);
    expect(ids.dtype).toBe('int32');
    const v = ids.dataSync();
    expect(v[0]).toBe(v[3]);
    for (const x of v) expect(x >= 0 && x < 16).toBe(true);
    const again = new PatchCodebookTokenizer({ patchSize: 2, channels: 1, vocabSize: 16, rng: new Rng(3) }).tokenize(img);
    expect([...again.dataSync()]).toEqual([...v]);
  });
});
