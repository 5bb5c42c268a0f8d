// Momentum-distillation targets (ALBEF `model_pretrain.py`): soft targets from the EMA twin mixed
// with the hard targets by alpha, alpha ramped over the first epoch, and a gradient stop.
import * as tf from '@tensorflow/tfjs-core';
import { softCrossEntropy, crossEntropy, IGNORE_INDEX, labelsToHost, type Labels } from '../objectives/losses.js';

/**
 * Identity in the forward pass, zero gradient in the backward pass (PyTorch's `.detach()` /
 * `torch.no_grad()`). tfjs-core has no stop-gradient op; momentum targets need one because ALBEF
 * divides the momentum similarities by the *learnable* temperature inside `no_grad`.
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  const f = tf.customGrad((...inputs: Array<tf.Tensor | tf.GradSaveFunc>) => ({
    value: tf.clone(inputs[0] as tf.Tensor),
    gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
  }));
  return f(x) as T;
}

/**
 * ALBEF's distillation weight: `alpha` from the second epoch on, ramped linearly during the first
 * (`alpha * min(1, i / len(data_loader))` with i the iteration in epoch 0). With a global step
 * counted from 0 this is `alpha * min(1, step / stepsPerEpoch)`.
 */
export function distillAlpha(step: number, stepsPerEpoch: number, alpha = 0.4): number {
  if (stepsPerEpoch <= 0) return alpha;
  return alpha * Math.min(1, step / stepsPerEpoch);
}

/** alpha·soft + (1−alpha)·hard, with the soft part cut from the graph. */
export function mixTargets(soft: tf.Tensor, hard: tf.Tensor, alpha: number): tf.Tensor {
  return tf.tidy(() => {
    if (alpha === 0) return tf.clone(hard);
    return tf.add(tf.mul(stopGradient(soft), alpha), tf.mul(hard, 1 - alpha));
  });
}

/**
 * Soft ITC targets from momentum features: softmax(feat_m · featAll / temp) row-wise, both
 * directions, gradient stopped. featAll are the candidate columns [D, N] (the momentum batch
 * followed by the queue), as ALBEF's `image_feat_all` / `text_feat_all`.
 */
export function itcMomentumTargets(
  imageFeatM: tf.Tensor,
  textFeatM: tf.Tensor,
  imageFeatAll: tf.Tensor,
  textFeatAll: tf.Tensor,
  temp: tf.Tensor | number,
): { i2t: tf.Tensor; t2i: tf.Tensor } {
  return tf.tidy(() => {
    const i2t = tf.softmax(tf.div(tf.matMul(imageFeatM, textFeatAll), temp), -1); // [B, N]
    const t2i = tf.softmax(tf.div(tf.matMul(textFeatM, imageFeatAll), temp), -1); // [B, N]
    return { i2t: stopGradient(i2t), t2i: stopGradient(t2i) };
  });
}

/**
 * ALBEF's MLM with distillation: (1−alpha)·CE(logits, labels) + alpha·softCE(logits,
 * softmax(logitsM)) where the soft term is averaged over the masked positions only.
 * logits, logitsM: [N, V] (flatten [B, L, V] first); labels [N] with -100 for unmasked.
 */
export function mlmDistillLoss(logits: tf.Tensor, logitsM: tf.Tensor, labels: Labels, alpha: number): tf.Scalar {
  const host = labelsToHost(labels);
  const rows: number[] = [];
  for (let i = 0; i < host.length; i++) if (host[i] !== IGNORE_INDEX) rows.push(i);
  return tf.tidy(() => {
    const hard = crossEntropy(logits, host);
    if (alpha === 0 || rows.length === 0) return hard as tf.Scalar;
    const idx = tf.tensor1d(rows, 'int32');
    const soft = tf.softmax(stopGradient(tf.gather(logitsM, idx)), -1);
    const distill = tf.mean(softCrossEntropy(tf.gather(logits, idx), soft));
    return tf.add(tf.mul(hard, 1 - alpha), tf.mul(distill, alpha)) as tf.Scalar;
  });
}
