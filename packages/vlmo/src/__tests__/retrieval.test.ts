// Retrieval and ITM evaluation on the tiny preset: the dual-encoder ranking equals one computed by hand
// from each image and text encoded on its own (cosines, ranks, Recall@K), re-ranking follows VLMo's
// rule (itm_logit[match] + cosine inside the top-k, −100 + cosine outside) against pairs fused one by
// one, and the ITM evaluation pairs each text with its own, a random and its ITC-hardest other image.
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, itmMatchProbabilities, Rng } from '@vl/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vlmoPreset } from '../config.js';
import { Vlmo } from '../model.js';
import {
  topKIndices,
  VLMO_OUTSIDE_TOP_K,
  vlmoItmEvaluation,
  vlmoItmLogits,
  vlmoRetrievalMetrics,
  vlmoRetrievalScores,
  type VlmoTexts,
} from '../retrieval.js';
import { vlmoStageConfig } from '../stages.js';

const I = 4;
const T = 6;
const L = 9;
/** Images 0 and 1 have two captions each, images 2 and 3 one. */
const TEXT_TO_IMAGE = [0, 0, 1, 1, 2, 3];

let model: Vlmo;
let pixels: tf.Tensor4D;
let texts: VlmoTexts;

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
  model = new Vlmo(vlmoStageConfig(vlmoPreset('tiny'), 3), new Rng(5)).eval();
  const rng = new Rng(11);
  pixels = tf.tensor4d(
    Float32Array.from({ length: I * 3 * 32 * 32 }, () => rng.normal()),
    [I, 3, 32, 32],
  );
  const ids = new Int32Array(T * L);
  const mask = new Int32Array(T * L);
  for (let t = 0; t < T; t++) {
    const len = 4 + (t % 4); // 4..7 real tokens, padded to max_text_len
    for (let j = 0; j < len; j++) {
      ids[t * L + j] = j === 0 ? 2 : j === len - 1 ? 3 : 5 + rng.int(90);
      mask[t * L + j] = 1;
    }
  }
  texts = { inputIds: ids, attentionMask: mask, seqLength: L };
});
afterAll(() => {
  pixels.dispose();
  model.dispose();
});

/** Unit ITC features of one image and one text, each encoded alone. */
function handFeatures(): { image: number[][]; text: number[][] } {
  const image: number[][] = [];
  for (let i = 0; i < I; i++) {
    image.push(
      tf.tidy(() => Array.from(model.encodeImage(tf.slice(pixels, [i, 0, 0, 0], [1, -1, -1, -1]), { vlffn: false }).clsFeats!.dataSync())),
    );
  }
  const text: number[][] = [];
  for (let t = 0; t < T; t++) {
    const real = texts.attentionMask.subarray(t * L, (t + 1) * L).reduce((a, b) => a + b, 0);
    // Unpadded: the text-only mode needs no padding, so this also checks padding changes nothing.
    const ids = tf.tensor2d(texts.inputIds.subarray(t * L, t * L + real), [1, real], 'int32');
    const mask = tf.ones([1, real], 'int32');
    text.push(tf.tidy(() => Array.from(model.encodeText(ids, mask, { vlffn: false }).clsFeats!.dataSync())));
    tf.dispose([ids, mask]);
  }
  return { image, text };
}

const dot = (a: number[], b: number[]) => a.reduce((s, v, j) => s + v * b[j]!, 0);

describe('dual-encoder retrieval', () => {
  it('ranks by the cosine of features computed one by one, with the hand-computed ranks and Recall@K', () => {
    const f = handFeatures();
    const cos = f.image.map((im) => f.text.map((tx) => dot(im, tx)));
    for (const v of [...f.image, ...f.text]) expect(Math.sqrt(dot(v, v))).toBeCloseTo(1, 5);
    const scores = vlmoRetrievalScores(model, pixels, texts, { batchSize: 3 });
    for (let i = 0; i < I; i++) for (let t = 0; t < T; t++) expect(scores.itc[i * T + t]).toBeCloseTo(cos[i]![t]!, 5);
    expect(scores.i2t).toEqual(scores.itc);
    expect(scores.t2i).toEqual(scores.itc);

    // By hand: the rank of image i's best caption among all texts; of text t's image among all images.
    const i2tRank = cos.map((row, i) => {
      const order = row.map((s, t) => [s, t] as const).sort((a, b) => b[0] - a[0]);
      return order.findIndex(([, t]) => TEXT_TO_IMAGE[t] === i);
    });
    const t2iRank = TEXT_TO_IMAGE.map((own, t) => {
      const order = cos.map((row, i) => [row[t]!, i] as const).sort((a, b) => b[0] - a[0]);
      return order.findIndex(([, i]) => i === own);
    });
    const m = vlmoRetrievalMetrics(scores, TEXT_TO_IMAGE, [1, 2, 3], 'itc');
    expect(Array.from(m.imageToText.ranks)).toEqual(i2tRank);
    expect(Array.from(m.textToImage.ranks)).toEqual(t2iRank);
    for (const k of [1, 2, 3]) {
      expect(m.imageToText.recall[k]).toBeCloseTo((100 * i2tRank.filter((r) => r < k).length) / I, 10);
      expect(m.textToImage.recall[k]).toBeCloseTo((100 * t2iRank.filter((r) => r < k).length) / T, 10);
    }
  });

  it('re-ranks the top-k by ITM + cosine and leaves −100 + cosine outside, both ways', () => {
    const k = 2;
    const scores = vlmoRetrievalScores(model, pixels, texts, { rerankK: k, pairBatchSize: 5 });
    // Every pair's match logit in one call (the next test checks batched pairs against single fusions).
    const all = vlmoItmLogits(
      model,
      pixels,
      texts,
      Array.from({ length: I * T }, (_, n) => Math.floor(n / T)),
      Array.from({ length: I * T }, (_, n) => n % T),
    );
    const itm = (i: number, t: number) => all[2 * (i * T + t) + 1]!;
    for (let i = 0; i < I; i++) {
      const top = new Set(topKIndices(scores.itc.subarray(i * T, (i + 1) * T), k));
      for (let t = 0; t < T; t++) {
        const c = scores.itc[i * T + t]!;
        expect(scores.i2t[i * T + t]).toBeCloseTo(top.has(t) ? itm(i, t) + c : VLMO_OUTSIDE_TOP_K + c, 4);
      }
    }
    for (let t = 0; t < T; t++) {
      const column = Array.from({ length: I }, (_, i) => scores.itc[i * T + t]!);
      const top = new Set(topKIndices(column, k));
      for (let i = 0; i < I; i++) {
        const c = column[i]!;
        expect(scores.t2i[i * T + t]).toBeCloseTo(top.has(i) ? itm(i, t) + c : VLMO_OUTSIDE_TOP_K + c, 4);
      }
    }
    // Re-ranking only reorders within the top-k: below it the order is the cosine's.
    const m = vlmoRetrievalMetrics(scores, TEXT_TO_IMAGE, [1, 2, 3, 4]);
    const itcOnly = vlmoRetrievalMetrics(scores, TEXT_TO_IMAGE, [1, 2, 3, 4], 'itc');
    expect(m.imageToText.recall[k]).toBe(itcOnly.imageToText.recall[k]);
    expect(m.textToImage.recall[4]).toBe(itcOnly.textToImage.recall[4]);
    expect(() => vlmoRetrievalScores(model, pixels, texts, { rerankK: -1 })).toThrow(/rerankK/);
  });

  it('ITM logits of batched pairs equal one fusion per pair, and the ITM evaluation draws its negatives as documented', () => {
    const logits = vlmoItmLogits(model, pixels, texts, [0, 3, 1], [5, 0, 2], 2);
    const ids = tf.tensor2d(texts.inputIds.subarray(5 * L, 6 * L), [1, L], 'int32');
    const mask = tf.tensor2d(texts.attentionMask.subarray(5 * L, 6 * L), [1, L], 'int32');
    const one = tf.tidy(() => model.itmLogits(model.fuse(tf.slice(pixels, [0, 0, 0, 0], [1, -1, -1, -1]), ids, mask).clsFeats).dataSync());
    expect(logits[0]).toBeCloseTo(one[0]!, 5);
    expect(logits[1]).toBeCloseTo(one[1]!, 5);
    tf.dispose([ids, mask]);

    const scores = vlmoRetrievalScores(model, pixels, texts);
    const ev = vlmoItmEvaluation(model, pixels, texts, TEXT_TO_IMAGE, scores.itc, { seed: 3 });
    expect(ev.pairs).toBe(3 * T);
    // Recompute: probabilities of (own, random other, hardest other) for every text.
    const rng = new Rng(3);
    const imgIdx: number[] = [];
    const txtIdx: number[] = [];
    for (let t = 0; t < T; t++) {
      const own = TEXT_TO_IMAGE[t]!;
      const others = [0, 1, 2, 3].filter((i) => i !== own);
      const hard = others.reduce((a, b) => (scores.itc[b * T + t]! > scores.itc[a * T + t]! ? b : a));
      imgIdx.push(own, (own + 1 + rng.int(I - 1)) % I, hard);
      txtIdx.push(t, t, t);
    }
    const p = itmMatchProbabilities(vlmoItmLogits(model, pixels, texts, imgIdx, txtIdx));
    const acc = (k: number) => {
      let right = 0;
      for (let t = 0; t < T; t++) right += (p[3 * t]! >= 0.5 ? 1 : 0) + (p[3 * t + k]! < 0.5 ? 1 : 0);
      return right / (2 * T);
    };
    expect(ev.random.accuracy).toBeCloseTo(acc(1), 10);
    expect(ev.hard.accuracy).toBeCloseTo(acc(2), 10);
    for (const v of [ev.random.auc, ev.hard.auc]) expect(v >= 0 && v <= 1).toBe(true);
  });

  it('refuses a model without ITC heads, naming the config field', () => {
    const mimOnly = new Vlmo(vlmoStageConfig(vlmoPreset('tiny'), 1, { visualVocabSize: 16 }), new Rng(0));
    expect(() => vlmoRetrievalScores(mimOnly, pixels, texts)).toThrow(/no ITC heads/);
    mimOnly.dispose();
  });
});
