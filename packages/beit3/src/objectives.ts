// The fine-tuning losses of microsoft/unilm `beit3/` that are not the model's own forward: the
// captioning loss `utils.BertCaptioningLoss` and the captioning accuracy of `CaptioningHandler.train_batch`.
// (Retrieval's `utils.ClipLoss` is `Beit3ForRetrieval.clipLoss`.)
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '@vl/core';
import type { Beit3CaptioningInputs, Beit3CaptioningOutput, Beit3ForCaptioning } from './model.js';

export interface BertCaptioningLossOptions {
  /** ε: the label keeps 1 − ε, every other class gets ε / (V − 1). `--label_smoothing` default 0.1. */
  labelSmoothing?: number;
  /** Share of the largest per-token losses dropped once `step > dropWorstAfter`; default 0.2. */
  dropWorstRatio?: number;
  /** Default 12000. */
  dropWorstAfter?: number;
  /** The training step (`global_step`); 0 never drops. */
  step?: number;
}

function labelsOf(labels: tf.Tensor | ArrayLike<number>, n: number, v: number): Int32Array {
  const host = labels instanceof tf.Tensor ? Int32Array.from(labels.dataSync()) : Int32Array.from(labels);
  if (host.length !== n) {
    throw new VlError('SHAPE_MISMATCH', `${n} logit rows but ${host.length} labels`, { subject: 'bertCaptioningLoss' });
  }
  const bad = host.findIndex((y) => !(y >= 0 && y < v));
  if (bad >= 0)
    throw new VlError('INVALID_ARGUMENT', `label ${host[bad]} at row ${bad} is outside [0, ${v})`, { subject: 'bertCaptioningLoss' });
  return host;
}

/**
 * `BertCaptioningLoss`: per masked token KL(smoothed one-hot ‖ softmax(logits)) =
 * Σ_v t_v·(log t_v − log p_v), summed over the vocabulary; after `dropWorstAfter` steps only the
 * (1 − ratio) smallest are kept; then the mean. logits [N, V], labels [N].
 */
export function bertCaptioningLoss(
  logits: tf.Tensor,
  labels: tf.Tensor | ArrayLike<number>,
  options: BertCaptioningLossOptions = {},
): tf.Scalar {
  if (logits.rank !== 2)
    throw new VlError('SHAPE_MISMATCH', `logits must be [N, V], got [${logits.shape}]`, { subject: 'bertCaptioningLoss' });
  const [n, v] = logits.shape as [number, number];
  const eps = options.labelSmoothing ?? 0.1;
  const ratio = options.dropWorstRatio ?? 0.2;
  const after = options.dropWorstAfter ?? 12000;
  const y = labelsOf(labels, n, v);
  return tf.tidy(() => {
    const oneHot = tf.oneHot(tf.tensor1d(y, 'int32'), v); // [N, V]
    const target = tf.add(tf.mul(oneHot, 1 - eps), tf.mul(tf.sub(1, oneHot), eps / (v - 1)));
    const logp = tf.logSoftmax(logits, -1);
    // nn.KLDivLoss(reduction='none'): target · (log target − input), 0 where the target is 0.
    const logt = tf.log(tf.maximum(target, 1e-45));
    const kl = tf.where(tf.greater(target, 0), tf.mul(target, tf.sub(logt, logp)), tf.zerosLike(target));
    let perToken = tf.sum(kl, 1); // [N]
    if (ratio > 0 && (options.step ?? 0) > after) {
      const keep = Math.floor(n * (1 - ratio));
      perToken = tf.neg(tf.topk(tf.neg(perToken), keep).values);
    }
    return tf.mean(perToken) as tf.Scalar;
  });
}

/** `train_batch`'s `acc`: the share of masked tokens whose arg-max logit is the label. */
export function captioningAccuracy(logits: tf.Tensor, labels: tf.Tensor | ArrayLike<number>): number {
  const [n, v] = logits.shape as [number, number];
  const y = labelsOf(labels, n, v);
  const predicted = tf.tidy(() => tf.argMax(logits, -1).dataSync());
  let hits = 0;
  for (let i = 0; i < n; i++) if (predicted[i] === y[i]) hits++;
  return n === 0 ? 0 : hits / n;
}

export interface CaptioningTrainBatchInputs extends Omit<Beit3CaptioningInputs, 'languageMaskedPos'> {
  /** [B, T]: 1 at the masked positions (`language_masked_pos`). */
  languageMaskedPos: tf.Tensor;
  /** [B, T]: the caption before masking (`language_tokens`), whose ids at the masked positions are the labels. */
  languageTokens: tf.Tensor | ArrayLike<number>;
}

/**
 * `CaptioningHandler.train_batch`: the forward on the masked caption under `uni_mask`, the labels
 * `language_tokens[language_masked_pos.bool()]` (row-major, as the logits), `BertCaptioningLoss` at
 * `step` and the accuracy. Returns the forward's outputs too; all tensors are the caller's.
 */
export function captioningTrainBatch(
  model: Beit3ForCaptioning,
  inputs: CaptioningTrainBatchInputs,
  options: BertCaptioningLossOptions = {},
): Beit3CaptioningOutput & { loss: tf.Scalar; acc: number; labels: Int32Array } {
  const where = inputs.languageMaskedPos.dataSync();
  const tokens = inputs.languageTokens instanceof tf.Tensor ? inputs.languageTokens.dataSync() : inputs.languageTokens;
  if (tokens.length !== where.length) {
    throw new VlError('SHAPE_MISMATCH', `${tokens.length} language tokens but ${where.length} masked-position flags`, {
      subject: 'captioningTrainBatch',
    });
  }
  const labels: number[] = [];
  for (let i = 0; i < where.length; i++) if (where[i]) labels.push(tokens[i]!);
  const out = model.forward(inputs);
  const loss = bertCaptioningLoss(out.logits, labels, options);
  return { ...out, loss, acc: captioningAccuracy(out.logits, labels), labels: Int32Array.from(labels) };
}
