// Additive attention masks: padding masks (BERT's (1-m)·-10000, HF's float32-minimum form for
// cross-attention) and causal masks, built once per forward and broadcast over heads.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';

/** BERT/BLIP text self-attention: masked scores get -10000 (HF `get_extended_attention_mask`). */
export const BERT_MASK_VALUE = -10000;
/** HF `invert_attention_mask` (BLIP cross-attention) uses torch.finfo(float32).min. */
export const FLOAT32_MIN = -3.4028234663852886e38;

/**
 * Padding mask [B, S] of 1 (attend) / 0 (pad) → additive [B, 1, 1, S]: 0 where allowed,
 * `maskValue` where padded. Broadcasts over heads and query positions.
 */
export function paddingMask(attentionMask: tf.Tensor, maskValue: number = BERT_MASK_VALUE): tf.Tensor {
  if (attentionMask.rank !== 2) {
    throw new VlError('SHAPE_MISMATCH', `attention mask must be [batch, keys], got [${attentionMask.shape}]`, {
      subject: 'paddingMask',
    });
  }
  return tf.tidy(() => {
    const [b, s] = attentionMask.shape as [number, number];
    const allowed = tf.reshape(tf.cast(attentionMask, 'float32'), [b, 1, 1, s]); // [B, 1, 1, S]
    return tf.mul(tf.sub(1, allowed), maskValue);
  });
}

/**
 * 1/0 matrix [Tq, Tk] saying which keys each query may see in causal decoding. The queries are
 * the last Tq of Tk positions (the first Tk - Tq are cached past tokens), so query i sits at
 * absolute position past + i and may see keys j ≤ past + i (HF prepends ones for the past).
 */
export function causalAllowed(queryLength: number, keyLength: number): tf.Tensor2D {
  const past = keyLength - queryLength;
  if (past < 0) {
    throw new VlError('SHAPE_MISMATCH', `causal mask needs keys ≥ queries, got ${keyLength} keys for ${queryLength} queries`, {
      subject: 'causalAllowed',
    });
  }
  const data = new Float32Array(queryLength * keyLength);
  for (let i = 0; i < queryLength; i++) for (let j = 0; j <= past + i; j++) data[i * keyLength + j] = 1;
  return tf.tensor2d(data, [queryLength, keyLength]);
}

/**
 * 1/0 matrix [P + T, P + T] of a prefix language model (UniLM's seq-to-seq mask; BEiT-3 captioning's
 * `uni_mask`, inverted): the P prefix rows see the whole prefix and nothing after it; each of the T
 * following rows sees the whole prefix and, causally, the following tokens up to itself.
 */
export function prefixCausalAllowed(prefixLength: number, causalLength: number): tf.Tensor2D {
  if (!Number.isInteger(prefixLength) || !Number.isInteger(causalLength) || prefixLength < 0 || causalLength < 0) {
    throw new VlError(
      'INVALID_ARGUMENT',
      `prefix and causal lengths must be non-negative integers, got ${prefixLength} and ${causalLength}`,
      {
        subject: 'prefixCausalAllowed',
      },
    );
  }
  const n = prefixLength + causalLength;
  const data = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    const last = i < prefixLength ? prefixLength - 1 : i; // the last key row i may see
    for (let j = 0; j <= last; j++) data[i * n + j] = 1;
  }
  return tf.tensor2d(data, [n, n]);
}

/** Additive causal mask [1, 1, Tq, Tk]. */
export function causalMask(queryLength: number, keyLength: number, maskValue: number = BERT_MASK_VALUE): tf.Tensor {
  return tf.tidy(() => tf.reshape(tf.mul(tf.sub(1, causalAllowed(queryLength, keyLength)), maskValue), [1, 1, queryLength, keyLength]));
}

export interface ExtendedMaskOptions {
  /** [B, Tk] of 1/0 over every key (cached past + current); absent means all keys are real. */
  attentionMask?: tf.Tensor | null;
  causal?: boolean;
  queryLength: number;
  keyLength: number;
  maskValue?: number;
}

/**
 * The one additive mask a layer adds to its scores: padding and causal combined by
 * multiplication first, then turned additive once (as HF does), so a key masked twice gets
 * `maskValue` and not twice it (which for the float32 minimum would overflow to -inf).
 * Returns null when nothing is masked. Shape [B|1, 1, Tq|1, Tk].
 */
export function extendedAttentionMask(options: ExtendedMaskOptions): tf.Tensor | null {
  const { attentionMask, causal, queryLength, keyLength } = options;
  const maskValue = options.maskValue ?? BERT_MASK_VALUE;
  if (!attentionMask && !causal) return null;
  if (attentionMask && attentionMask.shape[1] !== keyLength) {
    throw new VlError(
      'SHAPE_MISMATCH',
      `attention mask covers ${attentionMask.shape[1]} keys but there are ${keyLength} (past + current)`,
      { subject: 'extendedAttentionMask', hint: 'when decoding with a cache, the mask must cover cached tokens too' },
    );
  }
  return tf.tidy(() => {
    let allowed: tf.Tensor | null = null;
    if (attentionMask) {
      const b = attentionMask.shape[0] as number;
      allowed = tf.reshape(tf.cast(attentionMask, 'float32'), [b, 1, 1, keyLength]); // [B, 1, 1, Tk]
    }
    if (causal) {
      const c = tf.reshape(causalAllowed(queryLength, keyLength), [1, 1, queryLength, keyLength]); // [1, 1, Tq, Tk]
      allowed = allowed ? tf.mul(allowed, c) : c;
    }
    return tf.mul(tf.sub(1, allowed as tf.Tensor), maskValue);
  });
}
