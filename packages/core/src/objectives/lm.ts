// Causal language modelling loss (BLIP `BertLMHeadModel`): logits shifted by one against the next
// token, label smoothing 0.1, prompt and padding positions ignored through -100 labels.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import { crossEntropy, IGNORE_INDEX, labelsToHost, type Labels } from './losses.js';

export interface LmLabelOptions {
  padTokenId: number;
  /** Prompt tokens (e.g. BLIP's "a picture of " plus [DEC]) that are not predicted: a count for all rows or one per row. */
  promptLength?: number | ArrayLike<number>;
}

/**
 * BLIP's `decoder_targets`: the input ids with padding and the first `promptLength` positions set
 * to -100. ids: [B, T] flattened row-major.
 */
export function lmLabels(inputIds: ArrayLike<number>, shape: readonly [number, number], options: LmLabelOptions): Int32Array {
  const [b, t] = shape;
  if (inputIds.length !== b * t)
    throw new VlError('SHAPE_MISMATCH', `lmLabels: ${inputIds.length} ids for shape [${shape}]`, { subject: 'lm' });
  const out = Int32Array.from(inputIds as ArrayLike<number>);
  for (let r = 0; r < b; r++) {
    const prompt =
      options.promptLength === undefined ? 0 : typeof options.promptLength === 'number' ? options.promptLength : options.promptLength[r]!;
    for (let c = 0; c < t; c++) {
      const k = r * t + c;
      if (c < prompt || out[k] === options.padTokenId) out[k] = IGNORE_INDEX;
    }
  }
  return out;
}

export interface LmLossOptions {
  /** BLIP uses 0.1 for captioning; 0 gives plain NLL (CapFilt scores, perplexity). */
  labelSmoothing?: number;
  /** 'mean' over predicted tokens (default), or 'sequence': the summed loss per row [B] (BLIP's reduction='none' then sum(1)). */
  reduction?: 'mean' | 'sequence';
}

/**
 * Shifted causal cross-entropy: logits[:, :-1] predict labels[:, 1:]. logits [B, T, V], labels [B, T]
 * (ids with -100 where nothing is predicted, e.g. from `lmLabels`).
 */
export function lmLoss(logits: tf.Tensor, labels: Labels, options: LmLossOptions = {}): tf.Tensor {
  if (logits.rank !== 3) throw new VlError('SHAPE_MISMATCH', `lmLoss expects logits [B, T, V], got [${logits.shape}]`, { subject: 'lm' });
  const [b, t, v] = logits.shape as [number, number, number];
  const host = labelsToHost(labels);
  if (host.length !== b * t)
    throw new VlError('SHAPE_MISMATCH', `lmLoss: ${host.length} labels for logits [${logits.shape}]`, { subject: 'lm' });
  const shifted = new Int32Array(b * (t - 1));
  for (let r = 0; r < b; r++) for (let c = 1; c < t; c++) shifted[r * (t - 1) + c - 1] = host[r * t + c]!;
  const eps = options.labelSmoothing ?? 0.1;
  return tf.tidy(() => {
    const pred = tf.reshape(tf.slice(logits, [0, 0, 0], [b, t - 1, v]), [b * (t - 1), v]);
    if (options.reduction === 'sequence') {
      const perToken = crossEntropy(pred, shifted, { labelSmoothing: eps, reduction: 'none' });
      return tf.sum(tf.reshape(perToken, [b, t - 1]), 1);
    }
    return crossEntropy(pred, shifted, { labelSmoothing: eps });
  });
}
