// Masked data modeling, piece by piece: block masking at 40% in blocks (statistically, against random masks
// of the same count), text masking at the paper's rates with the 80/10/10 replacement (statistically) and
// never on bos/eos/pads, the split of a batch into the three kinds, the loss taken only at masked positions
// (a changed target elsewhere changes nothing; the MIM loss equals a brute-force cross-entropy over the full
// logits), and no tensor leaks through forward and gradients.
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, PatchCodebookTokenizer, Rng } from '@vl/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { beit3Preset } from '../config.js';
import {
  type Beit3MdmBatch,
  type Beit3MdmConfig,
  Beit3ForMaskedDataModeling,
  Beit3MdmPretrainer,
  maskTextRows,
  mdmMaskingGenerator,
} from '../mdm.js';

beforeAll(async () => {
  await initRuntime({ backend: 'wasm' });
});

/** Share of the 4-neighbours (inside the grid) of masked patches that are masked too. */
function neighbourShare(mask: Uint8Array, grid: number): number {
  let same = 0;
  let all = 0;
  for (let i = 0; i < grid; i++) {
    for (let j = 0; j < grid; j++) {
      if (!mask[i * grid + j]) continue;
      for (const [di, dj] of [
        [0, 1],
        [1, 0],
        [0, -1],
        [-1, 0],
      ] as const) {
        const a = i + di;
        const b = j + dj;
        if (a < 0 || b < 0 || a >= grid || b >= grid) continue;
        all++;
        same += mask[a * grid + b]!;
      }
    }
  }
  return same / all;
}

describe('masking', () => {
  it('masks 40% of the patches in blocks: the count is met (BEiT falls short rarely) and neighbours cluster far above random', () => {
    const grid = 8;
    const gen = mdmMaskingGenerator(grid, 0.4);
    expect(gen.numMaskingPatches).toBe(26); // round(0.4 · 64)
    expect(gen.minNumPatches).toBe(7); // min(16, ⌈26 / 4⌉)
    const rng = new Rng(3);
    let masked = 0;
    let blockShare = 0;
    let randomShare = 0;
    const runs = 300;
    for (let r = 0; r < runs; r++) {
      const m = gen.generate(rng);
      const c = m.reduce((s, v) => s + v, 0);
      expect(c).toBeLessThanOrEqual(26);
      masked += c;
      blockShare += neighbourShare(m, grid) / runs;
      // The same count at uniformly random positions.
      const idx = rng.shuffle(Array.from({ length: 64 }, (_, i) => i)).slice(0, c);
      const rm = new Uint8Array(64);
      for (const i of idx) rm[i] = 1;
      randomShare += neighbourShare(rm, grid) / runs;
    }
    expect(masked / runs / 64).toBeGreaterThan(0.39);
    expect(masked / runs / 64).toBeLessThanOrEqual(26 / 64);
    // Random: ≈ (c − 1) / 63 ≈ 0.4; blocks: most neighbours of a masked patch are masked.
    expect(randomShare).toBeGreaterThan(0.35);
    expect(randomShare).toBeLessThan(0.45);
    expect(blockShare).toBeGreaterThan(randomShare + 0.2);
  });

  it('masks round(m·p) of the m words of each text (at least one), never bos/eos/pads, replaced 80/10/10', () => {
    const seq = 44;
    const rows = 300;
    const ids = new Int32Array(rows * seq);
    const am = new Int32Array(rows * seq);
    for (let r = 0; r < rows; r++) {
      // bos, 40 words (ids 10..49), eos, 2 pads.
      ids[r * seq] = 0;
      for (let i = 1; i <= 40; i++) ids[r * seq + i] = 9 + i;
      ids[r * seq + 41] = 2;
      ids[r * seq + 42] = 1;
      ids[r * seq + 43] = 1;
      for (let i = 0; i < 42; i++) am[r * seq + i] = 1;
    }
    const special = [0, 1, 2, 3, 97];
    for (const [prob, want] of [
      [0.15, 6],
      [0.5, 20],
    ] as const) {
      const m = maskTextRows(ids, am, seq, { rng: new Rng(7), prob, maskId: 97, vocabSize: 99, specialIds: special });
      let toMask = 0;
      let random = 0;
      let kept = 0;
      for (let r = 0; r < rows; r++) {
        const row = m.masked.subarray(r * seq, (r + 1) * seq);
        expect(row.reduce((s, v) => s + v, 0)).toBe(want);
        expect([row[0], row[41], row[42], row[43]]).toEqual([0, 0, 0, 0]);
      }
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
          expect(special).not.toContain(m.inputIds[k]);
        }
      }
      const n = rows * want;
      // 3.5 standard errors of a proportion around 0.8 and 0.1 (a random draw can equal the original: ~1%).
      expect(Math.abs(toMask / n - 0.8)).toBeLessThan(3.5 * Math.sqrt(0.16 / n));
      expect(Math.abs(random / n - 0.1 * (1 - 1 / 94))).toBeLessThan(3.5 * Math.sqrt(0.09 / n));
      expect(Math.abs(kept / n - (0.1 + 0.1 / 94))).toBeLessThan(3.5 * Math.sqrt(0.09 / n));
    }
    // A text of 3 words at 15%: ⌊0.45 + 0.5⌋ = 0, raised to 1.
    const short = maskTextRows(Int32Array.from([0, 10, 11, 12, 2]), Int32Array.from([1, 1, 1, 1, 1]), 5, {
      rng: new Rng(1),
      prob: 0.15,
      maskId: 97,
      vocabSize: 99,
      specialIds: special,
    });
    expect(short.masked.reduce((s, v) => s + v, 0)).toBe(1);
  });
});

function tinySetup(objectives = {}) {
  const base = beit3Preset('tiny');
  const config: Beit3MdmConfig = { ...base, mdm: { visualVocabSize: 8 } };
  const model = new Beit3ForMaskedDataModeling(config, new Rng(1));
  const tokenizer = new PatchCodebookTokenizer({ patchSize: 8, vocabSize: 8, rng: new Rng(2) });
  const pretrainer = new Beit3MdmPretrainer(model, tokenizer, { objectives });
  const rng = new Rng(4);
  const b = 6;
  const seq = 12;
  const inputIds = new Int32Array(b * seq).fill(1);
  const attentionMask = new Int32Array(b * seq);
  for (let r = 0; r < b; r++) {
    const n = 6 + r; // bos, n − 2 words, eos
    inputIds[r * seq] = 0;
    for (let i = 1; i < n - 1; i++) inputIds[r * seq + i] = 4 + rng.int(90);
    inputIds[r * seq + n - 1] = 2;
    for (let i = 0; i < n; i++) attentionMask[r * seq + i] = 1;
  }
  const batch: Beit3MdmBatch = {
    pixels: Float32Array.from({ length: b * 3 * 32 * 32 }, () => rng.uniform() * 2 - 1),
    imageSize: 32,
    batchSize: b,
    inputIds,
    attentionMask,
    seqLength: seq,
  };
  return { model, tokenizer, pretrainer, batch };
}

const lossOf = (r: { loss: tf.Scalar; losses: Record<string, tf.Scalar> }): Record<string, number> => {
  const out = { loss: r.loss.dataSync()[0]!, ...Object.fromEntries(Object.entries(r.losses).map(([k, v]) => [k, v.dataSync()[0]!])) };
  tf.dispose([r.loss, ...Object.values(r.losses)]);
  return out;
};

describe('Beit3MdmPretrainer', () => {
  it('splits a batch into images, texts and pairs by the mix; a switched-off kind gets no rows', () => {
    const { model, tokenizer, pretrainer } = tinySetup();
    expect(pretrainer.rowCounts(6)).toEqual({ mim: 2, mlm: 2, mvlm: 2 });
    expect(pretrainer.rowCounts(32)).toEqual({ mim: 11, mlm: 11, mvlm: 10 });
    expect(new Beit3MdmPretrainer(model, tokenizer, { objectives: { mlm: { weight: 0 } } }).rowCounts(6)).toEqual({
      mim: 3,
      mlm: 0,
      mvlm: 3,
    });
    expect(new Beit3MdmPretrainer(model, tokenizer, { mix: { mvlm: 0 } }).rowCounts(5)).toEqual({ mim: 3, mlm: 2, mvlm: 0 });
    expect(() => new Beit3MdmPretrainer(model, tokenizer, { mix: { mim: 0, mlm: 0, mvlm: 0 } })).toThrow(/every kind of data is off/);
    const wrong = new PatchCodebookTokenizer({ patchSize: 8, vocabSize: 9, rng: new Rng(0) });
    expect(() => new Beit3MdmPretrainer(model, wrong)).toThrow(/9 codes but mim_head predicts 8/);
    wrong.dispose();
    model.dispose();
    tokenizer.dispose();
  });

  it('takes the loss only at masked positions: targets elsewhere change nothing, a masked one changes it', () => {
    const { model, tokenizer, pretrainer, batch } = tinySetup();
    model.eval();
    const plan = pretrainer.plan(batch, new Rng(5));
    const tokens = pretrainer.visualTokens(batch);
    const run = (p = plan, t = tokens) => lossOf(pretrainer.losses(batch, p, t, new Rng(0)));
    const base = run();
    expect(Object.keys(base).sort()).toEqual(['loss', 'mim', 'mlm', 'mvlm']);
    expect(base.loss).toBeCloseTo(base.mim! + base.mlm! + base.mvlm!, 5);
    const np = 16;
    const image = plan.image!;
    const pair = plan.pair!;
    const text = plan.text!;
    // Visual targets: an unmasked patch of an image row and of a pair row, then a masked one.
    for (const [rows, mask, name] of [
      [image.rows, image.patchMask!, 'mim'],
      [pair.rows, pair.patchMask!, 'mvlm'],
    ] as const) {
      const unmasked = mask.indexOf(0);
      const masked = mask.indexOf(1);
      const row = (i: number) => rows[Math.floor(i / np)]! * np + (i % np);
      const t1 = Int32Array.from(tokens);
      t1[row(unmasked)] = (t1[row(unmasked)]! + 1) % 8;
      expect(run(plan, t1)).toEqual(base);
      const t2 = Int32Array.from(tokens);
      t2[row(masked)] = (t2[row(masked)]! + 1) % 8;
      const changed = run(plan, t2);
      expect(changed[name]).not.toBe(base[name]);
    }
    // Text targets: an unmasked word of a text row.
    const k = Array.from(text.text!.masked).findIndex((m, i) => !m && i % 12 > 0);
    const t3 = Int32Array.from(text.text!.targets);
    t3[k] = (t3[k]! + 5) % 90;
    expect(run({ ...plan, text: { ...text, text: { ...text.text!, targets: t3 } } })).toEqual(base);
    const km = text.text!.masked.indexOf(1);
    const t4 = Int32Array.from(text.text!.targets);
    t4[km] = (t4[km]! + 5) % 90;
    expect(run({ ...plan, text: { ...text, text: { ...text.text!, targets: t4 } } }).mlm).not.toBe(base.mlm);

    // The MIM loss by brute force: full logits of every patch, −log softmax at the target, mean over masked patches.
    const brute = tf.tidy(() => {
      const s = 32;
      const px = tf.tensor4d(batch.pixels.subarray(0, image.rows.length * 3 * s * s), [image.rows.length, 3, s, s]);
      const out = model.beit3.forward({
        pixels: px,
        visionMaskedPosition: tf.tensor2d(image.patchMask!, [image.rows.length, np], 'int32'),
      });
      const logp = tf.logSoftmax(model.mimHead.forward(tf.slice(out.encoderOut, [0, 1, 0], [-1, np, -1]))).arraySync() as number[][][];
      let sum = 0;
      let n = 0;
      image.patchMask!.forEach((m, i) => {
        if (!m) return;
        sum -= logp[Math.floor(i / np)]![i % np]![tokens[image.rows[Math.floor(i / np)]! * np + (i % np)]!]!;
        n++;
      });
      return sum / n;
    });
    expect(base.mim).toBeCloseTo(brute, 5);
    model.dispose();
    tokenizer.dispose();
  });

  it('leaks no tensors through forward and gradients', () => {
    const { model, tokenizer, pretrainer, batch } = tinySetup();
    const step = () => {
      const { value, grads } = tf.variableGrads(() => {
        const r = pretrainer.forward(batch, new Rng(9));
        tf.dispose(Object.values(r.losses));
        return r.loss;
      });
      value.dispose();
      tf.dispose(grads);
    };
    step();
    const before = tf.memory().numTensors;
    step();
    step();
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
    tokenizer.dispose();
  });
});
