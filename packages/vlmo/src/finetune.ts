// The fine-tuning losses of VLMo's task heads (microsoft/unilm `vlmo/modules/objectives.py`): VQA's soft-score
// binary cross-entropy (`compute_vqa`: mean BCE-with-logits × the number of answers, as ban-vqa does) and
// NLVR2's two-way cross-entropy (`compute_nlvr2`). The heads are `Vlmo.vqaLogits` and `Vlmo.nlvr2Logits`.
import * as tf from '@tensorflow/tfjs-core';
import { crossEntropy, VlError } from '@vl/core';

/**
 * `F.binary_cross_entropy_with_logits(logits, targets) · answers`: logits and soft targets [B, A] (each
 * answer's VQA score in [0, 1]); the per-element loss max(x, 0) − x·t + log(1 + e^−|x|) is the stable form.
 */
export function vlmoVqaLoss(logits: tf.Tensor, targets: tf.Tensor): tf.Scalar {
  if (logits.rank !== 2 || logits.shape.join() !== targets.shape.join()) {
    throw new VlError('SHAPE_MISMATCH', `VQA logits and targets must both be [B, answers], got [${logits.shape}] and [${targets.shape}]`, {
      subject: 'vlmoVqaLoss',
    });
  }
  return tf.tidy(() => {
    const x = logits;
    const perElement = tf.add(tf.sub(tf.relu(x), tf.mul(x, targets)), tf.log1p(tf.exp(tf.neg(tf.abs(x)))));
    return tf.mul(tf.mean(perElement), logits.shape[1] as number) as tf.Scalar;
  });
}

/** NLVR2: cross-entropy of the [B, 2] logits against labels 0/1 (`answers`). */
export function vlmoNlvr2Loss(logits: tf.Tensor, labels: ArrayLike<number>): tf.Scalar {
  if (logits.rank !== 2 || logits.shape[1] !== 2) {
    throw new VlError('SHAPE_MISMATCH', `NLVR2 logits must be [B, 2], got [${logits.shape}]`, { subject: 'vlmoNlvr2Loss' });
  }
  return crossEntropy(logits, Int32Array.from(labels)) as tf.Scalar;
}

/**
 * VQA accuracy as VQA v2 scores it: each question earns the soft score of the answer its logits rank first
 * (min(1, agreeing annotators / 3); 1 or 0 on the synthetic sets), averaged. `logits` and `targets` are
 * row-major [N, A] (targets as `vqaTargets` builds them). Ties go to the lower answer index.
 */
export function vqaAccuracy(logits: ArrayLike<number>, targets: ArrayLike<number>, answers: number): number {
  const n = logits.length / answers;
  if (!Number.isInteger(n) || n < 1 || targets.length !== logits.length) {
    throw new VlError('SHAPE_MISMATCH', `logits (${logits.length}) and targets (${targets.length}) must both be [N, ${answers}]`, {
      subject: 'vqaAccuracy',
    });
  }
  let sum = 0;
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let a = 1; a < answers; a++) if (logits[i * answers + a]! > logits[i * answers + best]!) best = a;
    sum += targets[i * answers + best]!;
  }
  return sum / n;
}

/** NLVR2 accuracy: column 1 of the [N, 2] logits means "true" (label 1, as compute_nlvr2's answers). */
export function nlvr2Accuracy(logits: ArrayLike<number>, labels: readonly boolean[]): number {
  if (logits.length !== 2 * labels.length || labels.length === 0) {
    throw new VlError('SHAPE_MISMATCH', `logits (${logits.length}) must be [${labels.length}, 2]`, { subject: 'nlvr2Accuracy' });
  }
  let right = 0;
  labels.forEach((l, i) => {
    if (logits[2 * i + 1]! > logits[2 * i]! === l) right++;
  });
  return right / labels.length;
}

/** The most frequent value and its share (the constant guess a blind model can make). */
export function majority<T>(values: readonly T[]): { value: T; share: number } {
  const counts = new Map<T, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best: T = values[0] as T;
  for (const [v, c] of counts) if (c > (counts.get(best) ?? 0)) best = v;
  return { value: best, share: (counts.get(best) ?? 0) / values.length };
}
