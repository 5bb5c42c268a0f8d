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
