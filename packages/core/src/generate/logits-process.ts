// Logits processors and warpers on one row of scores, in JS float64; ports of HF transformers v4.30
// `generation/logits_process.py` applied in `_get_logits_processor` / `_get_logits_warper` order.

/** A score transform on one row, given the row's tokens so far (its length is HF's `cur_len`). */
export type RowProcessor = (scores: Float64Array, tokens: readonly number[]) => void;

/**
 * HF `RepetitionPenaltyLogitsProcessor`: for every token already in the row (prompt included), divide a
 * positive score by `penalty`, multiply a negative one.
 */
export function applyRepetitionPenalty(scores: Float64Array, tokens: readonly number[], penalty: number): void {
  const seen = new Set(tokens);
  for (const t of seen) {
    if (t < 0 || t >= scores.length) continue;
    const s = scores[t] as number;
    scores[t] = s < 0 ? s * penalty : s / penalty;
  }
}

/** HF `MinLengthLogitsProcessor`: EOS scores are -inf while the row (prompt included) is shorter than `minLength`. */
export function applyMinLength(scores: Float64Array, curLen: number, minLength: number, eos: readonly number[]): void {
  if (curLen < minLength) for (const e of eos) scores[e] = -Infinity;
}

/** HF `TemperatureLogitsWarper`. */
export function applyTemperature(scores: Float64Array, temperature: number): void {
  for (let i = 0; i < scores.length; i++) scores[i] = (scores[i] as number) / temperature;
}

/** HF `TopKLogitsWarper`: -inf for every score below the k-th largest (ties with it are kept). */
export function applyTopK(scores: Float64Array, topK: number, minTokensToKeep: number): void {
  const k = Math.min(Math.max(topK, minTokensToKeep), scores.length);
  if (k >= scores.length) return;
  const sorted = Float64Array.from(scores).sort(); // ascending; NaN last
  const threshold = sorted[scores.length - k] as number;
  for (let i = 0; i < scores.length; i++) if ((scores[i] as number) < threshold) scores[i] = -Infinity;
}

/**
 * HF `TopPLogitsWarper`: sort ascending, softmax, cumulative sum; remove tokens whose cumulative
 * probability is ≤ 1 - topP, but always keep the `minTokensToKeep` highest. The kept set is the smallest
 * top set whose mass reaches topP. Equal scores are ordered by token id (torch's sort leaves them unspecified).
 */
export function applyTopP(scores: Float64Array, topP: number, minTokensToKeep: number): void {
  const n = scores.length;
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, scores[i] as number);
  if (max === -Infinity) return;
  let total = 0;
  for (let i = 0; i < n; i++) total += Math.exp((scores[i] as number) - max);
  // The cumulative sums depend only on the ascending sequence of values, so a native sort of the values
  // (not of indices with a comparator: ~10× slower over a 30k vocabulary, once per row and step) gives
  // them exactly; only which of several equal scores at the cut go is left, and that is by token id.
  const sorted = Float64Array.from(scores).sort();
  const removeLimit = n - minTokensToKeep; // positions ≥ this in ascending order are always kept
  let cum = 0;
  let cut = 0; // ascending positions < cut are removed (cum only grows, so they form a prefix)
  for (; cut < removeLimit; cut++) {
    cum += Math.exp((sorted[cut] as number) - max) / total;
    if (cum > 1 - topP) break;
  }
  if (cut === 0) return;
  const last = sorted[cut - 1] as number;
  let first = cut - 1;
  while (first > 0 && sorted[first - 1] === last) first--;
  let equalToRemove = cut - first; // of the scores equal to `last`, the lowest token ids go
  for (let i = 0; i < n; i++) {
    const v = scores[i] as number;
    if (v < last) scores[i] = -Infinity;
    else if (v === last && equalToRemove > 0) {
      scores[i] = -Infinity;
      equalToRemove--;
    }
  }
}

/** In-place log-softmax. */
export function logSoftmaxInPlace(scores: Float64Array): void {
  let max = -Infinity;
  for (let i = 0; i < scores.length; i++) max = Math.max(max, scores[i] as number);
  if (max === -Infinity) return;
  let sum = 0;
  for (let i = 0; i < scores.length; i++) sum += Math.exp((scores[i] as number) - max);
  const lse = max + Math.log(sum);
  for (let i = 0; i < scores.length; i++) scores[i] = (scores[i] as number) - lse;
}

/** Log-softmax of `scores` at one index, without modifying `scores`. */
export function logSoftmaxAt(scores: Float64Array, index: number): number {
  let max = -Infinity;
  for (let i = 0; i < scores.length; i++) max = Math.max(max, scores[i] as number);
  let sum = 0;
  for (let i = 0; i < scores.length; i++) sum += Math.exp((scores[i] as number) - max);
  return (scores[index] as number) - max - Math.log(sum);
}

/** Index of the first maximum (torch.argmax's documented choice among equal maxima). */
export function argmax(scores: Float64Array): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < scores.length; i++) {
    const v = scores[i] as number;
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  return best;
}

/** Unnormalised probabilities exp(s - max) (weights for `Rng.categorical`); -inf scores get weight 0. */
export function softmaxWeights(scores: Float64Array): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < scores.length; i++) max = Math.max(max, scores[i] as number);
  const w = new Float64Array(scores.length);
  if (max === -Infinity) return w;
  for (let i = 0; i < scores.length; i++) w[i] = Math.exp((scores[i] as number) - max);
  return w;
}

export interface ProcessorSettings {
  repetitionPenalty: number;
  minLength: number;
  minNewTokens: number;
  promptLength: number;
  eos: readonly number[];
}

/**
 * HF `_get_logits_processor` for the options we support, in its order: repetition penalty, min length,
 * min new tokens. Each is present under HF's condition (penalty ≠ 1; min lengths > 0 with an EOS).
 */
export function buildLogitsProcessor(s: ProcessorSettings): RowProcessor[] {
  const list: RowProcessor[] = [];
  if (s.repetitionPenalty !== 1) list.push((scores, tokens) => applyRepetitionPenalty(scores, tokens, s.repetitionPenalty));
  if (s.minLength > 0 && s.eos.length > 0) list.push((scores, tokens) => applyMinLength(scores, tokens.length, s.minLength, s.eos));
  if (s.minNewTokens > 0 && s.eos.length > 0) {
    list.push((scores, tokens) => applyMinLength(scores, tokens.length - s.promptLength, s.minNewTokens, s.eos));
  }
  return list;
}

export interface WarperSettings {
  temperature: number;
  topK: number;
  topP: number;
  /** HF v4.30: 2 for beam sampling, else 1. */
  minTokensToKeep: number;
}

/** HF `_get_logits_warper`, in its order: temperature (≠ 1), top-k (≠ 0), top-p (< 1). */
export function buildLogitsWarper(s: WarperSettings): RowProcessor[] {
  const list: RowProcessor[] = [];
  if (s.temperature !== 1) list.push((scores) => applyTemperature(scores, s.temperature));
  if (s.topK !== 0) list.push((scores) => applyTopK(scores, s.topK, s.minTokensToKeep));
  if (s.topP < 1) list.push((scores) => applyTopP(scores, s.topP, s.minTokensToKeep));
  return list;
}

export function runProcessors(list: readonly RowProcessor[], scores: Float64Array, tokens: readonly number[]): void {
  for (const p of list) p(scores, tokens);
}
