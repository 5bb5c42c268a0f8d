// Image–text retrieval Recall@K in both directions with several captions per image, as ALBEF/BLIP's
// `itm_eval` computes it: image→text counts a hit when any of the image's captions ranks within K,
// text→image when the caption's own image does. Reported in percent like the papers.
import { VlError } from '../errors.js';

export interface RetrievalInput {
  /** Similarities [numImages, numTexts], row-major (or one array per image). */
  sims: ArrayLike<number> | readonly ArrayLike<number>[];
  numImages: number;
  numTexts: number;
  /** For each text, the index of its image. */
  textToImage: ArrayLike<number>;
  ks?: readonly number[];
}

export interface DirectionResult {
  /** K → Recall@K in percent. */
  recall: Record<number, number>;
  /** 0-based rank of the best match for each query. */
  ranks: Int32Array;
  medianRank: number;
}

export interface RetrievalResult {
  imageToText: DirectionResult;
  textToImage: DirectionResult;
  /** Mean of all Recall@K values of both directions (ALBEF's `r_mean`). */
  meanRecall: number;
}

function direction(ranks: Int32Array, ks: readonly number[]): DirectionResult {
  const recall: Record<number, number> = {};
  for (const k of ks) {
    let hits = 0;
    for (const r of ranks) if (r < k) hits++;
    recall[k] = ranks.length ? (100 * hits) / ranks.length : 0;
  }
  const sorted = Array.from(ranks).sort((a, b) => a - b);
  // 1-based median rank, as retrieval papers report it.
  const medianRank = sorted.length ? (sorted[Math.floor((sorted.length - 1) / 2)] as number) + 1 : 0;
  return { recall, ranks, medianRank };
}

/**
 * Ties count against the query: a candidate scoring exactly as high as the match ranks ahead of it,
 * so a constant similarity gives the worst recall rather than the best.
 */
export function retrievalRecall(input: RetrievalInput): RetrievalResult {
  const { numImages: I, numTexts: T } = input;
  const ks = input.ks ?? [1, 5, 10];
  const flat = Array.isArray(input.sims) && typeof input.sims[0] === 'object' ? null : (input.sims as ArrayLike<number>);
  const rows = flat ? null : (input.sims as readonly ArrayLike<number>[]);
  if (flat ? flat.length !== I * T : rows?.length !== I || rows.some((r) => r.length !== T)) {
    throw new VlError('SHAPE_MISMATCH', `similarities must be ${I}×${T}`);
  }
  if (input.textToImage.length !== T)
    throw new VlError('SHAPE_MISMATCH', `textToImage has ${input.textToImage.length} entries, expected ${T}`);
  const s = (i: number, t: number): number =>
    flat ? (flat[i * T + t] as number) : ((rows as readonly ArrayLike<number>[])[i]![t] as number);
  const captionsOf: number[][] = Array.from({ length: I }, () => []);
  for (let t = 0; t < T; t++) {
    const i = input.textToImage[t] as number;
    if (!Number.isInteger(i) || i < 0 || i >= I)
      throw new VlError('INVALID_ARGUMENT', `text ${t} points at image ${i}, outside 0..${I - 1}`);
    (captionsOf[i] as number[]).push(t);
  }

  const i2t = new Int32Array(I);
  for (let i = 0; i < I; i++) {
    const own = captionsOf[i] as number[];
    if (own.length === 0) throw new VlError('INVALID_ARGUMENT', `image ${i} has no caption`);
    let best = -Infinity;
    for (const t of own) best = Math.max(best, s(i, t));
    // Rank of the best own caption: texts scoring ≥ it, other than itself.
    let rank = 0;
    for (let t = 0; t < T; t++) if (s(i, t) >= best) rank++;
    i2t[i] = rank - 1;
  }
  const t2i = new Int32Array(T);
  for (let t = 0; t < T; t++) {
    const target = s(input.textToImage[t] as number, t);
    let rank = 0;
    for (let i = 0; i < I; i++) if (s(i, t) >= target) rank++;
    t2i[t] = rank - 1;
  }
  const imageToText = direction(i2t, ks);
  const textToImage = direction(t2i, ks);
  const all = [...ks.map((k) => imageToText.recall[k] as number), ...ks.map((k) => textToImage.recall[k] as number)];
  return { imageToText, textToImage, meanRecall: all.reduce((a, b) => a + b, 0) / all.length };
}
