// BEiT-3 on a config shaped unlike the fixtures (D 24, 3 heads, FFN 40, 2 layers, 30 px in 10 px patches,
// vocab 50, 16 text positions, √D embedding scale off and on): every task runs with the shapes the
// config implies; the masks do what the README says (pads never reach real tokens, captioning's image
// never sees the text and text never sees later text); the retrieval features are unit length; the
// beam search runs with several beams; bad inputs are typed errors; the captioning loss and accuracy by hand.
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, isVlError, Rng } from '@vl/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Beit3Config, beit3Dims, type Beit3Task, parseBeit3Config } from '../config.js';
import { generateCaptions } from '../generation.js';
import {
  type Beit3ForCaptioning,
  type Beit3ForImageClassification,
  type Beit3ForRetrieval,
  type Beit3ForVisualQuestionAnswering,
  type Beit3ForVisualReasoning,
  type Beit3Model,
  buildBeit3,
} from '../model.js';
import { bertCaptioningLoss, captioningAccuracy } from '../objectives.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

const FACTORY: Record<Beit3Task, string> = {
  retrieval: 'beit3_base_patch16_224_retrieval',
  captioning: 'beit3_base_patch16_224_captioning',
  vqa: 'beit3_base_patch16_480_vqav2',
  classification: 'beit3_base_patch16_224_imageclassification',
  nlvr2: 'beit3_base_patch16_224_nlvr2',
};

function otherConfig(task: Beit3Task, extra: Record<string, unknown> = {}): Beit3Config {
  return parseBeit3Config({
    factory: FACTORY[task],
    encoderConfig: {
      encoderEmbedDim: 24,
      encoderAttentionHeads: 3,
      encoderFfnEmbedDim: 40,
      encoderLayers: 2,
      imgSize: 30,
      patchSize: 10,
      vocabSize: 50,
      maxSourcePositions: 16,
      ...extra,
    },
    ...(task === 'vqa' ? { numClasses: 7 } : task === 'classification' ? { numClasses: 5 } : {}),
    tokens: { bos: 0, pad: 1, eos: 2, unk: 3, mask: 48 },
  });
}

/** O(1) weights (norm weights near 1) so that every parameter visibly matters. */
function randomize(model: Beit3Model, seed: number): Beit3Model {
  const rng = new Rng(seed);
  for (const [name, p] of model.namedParameters()) {
    const data = Float32Array.from({ length: p.size }, () => rng.normal() * (p.shape.length === 1 ? 0.1 : 0.3));
    const isNormWeight = /(norm|ln)[^.]*\.(A\.|B\.)?weight$|layer_norm\.(A|B)\.weight$|head\.1\.weight$/.test(name);
    p.assign(tf.tensor(isNormWeight ? data.map((x) => x + 1) : data, p.shape));
  }
  return model.eval();
}

const B = 3;
const T = 5;
const image = () => tf.tidy(() => tf.mul(tf.randomNormal([B, 3, 30, 30], 0, 1, 'float32', 7), 0.5));
const ids = () => tf.tensor2d([0, 7, 9, 11, 2, 0, 20, 2, 1, 1, 0, 30, 31, 32, 2], [B, T], 'int32');
const pads = () => tf.tensor2d([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0], [B, T], 'int32');

const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);

describe('BEiT-3 with another shape', () => {
  it('every task runs with the shapes its config implies (and the √D embedding scale)', () => {
    for (const scale of [true, false]) {
      const before = tf.memory().numTensors;
      tf.tidy(() => {
        const x = image();
        const t = ids();
        const p = pads();
        const d = 24;
        const nv = beit3Dims(otherConfig('retrieval')).numVisionTokens;
        expect(nv).toBe(10);
        const extra = { noScaleEmbedding: scale };
        const r = randomize(buildBeit3(otherConfig('retrieval', extra)), 1) as Beit3ForRetrieval;
        const out = r.forward(x, t, p);
        expect(out.logitsPerImage.shape).toEqual([B, B]);
        expect(Array.from(tf.norm(out.visionCls, 'euclidean', -1).dataSync()).every((n) => Math.abs(n - 1) < 1e-5)).toBe(true);
        expect(Number.isFinite(out.loss.dataSync()[0])).toBe(true);
        const joint = r.beit3.forward({ pixels: x, textTokens: t, textPaddingPosition: p, outputHiddenStates: true });
        expect(joint.encoderOut.shape).toEqual([B, nv + T, d]);
        expect(joint.hiddenStates!.length).toBe(3);
        const c = randomize(buildBeit3(otherConfig('captioning', extra)), 2) as Beit3ForCaptioning;
        const masked = tf.tensor2d([0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1], [B, T], 'int32');
        expect(c.forward({ pixels: x, textIds: t, paddingMask: p, languageMaskedPos: masked }).logits.shape).toEqual([5, 50]);
        expect(c.forward({ pixels: x, textIds: t }).logits.shape).toEqual([B, T, 50]);
        const v = randomize(buildBeit3(otherConfig('vqa', extra)), 3) as Beit3ForVisualQuestionAnswering;
        expect(v.forward(x, t, p).logits.shape).toEqual([B, 7]);
        const k = randomize(buildBeit3(otherConfig('classification', extra)), 4) as Beit3ForImageClassification;
        expect(k.forward(x).logits.shape).toEqual([B, 5]);
        const n = randomize(buildBeit3(otherConfig('nlvr2', extra)), 5) as Beit3ForVisualReasoning;
        const nl = n.forward(x, tf.reverse(x, 0), t, p);
        expect(nl.logits.shape).toEqual([B, 2]);
        expect(nl.headInput.shape).toEqual([B, 4 * d]);
        expect(nl.encoderOut.shape).toEqual([2 * B, nv + T, d]);
        for (const m of [r, c, v, k, n]) m.dispose();
      });
      expect(tf.memory().numTensors).toBe(before);
    }
  });

  it('pads never reach real tokens, and pad rows are zero at the first layer’s input', () => {
    const model = randomize(buildBeit3(otherConfig('vqa')), 6) as Beit3ForVisualQuestionAnswering;
    tf.tidy(() => {
      const x = image();
      const p = pads();
      const a = model.beit3.forward({ pixels: x, textTokens: ids(), textPaddingPosition: p, outputHiddenStates: true });
      // Row 1's last two tokens are pads: other pad ids there change nothing for the real tokens.
      const otherIds = tf.tensor2d([0, 7, 9, 11, 2, 0, 20, 2, 40, 41, 0, 30, 31, 32, 2], [B, T], 'int32');
      const b = model.beit3.forward({ pixels: x, textTokens: otherIds, textPaddingPosition: p });
      const nv = 10;
      const real = (h: tf.Tensor) => tf.concat([tf.slice(h, [0, 0, 0], [B, nv + 3, -1])], 1);
      expect(maxDiff(real(a.encoderOut), real(b.encoderOut))).toBeLessThan(1e-5);
      expect(tf.max(tf.abs(tf.slice(a.hiddenStates![0]!, [1, nv + 3, 0], [1, 2, -1]))).dataSync()[0]).toBe(0);
    });
    model.dispose();
  });

  it('captioning: image rows never see the text, and a text row never sees later text', () => {
    const model = randomize(buildBeit3(otherConfig('captioning')), 7) as Beit3ForCaptioning;
    tf.tidy(() => {
      const x = image();
      const a = model.forward({ pixels: x, textIds: ids() }).encoderOut;
      const changed = tf.tensor2d([0, 7, 9, 44, 45, 0, 20, 2, 44, 45, 0, 30, 31, 44, 45], [B, T], 'int32'); // tokens 3, 4 changed
      const b = model.forward({ pixels: x, textIds: changed }).encoderOut;
      expect(maxDiff(tf.slice(a, [0, 0, 0], [B, 10 + 3, -1]), tf.slice(b, [0, 0, 0], [B, 10 + 3, -1]))).toBeLessThan(1e-5);
      expect(maxDiff(tf.slice(a, [0, 10 + 3, 0], [B, 2, -1]), tf.slice(b, [0, 10 + 3, 0], [B, 2, -1]))).toBeGreaterThan(1e-3);
      // The backbone without uni_mask lets the image see the text.
      const c = model.beit3.forward({ pixels: x, textTokens: ids() }).encoderOut;
      const e = model.beit3.forward({ pixels: x, textTokens: changed }).encoderOut;
      expect(maxDiff(tf.slice(c, [0, 0, 0], [B, 10, -1]), tf.slice(e, [0, 0, 0], [B, 10, -1]))).toBeGreaterThan(1e-3);
    });
    model.dispose();
  });

  it('the beam search runs with 1, 2 and 4 beams; cached steps equal full causal forwards; the cache is freed', async () => {
    const model = randomize(buildBeit3(otherConfig('captioning')), 8) as Beit3ForCaptioning;
    const x = image();
    const before = tf.memory().numTensors;
    for (const numBeams of [1, 2, 4]) {
      const res = await generateCaptions(model, x, { numBeams, maxLength: 8, lengthPenalty: 0.6, recordStepLogits: true });
      expect(res.decoded.length).toBe(B);
      for (const row of res.decoded) {
        expect(row.length).toBe(8);
        expect(row[0]).toBe(0);
        expect(Array.from(row).every((id) => id >= 0 && id < 50)).toBe(true);
        expect(Array.from(row)).toContain(2); // eos closes every caption
      }
      expect(res.scores.every((s) => Number.isFinite(s) && s <= 0)).toBe(true);
      expect(res.stepLogits!.length).toBe(res.steps);
      expect(res.stepLogits![0]!.length).toBe(B * numBeams * 50);
    }
    // Step 2 of beam 0, recomputed without a cache from its decoded prefix (one beam: the best non-eos word).
    const one = await generateCaptions(model, x, { numBeams: 1, maxLength: 8, recordStepLogits: true });
    const first = one.stepLogits![0]!.slice(0, 50);
    const w1 = Array.from(first.keys())
      .filter((w) => w !== 2)
      .sort((a, b) => first[b]! - first[a]!)[0]!;
    const full = tf.tidy(() =>
      model
        .forward({
          pixels: tf.slice(x, [0, 0, 0, 0], [1, -1, -1, -1]),
          textIds: tf.tensor2d([[0, w1, 48]], [1, 3], 'int32'),
          languageMaskedPos: tf.tensor2d([[0, 0, 1]], [1, 3], 'int32'),
        })
        .logits.dataSync(),
    );
    expect(one.stepActive[1]![0]).toBe(1);
    const cached = one.stepLogits![1]!.slice(0, 50);
    let diff = 0;
    for (let i = 0; i < 50; i++) diff = Math.max(diff, Math.abs(cached[i]! - full[i]!));
    expect(diff).toBeLessThan(1e-5);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
    model.dispose();
  });

  it('bad inputs are typed errors that say what was expected', () => {
    const model = randomize(buildBeit3(otherConfig('retrieval')), 9) as Beit3ForRetrieval;
    const expectError = (fn: () => unknown, code: string, message: RegExp) => {
      const before = tf.memory().numTensors;
      let err: unknown = null;
      try {
        fn();
      } catch (e) {
        err = e;
      }
      expect(isVlError(err, code as never), String(err)).toBe(true);
      expect((err as Error).message).toMatch(message);
      expect(tf.memory().numTensors).toBe(before);
    };
    const x = image();
    const long = tf.zeros([1, 15], 'int32');
    expectError(
      () => model.encodeText(long, null),
      'SHAPE_MISMATCH',
      /a text of 15 tokens needs position rows up to 16, but embed_positions.B has 16 \(at most 14 tokens\)/,
    );
    const small = tf.zeros([1, 3, 20, 20]);
    expectError(() => model.encodeImage(small), 'SHAPE_MISMATCH', /images must be \[B, 3, 30, 30\], got \[1,3,20,20\]/);
    const t = ids();
    const shortPad = tf.zeros([B, 4]);
    const twoTexts = tf.slice(t, [0, 0], [2, -1]);
    expectError(
      () => model.beit3.forward({ textTokens: t, textPaddingPosition: shortPad }),
      'SHAPE_MISMATCH',
      /padding mask \[3,4\] does not match/,
    );
    expectError(() => model.beit3.forward({}), 'INVALID_ARGUMENT', /needs text tokens, an image, or both/);
    expectError(() => model.beit3.forward({ pixels: x, textTokens: twoTexts }), 'SHAPE_MISMATCH', /2 texts but 3 images/);
    tf.dispose([x, long, small, t, shortPad, twoTexts]);
    model.dispose();
  });
});

describe('captioning objectives', () => {
  it('BertCaptioningLoss equals KL(smoothed one-hot ‖ softmax) by hand, and drops the worst 20% after 12000 steps', () => {
    const rows = [
      [1, 2, 0.5, -1],
      [0, 0, 3, 0.2],
      [2, -1, 0, 0],
      [0.3, 0.1, 0.2, 0.9],
      [-2, 1, 1, 4],
    ];
    const labels = [1, 2, 0, 1, 0];
    const eps = 0.1;
    const byHand = rows.map((r, i) => {
      const lse = Math.log(r.reduce((s, x) => s + Math.exp(x), 0));
      return r.reduce((s, x, v) => {
        const t = v === labels[i] ? 1 - eps : eps / (r.length - 1);
        return s + t * (Math.log(t) - (x - lse));
      }, 0);
    });
    const logits = tf.tensor2d(rows);
    const mean = byHand.reduce((a, b) => a + b, 0) / byHand.length;
    expect(bertCaptioningLoss(logits, labels, { step: 0 }).dataSync()[0]).toBeCloseTo(mean, 5);
    expect(bertCaptioningLoss(logits, labels, { step: 12000 }).dataSync()[0]).toBeCloseTo(mean, 5); // not yet (iter > 12000)
    const kept = [...byHand].sort((a, b) => a - b).slice(0, 4);
    expect(bertCaptioningLoss(logits, labels, { step: 12001 }).dataSync()[0]).toBeCloseTo(kept.reduce((a, b) => a + b, 0) / 4, 5);
    expect(captioningAccuracy(logits, labels)).toBeCloseTo(3 / 5, 10); // rows 0–2 hit; rows 3 and 4 predict 3
    expect(() => bertCaptioningLoss(logits, [1, 2])).toThrow(/5 logit rows but 2 labels/);
    expect(() => bertCaptioningLoss(logits, [1, 2, 0, 1, 9])).toThrow(/label 9 at row 4/);
    logits.dispose();
  });
});
