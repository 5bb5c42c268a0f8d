// Image–text retrieval and matching as VLMo evaluates them (microsoft/unilm `vlmo/modules/objectives.py`,
// `compute_irtr_recall` and `compute_irtr_recall_with_rerank`): the dual encoder ranks every pair by the
// cosine of the image-only and text-only ITC features (`infer_image_ft` / `infer_text_ft`: no VL-FFN
// branch); with re-ranking, each query's top-k candidates by that cosine are fused and scored again by
// the ITM head, score = itm_logit[match] + cosine, and every other candidate gets −100 + cosine. ITM
// evaluation scores given (image, text) pairs with the fusion route and the ITM head.
import * as tf from '@tensorflow/tfjs-core';
import { type DirectionResult, itmAccuracy, itmMatchProbabilities, retrievalRecall, rocAuc, Rng, VlError } from '@vl/core';
import type { Vlmo } from './model.js';

/** Token ids of a list of texts, padded to one length (VLMo pads to max_text_len). */
export interface VlmoTexts {
  /** [T, L] */
  inputIds: Int32Array;
  /** [T, L] */
  attentionMask: Int32Array;
  seqLength: number;
}

export interface VlmoRetrievalOptions {
  /** Candidates per query re-scored by ITM (VLMo's `k_test`); 0 (default): the dual encoder only. */
  rerankK?: number;
  /** Images or texts per unimodal forward. Default 64. */
  batchSize?: number;
  /** Fused pairs per ITM forward. Default 64. */
  pairBatchSize?: number;
}

export interface VlmoRetrievalScores {
  numImages: number;
  numTexts: number;
  /** [I, T] cosine of the ITC features (not scaled by exp(logit_scale): the ranking is the same). */
  itc: Float32Array;
  /** [I, T] image → text scores after re-ranking (equal to itc when rerankK is 0). */
  i2t: Float32Array;
  /** [I, T] text → image scores after re-ranking, indexed [image, text] like i2t. */
  t2i: Float32Array;
  rerankK: number;
}

/** The score VLMo's re-ranking gives candidates outside a query's top-k (plus their cosine). */
export const VLMO_OUTSIDE_TOP_K = -100;

function textCount(texts: VlmoTexts, subject: string): number {
  const L = texts.seqLength;
  const n = texts.inputIds.length / L;
  if (!Number.isInteger(n) || texts.attentionMask.length !== texts.inputIds.length) {
    throw new VlError('SHAPE_MISMATCH', `texts must be [T, ${L}] ids and mask of equal size`, { subject });
  }
  return n;
}

function textRows(texts: VlmoTexts, from: number, n: number): { ids: tf.Tensor2D; mask: tf.Tensor2D } {
  const L = texts.seqLength;
  return {
    ids: tf.tensor2d(texts.inputIds.subarray(from * L, (from + n) * L), [n, L], 'int32'),
    mask: tf.tensor2d(texts.attentionMask.subarray(from * L, (from + n) * L), [n, L], 'int32'),
  };
}

function itcFeatures(feats: tf.Tensor | null, mode: string): tf.Tensor {
  if (!feats) {
    throw new VlError('TASK_UNSUPPORTED', `this VLMo has no ITC heads, so no ${mode} features to rank by`, {
      subject: 'VLMo retrieval',
      hint: 'use a checkpoint pretrained with itc (or fine-tuned with irtr): vlmo_config.loss_names.itc > 0',
    });
  }
  return feats;
}

/**
 * Dual-encoder features, unit length, on the host: images through the image-only mode and texts
 * through the text-only mode (V-FFN / L-FFN in every layer, `infer_*_ft`). Eval mode for the call.
 */
export function vlmoDualEncoderFeatures(
  model: Vlmo,
  pixels: tf.Tensor,
  texts: VlmoTexts,
  batchSize = 64,
): { image: Float32Array; text: Float32Array; dim: number; numImages: number; numTexts: number } {
  const numImages = pixels.shape[0] as number;
  const numTexts = textCount(texts, 'vlmoDualEncoderFeatures');
  const d = model.dims.hiddenSize;
  const image = new Float32Array(numImages * d);
  const text = new Float32Array(numTexts * d);
  const wasTraining = model.training;
  model.eval();
  try {
    for (let s = 0; s < numImages; s += batchSize) {
      const n = Math.min(batchSize, numImages - s);
      const f = tf.tidy(() => {
        const out = model.encodeImage(tf.slice(pixels, [s, 0, 0, 0], [n, -1, -1, -1]), { vlffn: false });
        return tf.clone(itcFeatures(out.clsFeats, 'image'));
      });
      image.set(f.dataSync(), s * d);
      f.dispose();
    }
    for (let s = 0; s < numTexts; s += batchSize) {
      const n = Math.min(batchSize, numTexts - s);
      const { ids, mask } = textRows(texts, s, n);
      const f = tf.tidy(() => tf.clone(itcFeatures(model.encodeText(ids, mask, { vlffn: false }).clsFeats, 'text')));
      text.set(f.dataSync(), s * d);
      tf.dispose([f, ids, mask]);
    }
  } finally {
    model.train(wasTraining);
  }
  return { image, text, dim: d, numImages, numTexts };
}

/**
 * ITM logits [N, 2] (column 1: match) of the pairs (imageIndex[n], textIndex[n]) through the fusion
 * route, `pairBatchSize` pairs per forward; host copy. Eval mode for the call.
 */
export function vlmoItmLogits(
  model: Vlmo,
  pixels: tf.Tensor,
  texts: VlmoTexts,
  imageIndex: ArrayLike<number>,
  textIndex: ArrayLike<number>,
  pairBatchSize = 64,
): Float32Array {
  if (imageIndex.length !== textIndex.length) {
    throw new VlError('SHAPE_MISMATCH', `${imageIndex.length} image indices for ${textIndex.length} text indices`, {
      subject: 'vlmoItmLogits',
    });
  }
  textCount(texts, 'vlmoItmLogits');
  const L = texts.seqLength;
  const n = imageIndex.length;
  const out = new Float32Array(2 * n);
  const wasTraining = model.training;
  model.eval();
  try {
    for (let s = 0; s < n; s += pairBatchSize) {
      const m = Math.min(pairBatchSize, n - s);
      const ids = new Int32Array(m * L);
      const mask = new Int32Array(m * L);
      const imgIdx = new Int32Array(m);
      for (let k = 0; k < m; k++) {
        const t = textIndex[s + k] as number;
        ids.set(texts.inputIds.subarray(t * L, (t + 1) * L), k * L);
        mask.set(texts.attentionMask.subarray(t * L, (t + 1) * L), k * L);
        imgIdx[k] = imageIndex[s + k] as number;
      }
      const logits = tf.tidy(() => {
        const px = tf.gather(pixels, tf.tensor1d(imgIdx, 'int32'));
        const fused = model.fuse(px, tf.tensor2d(ids, [m, L], 'int32'), tf.tensor2d(mask, [m, L], 'int32'));
        return model.itmLogits(fused.clsFeats);
      });
      out.set(logits.dataSync(), 2 * s);
      logits.dispose();
    }
  } finally {
    model.train(wasTraining);
  }
  return out;
}

/** Indices of the k largest values (ties: lower index first, as a stable sort). */
export function topKIndices(values: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: values.length }, (_, i) => i);
  idx.sort((a, b) => (values[b] as number) - (values[a] as number) || a - b);
  return idx.slice(0, Math.min(k, values.length));
}

/** Scores every image against every text: the dual-encoder cosine, and with `rerankK` > 0 VLMo's ITM re-ranking. */
export function vlmoRetrievalScores(
  model: Vlmo,
  pixels: tf.Tensor,
  texts: VlmoTexts,
  options: VlmoRetrievalOptions = {},
): VlmoRetrievalScores {
  const k = options.rerankK ?? 0;
  if (!(Number.isInteger(k) && k >= 0)) {
    throw new VlError('INVALID_ARGUMENT', `rerankK must be a non-negative integer, got ${k}`, { subject: 'vlmoRetrievalScores' });
  }
  const f = vlmoDualEncoderFeatures(model, pixels, texts, options.batchSize ?? 64);
  const { numImages: I, numTexts: T, dim: d } = f;
  const itc = new Float32Array(I * T);
  for (let i = 0; i < I; i++) {
    for (let t = 0; t < T; t++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += f.image[i * d + j]! * f.text[t * d + j]!;
      itc[i * T + t] = s;
    }
  }
  if (k === 0) return { numImages: I, numTexts: T, itc, i2t: itc.slice(), t2i: itc.slice(), rerankK: 0 };
  const i2t = new Float32Array(I * T);
  const t2i = new Float32Array(I * T);
  for (let n = 0; n < I * T; n++) {
    i2t[n] = VLMO_OUTSIDE_TOP_K + itc[n]!;
    t2i[n] = VLMO_OUTSIDE_TOP_K + itc[n]!;
  }
  const rescore = (imgIdx: number[], txtIdx: number[], into: Float32Array) => {
    const logits = vlmoItmLogits(model, pixels, texts, imgIdx, txtIdx, options.pairBatchSize ?? 64);
    imgIdx.forEach((i, n) => {
      const at = i * T + txtIdx[n]!;
      into[at] = logits[2 * n + 1]! + itc[at]!;
    });
  };
  {
    // Image → text: the top-k texts of each image.
    const imgIdx: number[] = [];
    const txtIdx: number[] = [];
    for (let i = 0; i < I; i++) {
      for (const t of topKIndices(itc.subarray(i * T, (i + 1) * T), k)) {
        imgIdx.push(i);
        txtIdx.push(t);
      }
    }
    rescore(imgIdx, txtIdx, i2t);
  }
  {
    // Text → image: the top-k images of each text.
    const imgIdx: number[] = [];
    const txtIdx: number[] = [];
    const column = new Float32Array(I);
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < I; i++) column[i] = itc[i * T + t]!;
      for (const i of topKIndices(column, k)) {
        imgIdx.push(i);
        txtIdx.push(t);
      }
    }
    rescore(imgIdx, txtIdx, t2i);
  }
  return { numImages: I, numTexts: T, itc, i2t, t2i, rerankK: k };
}

export interface VlmoRetrievalMetrics {
  /** Text retrieval (image → text) Recall@K in percent. */
  imageToText: DirectionResult;
  /** Image retrieval (text → image). */
  textToImage: DirectionResult;
  /** Mean of the six recalls. */
  meanRecall: number;
}

/** Recall@K both directions, each direction from its own score matrix (as VLMo's re-ranked evaluation). */
export function vlmoRetrievalMetrics(
  scores: VlmoRetrievalScores,
  textToImage: ArrayLike<number>,
  ks: readonly number[] = [1, 5, 10],
  which: 'itc' | 'reranked' = 'reranked',
): VlmoRetrievalMetrics {
  const base = { numImages: scores.numImages, numTexts: scores.numTexts, textToImage, ks };
  const i2t = retrievalRecall({ ...base, sims: which === 'itc' ? scores.itc : scores.i2t }).imageToText;
  const t2i = retrievalRecall({ ...base, sims: which === 'itc' ? scores.itc : scores.t2i }).textToImage;
  const all = [...ks.map((k) => i2t.recall[k] as number), ...ks.map((k) => t2i.recall[k] as number)];
  return { imageToText: i2t, textToImage: t2i, meanRecall: all.reduce((a, b) => a + b, 0) / all.length };
}

export interface VlmoItmEvaluation {
  /** Pairs scored: every text with its own image, and with one negative image per kind. */
  pairs: number;
  /** Negatives drawn uniformly from the other images (seeded). */
  random: { accuracy: number; auc: number };
  /** Each text's negative is the other image it scores highest with by ITC (the hardest for the dual encoder). */
  hard: { accuracy: number; auc: number };
}

/**
 * Image–text matching on held-out pairs: each text with its own image (label 1), with a random other
 * image and with its ITC-hardest other image (label 0). Accuracy of P(match) ≥ 0.5 and ROC AUC, per
 * kind of negative (each with the same positives). `itc` is the [I, T] cosine (vlmoRetrievalScores).
 */
export function vlmoItmEvaluation(
  model: Vlmo,
  pixels: tf.Tensor,
  texts: VlmoTexts,
  textToImage: ArrayLike<number>,
  itc: Float32Array,
  options: { seed?: number; pairBatchSize?: number } = {},
): VlmoItmEvaluation {
  const I = pixels.shape[0] as number;
  const T = textCount(texts, 'vlmoItmEvaluation');
  if (textToImage.length !== T || itc.length !== I * T) {
    throw new VlError('SHAPE_MISMATCH', `textToImage (${textToImage.length}) and itc (${itc.length}) must fit ${I} images × ${T} texts`, {
      subject: 'vlmoItmEvaluation',
    });
  }
  if (I < 2)
    throw new VlError('INVALID_ARGUMENT', 'ITM evaluation needs at least two images (for negatives)', { subject: 'vlmoItmEvaluation' });
  const rng = new Rng(options.seed ?? 0);
  const imgIdx: number[] = [];
  const txtIdx: number[] = [];
  for (let t = 0; t < T; t++) {
    const own = textToImage[t] as number;
    const other = (own + 1 + rng.int(I - 1)) % I;
    let hard = -1;
    for (let i = 0; i < I; i++) if (i !== own && (hard < 0 || itc[i * T + t]! > itc[hard * T + t]!)) hard = i;
    imgIdx.push(own, other, hard);
    txtIdx.push(t, t, t);
  }
  const probs = itmMatchProbabilities(vlmoItmLogits(model, pixels, texts, imgIdx, txtIdx, options.pairBatchSize ?? 64));
  const kind = (k: 1 | 2) => {
    const scores: number[] = [];
    const labels: number[] = [];
    for (let t = 0; t < T; t++) {
      scores.push(probs[3 * t]!, probs[3 * t + k]!);
      labels.push(1, 0);
    }
    return { accuracy: itmAccuracy(scores, labels), auc: rocAuc(scores, labels) };
  };
  return { pairs: 3 * T, random: kind(1), hard: kind(2) };
}
