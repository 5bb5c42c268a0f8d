// Caption generation exactly as microsoft/unilm `beit3/engine_for_finetuning.py` `CaptioningHandler.eval_batch`
// does it, quirks included (they change the ids): every step predicts the token at a trailing mask
// placeholder, with the official incremental state (image and earlier text keys/values cached, the
// placeholder's position dropped after each step); top 3·K candidates over beams × vocabulary, walked in
// order until K non-eos words; an eos candidate, or every candidate at the step before max_len, becomes a
// finished hypothesis whose ids end with the placeholder; one kept hypothesis per image (`utils.BeamHypotheses`
// with num_keep_best 1, early_stopping False); a finished image's beams refilled with (0, pad, global row 0);
// with one beam this is not greedy decoding.
import * as tf from '@tensorflow/tfjs-core';
import { KVCache, VlError } from '@vl/core';
import type { Beit3ForCaptioning } from './model.js';

/** Candidates per beam (`TOPN_PER_BEAM`). */
const TOPN_PER_BEAM = 3;

export interface Beit3GenerateOptions {
  /** `--num_beams`, default 3. */
  numBeams?: number;
  /** `--num_max_bpe_tokens` (bos and the placeholder included), default 64; at least 3. */
  maxLength?: number;
  /** `--length_penalty`, default 0.6. */
  lengthPenalty?: number;
  /** Keep every step's logits at the placeholder (before log-softmax), [steps][rows · V]. */
  recordStepLogits?: boolean;
}

export interface Beit3Generated {
  /** Per image, what the official code hands to `tokenizer.batch_decode`: [bos, w1…wk, mask, eos, pad…], max_len ids. */
  decoded: Int32Array[];
  /** The kept hypothesis' score per image: cumulative log-probability / len^length_penalty (as float32). */
  scores: number[];
  /** Per image, the words only: every special id (bos, pad, eos, unk, mask) left out, as `skip_special_tokens` does. */
  tokens: number[][];
  /** Steps run (cur_len 2, 3, …). */
  steps: number;
  /** [step][image]: 1 where the step's logits for that image reached the result (not yet done, cur_len < max_len). */
  stepActive: number[][];
  /** With `recordStepLogits`: [step] → [rows (image-major, beam-minor) · V]. */
  stepLogits?: Float32Array[];
}

/** `utils.BeamHypotheses` with its arithmetic in doubles, as Python does it. */
class BeamHypotheses {
  readonly hyp: { score: number; ids: Int32Array }[] = [];
  private worstScore = 1e9;
  private readonly maxLength: number;

  constructor(
    private readonly nHyp: number,
    maxLength: number,
    private readonly lengthPenalty: number,
  ) {
    this.maxLength = maxLength - 1; // ignoring bos
  }

  add(ids: Int32Array, sumLogprobs: number): void {
    const score = sumLogprobs / ids.length ** this.lengthPenalty;
    if (this.hyp.length < this.nHyp || score > this.worstScore) {
      this.hyp.push({ score, ids });
      if (this.hyp.length > this.nHyp) {
        const sorted = this.hyp.map((h, i) => [h.score, i] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
        this.hyp.splice(sorted[0]![1], 1);
        this.worstScore = sorted[1]![0];
      } else {
        this.worstScore = Math.min(score, this.worstScore);
      }
    }
  }

  isDone(bestSumLogprobs: number): boolean {
    if (this.hyp.length < this.nHyp) return false;
    return this.worstScore >= bestSumLogprobs / this.maxLength ** this.lengthPenalty;
  }
}

/** Indices of the k largest values, sorted by value (descending), ties by index. */
function topk(values: Float32Array, k: number): number[] {
  const idx = Array.from({ length: values.length }, (_, i) => i);
  idx.sort((a, b) => values[b]! - values[a]! || a - b);
  return idx.slice(0, k);
}

/** log_softmax over each row of [R, V] (float32, as torch). */
function logSoftmaxRows(logits: tf.Tensor): Float32Array {
  return tf.tidy(() => tf.logSoftmax(logits, -1).dataSync() as Float32Array);
}

/**
 * Generates captions for pixels [B, C, S, S] with the official beam search. Async: each step runs a
 * tidied forward, then reads its logits back; the cache is freed at the end, whatever happens.
 */
export async function generateCaptions(
  model: Beit3ForCaptioning,
  pixels: tf.Tensor,
  options: Beit3GenerateOptions = {},
): Promise<Beit3Generated> {
  const gen = model.config.captionGeneration;
  const numBeams = options.numBeams ?? gen?.numBeams ?? 3;
  const maxLen = options.maxLength ?? gen?.numMaxBpeTokens ?? 64;
  const lengthPenalty = options.lengthPenalty ?? gen?.lengthPenalty ?? 0.6;
  const { bos, pad, eos, unk, mask } = model.config.tokens;
  const v = model.dims.vocabSize;
  if (!Number.isInteger(numBeams) || numBeams < 1) {
    throw new VlError('INVALID_ARGUMENT', `num_beams must be a positive integer, got ${numBeams}`, { subject: 'BEiT-3 generate' });
  }
  if (!Number.isInteger(maxLen) || maxLen < 3) {
    throw new VlError(
      'INVALID_ARGUMENT',
      `num_max_bpe_tokens ${maxLen} leaves no room for a word (bos, a word and the mask placeholder need 3)`,
      {
        subject: 'BEiT-3 generate',
      },
    );
  }
  // The last step reads text rows up to max_len + 1 of embed_positions.B.
  if (maxLen + 2 > model.dims.maxSourcePositions) {
    throw new VlError(
      'INVALID_ARGUMENT',
      `num_max_bpe_tokens ${maxLen} needs ${maxLen + 2} text position rows, but this model has ${model.dims.maxSourcePositions} (at most ${model.dims.maxSourcePositions - 2} tokens)`,
      { subject: 'BEiT-3 generate', hint: `generate at most ${model.dims.maxSourcePositions - 2} tokens` },
    );
  }
  if (numBeams * TOPN_PER_BEAM > numBeams * v) {
    throw new VlError('INVALID_ARGUMENT', `${numBeams} beams need ${numBeams * TOPN_PER_BEAM} candidates but only ${numBeams * v} exist`, {
      subject: 'BEiT-3 generate',
    });
  }
  const batch = pixels.shape[0] as number;
  const rows = batch * numBeams;
  const wasTraining = model.training;
  model.eval();
  const cache = new KVCache(model.numLayers);
  const images = tf.tidy(() =>
    tf.gather(
      pixels,
      tf.tensor1d(
        Array.from({ length: rows }, (_, r) => Math.floor(r / numBeams)),
        'int32',
      ),
    ),
  );
  try {
    let curLen = 2;
    let words = new Int32Array(rows).fill(bos); // the first input is [bos, mask]
    let results = Array.from({ length: rows }, () => {
      const row = new Int32Array(maxLen).fill(mask);
      row[0] = bos;
      return row;
    });
    const hyps = Array.from({ length: batch }, () => new BeamHypotheses(1, maxLen, lengthPenalty));
    let beamScores = new Float32Array(rows);
    for (let r = 0; r < rows; r++) beamScores[r] = r % numBeams === 0 ? 0 : -1e9;
    const done = new Array<boolean>(batch).fill(false);
    const stepActive: number[][] = [];
    const stepLogits: Float32Array[] = [];
    let steps = 0;

    while (curLen <= maxLen) {
      const ids = tf.tensor2d(
        Array.from({ length: rows }, (_, r) => [words[r]!, mask]),
        [rows, 2],
        'int32',
      );
      let logits: tf.Tensor;
      try {
        logits = model.decodeStep(ids, curLen, cache, curLen === 2 ? images : null); // [R, V]
      } finally {
        ids.dispose();
      }
      let logp: Float32Array;
      try {
        if (options.recordStepLogits) stepLogits.push((await logits.data()) as Float32Array);
        logp = logSoftmaxRows(logits);
      } finally {
        logits.dispose();
      }
      steps++;
      stepActive.push(done.map((d) => (!d && curLen < maxLen ? 1 : 0)));

      const next: [number, number, number][] = []; // (score, word, row)
      for (let b = 0; b < batch; b++) {
        const scores = new Float32Array(numBeams * v);
        for (let k = 0; k < numBeams; k++) {
          const r = b * numBeams + k;
          for (let w = 0; w < v; w++) scores[k * v + w] = logp[r * v + w]! + beamScores[r]!; // float32 sums
        }
        const candidates = topk(scores, TOPN_PER_BEAM * numBeams);
        done[b] = done[b]! || hyps[b]!.isDone(scores[candidates[0]!]!);
        if (done[b]) {
          for (let k = 0; k < numBeams; k++) next.push([0, pad, 0]);
          continue;
        }
        const sentence: [number, number, number][] = [];
        for (const idx of candidates) {
          const beam = Math.floor(idx / v);
          const word = idx % v;
          const score = scores[idx]!;
          if ((word === eos && curLen + 1 <= maxLen) || curLen + 1 === maxLen) {
            hyps[b]!.add(results[b * numBeams + beam]!.slice(0, curLen), score);
          } else {
            sentence.push([score, word, b * numBeams + beam]);
          }
          if (sentence.length === numBeams) break;
        }
        if (sentence.length === 0) for (let k = 0; k < numBeams; k++) sentence.push([0, pad, 0]);
        next.push(...sentence);
      }

      beamScores = Float32Array.from(next.map((x) => x[0]));
      words = Int32Array.from(next.map((x) => x[1]));
      const beamIdx = next.map((x) => x[2]);
      results = beamIdx.map((r) => results[r]!.slice());
      cache.reorder(beamIdx);
      cache.truncate(cache.length - 1); // the placeholder's keys and values
      for (let r = 0; r < rows; r++) results[r]![curLen - 1] = words[r]!;
      curLen++;
      if (done.every(Boolean)) break;
    }

    const decoded: Int32Array[] = [];
    const scores: number[] = [];
    const tokens: number[][] = [];
    const special = new Set([bos, pad, eos, unk, mask]); // all_special_ids of XLMRobertaTokenizer
    for (const h of hyps) {
      const out = new Int32Array(maxLen).fill(pad);
      let best: { score: number; ids: Int32Array } | undefined;
      for (const x of h.hyp) if (!best || x.score > best.score) best = x;
      if (best) {
        out.set(best.ids);
        out[best.ids.length] = eos;
      }
      decoded.push(out);
      scores.push(best ? Math.fround(best.score) : Math.fround(-1e5));
      tokens.push(best ? Array.from(best.ids).filter((id) => !special.has(id)) : []);
    }
    return { decoded, scores, tokens, steps, stepActive, ...(options.recordStepLogits ? { stepLogits } : {}) };
  } finally {
    cache.dispose();
    images.dispose();
    model.train(wasTraining);
  }
}
