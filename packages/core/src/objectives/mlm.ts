// Masked language modelling: BERT masking (HF `DataCollatorForLanguageModeling`, ALBEF `mask()`)
// with a whole-word option, and the loss over the masked positions.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import type { Rng } from '../runtime/rng.js';
import { crossEntropy, IGNORE_INDEX, type Labels } from './losses.js';

export interface MlmMaskingOptions {
  rng: Rng;
  vocabSize: number;
  maskTokenId: number;
  /** Ids never masked (CLS, SEP, PAD, MASK, …). Padding is caught here or by `attentionMask`. */
  specialTokenIds: Iterable<number>;
  /** Optional per-position 1 = real token, 0 = padding (never masked). */
  attentionMask?: ArrayLike<number>;
  /** Optional per-position 1 = special token (HF's `special_tokens_mask`). */
  specialTokensMask?: ArrayLike<number>;
  /** Probability that a (non-special) token, or a whole word, is selected. BERT: 0.15. */
  probability?: number;
  /** Of the selected: share replaced by [MASK]. BERT: 0.8. */
  maskReplaceProb?: number;
  /** Of the selected: share replaced by a random token. BERT: 0.1 (the rest stays unchanged). */
  randomReplaceProb?: number;
  /**
   * Whole-word masking: word index of each position (HF `word_ids()`), -1 for special/padding.
   * A word is selected with `probability` and then all its tokens are; the 80/10/10 choice is
   * still per token, as HF's `DataCollatorForWholeWordMask`.
   */
  wordIds?: ArrayLike<number>;
  /** Sequence length, needed with wordIds so words never span rows. Default: whole input is one row. */
  seqLength?: number;
}

export interface MlmMasked {
  /** The corrupted ids the encoder reads. */
  inputIds: Int32Array;
  /** The original id at selected positions, -100 elsewhere (the loss ignores them). */
  labels: Int32Array;
}

/**
 * BERT masking on host ids (any shape, flattened). Deviation from HF, on purpose: random
 * replacement tokens are drawn from the vocabulary *without* the special ids, because a random
 * [SEP] or [PAD] in the middle of a text changes what the encoder's structure means, not just a word.
 */
export function maskTokens(inputIds: ArrayLike<number>, options: MlmMaskingOptions): MlmMasked {
  const { rng, vocabSize, maskTokenId } = options;
  const p = options.probability ?? 0.15;
  const pMask = options.maskReplaceProb ?? 0.8;
  const pRandom = options.randomReplaceProb ?? 0.1;
  if (!(p >= 0 && p <= 1) || !(pMask >= 0 && pRandom >= 0 && pMask + pRandom <= 1)) {
    throw new VlError('CONFIG_INVALID', `MLM probabilities out of range: p=${p}, mask=${pMask}, random=${pRandom}`, { subject: 'mlm' });
  }
  const special = new Set(options.specialTokenIds);
  const n = inputIds.length;
  const eligible = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const id = inputIds[i]!;
    const isSpecial =
      special.has(id) || (options.specialTokensMask?.[i] ?? 0) === 1 || (options.attentionMask ? options.attentionMask[i] === 0 : false);
    eligible[i] = isSpecial ? 0 : 1;
  }
  const selected = new Uint8Array(n);
  if (options.wordIds) {
    const wordIds = options.wordIds;
    if (wordIds.length !== n)
      throw new VlError('SHAPE_MISMATCH', `wordIds has ${wordIds.length} entries for ${n} tokens`, { subject: 'mlm' });
    const rowLength = options.seqLength ?? n;
    // One draw per (row, word); a word's tokens are contiguous in each row.
    for (let i = 0; i < n; i++) {
      const w = wordIds[i]!;
      if (w < 0 || !eligible[i]) continue;
      const sameWordAsPrev = i % rowLength !== 0 && wordIds[i - 1] === w && eligible[i - 1] === 1;
      selected[i] = sameWordAsPrev ? selected[i - 1]! : rng.uniform() < p ? 1 : 0;
    }
  } else {
    for (let i = 0; i < n; i++) if (eligible[i] && rng.uniform() < p) selected[i] = 1;
  }
  const randomPool: number[] = [];
  for (let id = 0; id < vocabSize; id++) if (!special.has(id)) randomPool.push(id);
  const ids = Int32Array.from(inputIds as ArrayLike<number>);
  const labels = new Int32Array(n).fill(IGNORE_INDEX);
  for (let i = 0; i < n; i++) {
    if (!selected[i]) continue;
    labels[i] = ids[i]!;
    const u = rng.uniform();
    if (u < pMask) ids[i] = maskTokenId;
    else if (u < pMask + pRandom) ids[i] = randomPool[rng.int(randomPool.length)]!;
    // else: kept as is, still predicted.
  }
  return { inputIds: ids, labels };
}

/** MLM loss: mean cross-entropy over positions whose label is not -100. logits [..., V], labels [...]. */
export function mlmLoss(logits: tf.Tensor, labels: Labels): tf.Scalar {
  return tf.tidy(() => {
    const v = logits.shape[logits.rank - 1] as number;
    return crossEntropy(tf.reshape(logits, [-1, v]), labels) as tf.Scalar;
  });
}
