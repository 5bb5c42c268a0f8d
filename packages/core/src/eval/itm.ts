// Image–text matching metrics: accuracy at a threshold and ROC AUC (Mann–Whitney, ties half).
import { VlError } from '../errors.js';

function check(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>): void {
  if (scores.length !== labels.length) throw new VlError('SHAPE_MISMATCH', `${scores.length} scores but ${labels.length} labels`);
}

/** Fraction of pairs whose predicted match (score ≥ threshold) equals the label. */
export function itmAccuracy(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>, threshold = 0.5): number {
  check(scores, labels);
  if (scores.length === 0) return 0;
  let right = 0;
  for (let i = 0; i < scores.length; i++) if ((scores[i] as number) >= threshold === Boolean(labels[i])) right++;
  return right / scores.length;
}

/**
 * Area under the ROC curve: the probability that a random matching pair scores above a random
 * non-matching one, ties counting one half. O(n log n) through average ranks.
 */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>): number {
  check(scores, labels);
  const idx = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => (scores[a] as number) - (scores[b] as number));
  let pos = 0;
  let rankSumPos = 0;
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j + 1 < idx.length && scores[idx[j + 1] as number] === scores[idx[i] as number]) j++;
    const avgRank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) {
      if (labels[idx[k] as number]) {
        pos++;
        rankSumPos += avgRank;
      }
    }
    i = j + 1;
  }
  const neg = scores.length - pos;
  if (pos === 0 || neg === 0) throw new VlError('INVALID_ARGUMENT', 'AUC needs both matching and non-matching pairs');
  return (rankSumPos - (pos * (pos + 1)) / 2) / (pos * neg);
}

/** Match probability from [N, 2] ITM logits (class 1 = match), i.e. softmax(logits)[:, 1]. */
export function itmMatchProbabilities(logits: ArrayLike<number>): Float32Array {
  if (logits.length % 2 !== 0) throw new VlError('SHAPE_MISMATCH', 'ITM logits must be [N, 2]');
  const out = new Float32Array(logits.length / 2);
  for (let i = 0; i < out.length; i++) {
    const a = logits[2 * i] as number;
    const b = logits[2 * i + 1] as number;
    out[i] = 1 / (1 + Math.exp(a - b));
  }
  return out;
}
