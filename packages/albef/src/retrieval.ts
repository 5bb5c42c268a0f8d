// Image–text retrieval as ALBEF evaluates it (salesforce/ALBEF `Retrieval.py` `evaluation`): ITC
// similarities for all pairs, then for each query the top-k candidates by ITC are re-scored by
// the ITM head on the fusion encoder (score = itm logit of class 1) and everything outside the
// top-k gets -100; Recall@1/5/10 in both directions from the two score matrices.
import * as tf from '@tensorflow/tfjs-core';
import { retrievalRecall, type DirectionResult, VlError } from '@vl/core';
import type { Albef } from './model.js';

/** Texts as padded host ids. */
export interface RetrievalTexts {
  /** [T, L] */
  inputIds: Int32Array;
  /** [T, L] */
  attentionMask: Int32Array;
  seqLength: number;
}

export interface RetrievalOptions {
  /** Candidates re-ranked by ITM per query (ALBEF `k_test`, 256 on COCO). 0: ITC only. Default 16. */
  k?: number;
  /** Images / texts encoded per call. Default 64. */
  batchSize?: number;
  /** Fusion pairs per ITM call. Default 256. */
  pairBatchSize?: number;
}

export interface RetrievalScores {
  numImages: number;
  numTexts: number;
  /** [I, T] ITC cosine similarities (not divided by temp; the ranking is the same). */
  itc: Float32Array;
  /** [I, T] image→text scores after re-ranking (equal to itc when k = 0). */
  i2t: Float32Array;
  /** [I, T] text→image scores after re-ranking (indexed [image, text] like i2t). */
  t2i: Float32Array;
  k: number;
}

/** ALBEF fills the scores of candidates outside the top-k with this. */
export const OUTSIDE_TOP_K = -100;

/** Indices of the k largest values of row (ties: lower index first, as a stable sort). */
export function topK(values: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: values.length }, (_, i) => i);
  idx.sort((a, b) => (values[b] as number) - (values[a] as number) || a - b);
  return idx.slice(0, Math.min(k, values.length));
}

/** Scores every image against every text. Eval mode for the call; host results, no tensors kept. */
export function albefRetrievalScores(
  model: Albef,
  pixels: tf.Tensor,
  texts: RetrievalTexts,
  options: RetrievalOptions = {},
): RetrievalScores {
  const k = options.k ?? 16;
  const bs = options.batchSize ?? 64;
  const pairBs = options.pairBatchSize ?? 256;
  const numImages = pixels.shape[0] as number;
  const L = texts.seqLength;
  const numTexts = texts.inputIds.length / L;
  if (!Number.isInteger(numTexts) || texts.attentionMask.length !== texts.inputIds.length) {
    throw new VlError('SHAPE_MISMATCH', `texts must be [T, ${L}] ids and mask of equal size`, { subject: 'albefRetrievalScores' });
  }
  if (!(Number.isInteger(k) && k >= 0))
    throw new VlError('INVALID_ARGUMENT', `k must be a non-negative integer, got ${k}`, { subject: 'albefRetrievalScores' });
  const wasTraining = model.training;
  model.eval();
  const keep: tf.Tensor[] = [];
  try {
    // Unimodal passes: image_embeds and image_feat per image, text_embeds and text_feat per text.
    const imageEmbeds: tf.Tensor[] = [];
    const imageFeats: tf.Tensor[] = [];
    for (let s = 0; s < numImages; s += bs) {
      const n = Math.min(bs, numImages - s);
      const [emb, feat] = tf.tidy(() => {
        const e = model.encodeImage(tf.slice(pixels, [s, 0, 0, 0], [n, -1, -1, -1]));
        return [e, model.imageFeat(e)];
      });
      imageEmbeds.push(emb);
      imageFeats.push(feat);
    }
    const textEmbeds: tf.Tensor[] = [];
    const textFeats: tf.Tensor[] = [];
    const masks: tf.Tensor[] = [];
    for (let s = 0; s < numTexts; s += bs) {
      const n = Math.min(bs, numTexts - s);
      const ids = tf.tensor2d(texts.inputIds.subarray(s * L, (s + n) * L), [n, L], 'int32');
      const mask = tf.tensor2d(texts.attentionMask.subarray(s * L, (s + n) * L), [n, L], 'int32');
      const [emb, feat] = tf.tidy(() => {
        const e = model.encodeText(ids, mask);
        return [e, model.textFeat(e)];
      });
      ids.dispose();
      textEmbeds.push(emb);
      textFeats.push(feat);
      masks.push(mask);
    }
    const allImageEmbeds = tf.concat(imageEmbeds);
    const allTextEmbeds = tf.concat(textEmbeds);
    const allMasks = tf.concat(masks);
    keep.push(...imageEmbeds, ...imageFeats, ...textEmbeds, ...textFeats, ...masks, allImageEmbeds, allTextEmbeds, allMasks);
    const itcT = tf.tidy(() => tf.matMul(tf.concat(imageFeats), tf.concat(textFeats), false, true)); // [I, T]
    const itc = itcT.dataSync().slice() as Float32Array;
    itcT.dispose();
    if (k === 0) return { numImages, numTexts, itc, i2t: itc.slice(), t2i: itc.slice(), k };

    // ITM scores for a list of (image, text) pairs, in chunks.
    const itmScores = (imgIdx: number[], txtIdx: number[]): Float32Array => {
      const out = new Float32Array(imgIdx.length);
      for (let s = 0; s < imgIdx.length; s += pairBs) {
        const n = Math.min(pairBs, imgIdx.length - s);
        const scores = tf.tidy(() => {
          const ii = tf.tensor1d(imgIdx.slice(s, s + n), 'int32');
          const ti = tf.tensor1d(txtIdx.slice(s, s + n), 'int32');
          const fused = model.fuse(tf.gather(allTextEmbeds, ti), tf.gather(allMasks, ti), tf.gather(allImageEmbeds, ii));
          const logits = model.itmLogits(fused); // [n, 2]
          return tf.reshape(tf.slice(logits, [0, 1], [n, 1]), [n]);
        });
        out.set(scores.dataSync(), s);
        scores.dispose();
      }
      return out;
    };

    const i2t = new Float32Array(numImages * numTexts).fill(OUTSIDE_TOP_K);
    const t2i = new Float32Array(numImages * numTexts).fill(OUTSIDE_TOP_K);
    // image → text: the top-k texts of each image by ITC.
    {
      const imgIdx: number[] = [];
      const txtIdx: number[] = [];
      for (let i = 0; i < numImages; i++) {
        for (const t of topK(itc.subarray(i * numTexts, (i + 1) * numTexts), k)) {
          imgIdx.push(i);
          txtIdx.push(t);
        }
      }
      const s = itmScores(imgIdx, txtIdx);
      imgIdx.forEach((i, n) => (i2t[i * numTexts + txtIdx[n]!] = s[n]!));
    }
    // text → image: the top-k images of each text.
    {
      const imgIdx: number[] = [];
      const txtIdx: number[] = [];
      const column = new Float32Array(numImages);
      for (let t = 0; t < numTexts; t++) {
        for (let i = 0; i < numImages; i++) column[i] = itc[i * numTexts + t]!;
        for (const i of topK(column, k)) {
          imgIdx.push(i);
          txtIdx.push(t);
        }
      }
      const s = itmScores(imgIdx, txtIdx);
      imgIdx.forEach((i, n) => (t2i[i * numTexts + txtIdx[n]!] = s[n]!));
    }
    return { numImages, numTexts, itc, i2t, t2i, k };
  } finally {
    tf.dispose(keep);
    model.train(wasTraining);
  }
}

export interface AlbefRetrievalMetrics {
  /** Text retrieval (image → text) Recall@K in percent. */
  imageToText: DirectionResult;
  /** Image retrieval (text → image). */
  textToImage: DirectionResult;
  /** Mean of the six recalls (ALBEF `r_mean`). */
  meanRecall: number;
}

/** Recall@K both directions from the re-ranked scores (each direction from its own matrix, as ALBEF `itm_eval`). */
export function retrievalMetrics(
  scores: RetrievalScores,
  textToImage: ArrayLike<number>,
  ks: readonly number[] = [1, 5, 10],
): AlbefRetrievalMetrics {
  const base = { numImages: scores.numImages, numTexts: scores.numTexts, textToImage, ks };
  const i2t = retrievalRecall({ ...base, sims: scores.i2t }).imageToText;
  const t2i = retrievalRecall({ ...base, sims: scores.t2i }).textToImage;
  const all = [...ks.map((k) => i2t.recall[k] as number), ...ks.map((k) => t2i.recall[k] as number)];
  return { imageToText: i2t, textToImage: t2i, meanRecall: all.reduce((a, b) => a + b, 0) / all.length };
}

/** Recall@K from ITC alone (no re-ranking), for comparison. */
export function itcRetrievalMetrics(
  scores: RetrievalScores,
  textToImage: ArrayLike<number>,
  ks: readonly number[] = [1, 5, 10],
): AlbefRetrievalMetrics {
  const r = retrievalRecall({ numImages: scores.numImages, numTexts: scores.numTexts, textToImage, ks, sims: scores.itc });
  return { imageToText: r.imageToText, textToImage: r.textToImage, meanRecall: r.meanRecall };
}
