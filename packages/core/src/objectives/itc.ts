// Image-text contrastive loss (ALBEF `model_pretrain.py`, BLIP `blip_pretrain.py` / `blip_retrieval.py`):
// symmetric InfoNCE with a learnable temperature, optional queue candidates, image ids for
// several captions per image, and optional soft (momentum-distillation) targets.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import { mixTargets } from '../distill/targets.js';

/** ALBEF/BLIP `temp` initial value and clamp range. */
export const TEMPERATURE_INIT = 0.07;
export const TEMPERATURE_MIN = 0.001;
export const TEMPERATURE_MAX = 0.5;

/** A fresh scalar holding the initial temperature, for `registerParameter('temp', …)`. */
export function initTemperature(value = TEMPERATURE_INIT): tf.Scalar {
  return tf.scalar(value);
}

/**
 * Clamps the temperature in place, as ALBEF's `with torch.no_grad(): self.temp.clamp_(0.001, 0.5)`.
 * ALBEF does it at the start of each forward; calling it after each optimizer step (the Trainer's
 * `afterStep`) is the same thing and keeps variable writes out of the gradient tape.
 */
export function clampTemperature(temp: tf.Variable, min = TEMPERATURE_MIN, max = TEMPERATURE_MAX): void {
  tf.tidy(() => temp.assign(tf.clipByValue(temp, min, max)));
}

export interface ItcInput {
  /** [B, D], already L2-normalised (ALBEF normalises the projected [CLS]). */
  imageFeat: tf.Tensor;
  /** [B, D], already L2-normalised. */
  textFeat: tf.Tensor;
  /** Scalar temperature (a Variable to learn it, or a number). Similarities are divided by it. */
  temp: tf.Tensor | number;
  /**
   * Candidate images as columns [D, N] for text→image, ALBEF's `image_feat_all` =
   * cat([image_feat_m.t(), image_queue]). The first B columns must be this batch's images.
   * Default: imageFeatᵀ (in-batch negatives only).
   */
  imageFeatAll?: tf.Tensor;
  /** Candidate texts as columns [D, N] for image→text; the first B columns are this batch's texts. */
  textFeatAll?: tf.Tensor;
  /**
   * Image id of each pair [B]. Pairs that share an image id are positives of each other, so
   * several captions of one image are not pushed apart (BLIP's `idx` / `pos_idx`). Without ids
   * the diagonal is the only positive, as ALBEF pretraining.
   */
  imageIds?: ArrayLike<number>;
  /**
   * Image id of every candidate column [N] (the batch ids followed by the queue's ids, BLIP's
   * `idx_all`). Default: imageIds for the first B columns and "no id" for queue columns, which
   * are then negatives.
   */
  imageIdsAll?: ArrayLike<number>;
  /** Distillation targets [B, N] per direction (probabilities), e.g. from `itcMomentumTargets`. */
  softTargets?: { i2t: tf.Tensor; t2i: tf.Tensor };
  /** Weight of the soft targets: targets = alpha·soft + (1−alpha)·hard. Default 0.4 when softTargets given. */
  alpha?: number;
}

export interface ItcOutput {
  /** (loss_i2t + loss_t2i) / 2 */
  loss: tf.Scalar;
  lossI2t: tf.Scalar;
  lossT2i: tf.Scalar;
  /** [B, N] image→text similarities / temp (ITM hard-negative mining uses these). */
  simI2t: tf.Tensor;
  /** [B, N] text→image similarities / temp. */
  simT2i: tf.Tensor;
  /** [B, N] hard positive targets per row (rows sum to 1). */
  targets: tf.Tensor;
}

/**
 * The hard targets: 1 where the candidate is a positive of the row, normalised per row. With
 * ids this is BLIP's `pos_idx / pos_idx.sum(1)`; without, the identity on the first B columns.
 */
export function itcPositiveTargets(b: number, n: number, imageIds?: ArrayLike<number>, imageIdsAll?: ArrayLike<number>): tf.Tensor {
  if (n < b) throw new VlError('SHAPE_MISMATCH', `ITC needs at least the ${b} batch candidates, got ${n}`, { subject: 'itc' });
  return tf.tidy(() => {
    if (!imageIds) {
      return n === b ? tf.eye(b) : tf.concat([tf.eye(b), tf.zeros([b, n - b])], 1);
    }
    if (imageIds.length !== b) {
      throw new VlError('SHAPE_MISMATCH', `imageIds has ${imageIds.length} entries for a batch of ${b}`, { subject: 'itc' });
    }
    const all = new Float32Array(n).fill(Number.NaN); // NaN never equals anything: queue columns are negatives
    if (imageIdsAll) {
      if (imageIdsAll.length !== n) {
        throw new VlError('SHAPE_MISMATCH', `imageIdsAll has ${imageIdsAll.length} entries for ${n} candidates`, { subject: 'itc' });
      }
      for (let j = 0; j < n; j++) all[j] = imageIdsAll[j]!;
    } else {
      for (let j = 0; j < b; j++) all[j] = imageIds[j]!;
    }
    const ids = tf.tensor2d(Float32Array.from(imageIds as ArrayLike<number>), [b, 1]);
    const pos = tf.cast(tf.equal(ids, tf.tensor2d(all, [1, n])), 'float32'); // [B, N]
    return tf.div(pos, tf.sum(pos, 1, true));
  });
}

/** Symmetric image-text contrastive loss. All returned tensors are new; the caller owns them. */
export function itcLoss(input: ItcInput): ItcOutput {
  const { imageFeat, textFeat, temp } = input;
  if (imageFeat.rank !== 2 || textFeat.rank !== 2 || imageFeat.shape[0] !== textFeat.shape[0]) {
    throw new VlError('SHAPE_MISMATCH', `ITC expects image and text features [B, D], got [${imageFeat.shape}] and [${textFeat.shape}]`, {
      subject: 'itc',
    });
  }
  const b = imageFeat.shape[0] as number;
  return tf.tidy(() => {
    const textAll = input.textFeatAll ?? tf.transpose(textFeat); // [D, N]
    const imageAll = input.imageFeatAll ?? tf.transpose(imageFeat); // [D, N]
    const n = textAll.shape[1] as number;
    if (imageAll.shape[1] !== n) {
      throw new VlError('SHAPE_MISMATCH', `image and text candidate counts differ: ${imageAll.shape[1]} vs ${n}`, { subject: 'itc' });
    }
    const simI2t = tf.div(tf.matMul(imageFeat, textAll), temp); // [B, N]
    const simT2i = tf.div(tf.matMul(textFeat, imageAll), temp); // [B, N]
    const targets = itcPositiveTargets(b, n, input.imageIds, input.imageIdsAll);
    let targetI2t = targets;
    let targetT2i = targets;
    if (input.softTargets) {
      const alpha = input.alpha ?? 0.4;
      targetI2t = mixTargets(input.softTargets.i2t, targets, alpha);
      targetT2i = mixTargets(input.softTargets.t2i, targets, alpha);
    }
    // −Σ_j log_softmax(sim)_ij · target_ij, averaged over the batch (ALBEF's loss_i2t / loss_t2i).
    const lossI2t = tf.mean(tf.neg(tf.sum(tf.mul(tf.logSoftmax(simI2t, 1), targetI2t), 1))) as tf.Scalar;
    const lossT2i = tf.mean(tf.neg(tf.sum(tf.mul(tf.logSoftmax(simT2i, 1), targetT2i), 1))) as tf.Scalar;
    const loss = tf.div(tf.add(lossI2t, lossT2i), 2) as tf.Scalar;
    return { loss, lossI2t, lossT2i, simI2t, simT2i, targets };
  });
}

/** Fraction of rows whose best candidate is a positive (in-batch retrieval accuracy, for metrics). */
export function itcAccuracy(sim: tf.Tensor, targets: tf.Tensor): number {
  const hit = tf.tidy(() => {
    const best = tf.argMax(sim, 1);
    // [B] target mass at the argmax; a one-hot product, because gather with batchDims reads out
    // of bounds on the wasm backend.
    const picked = tf.sum(tf.mul(targets, tf.oneHot(best, sim.shape[1] as number)), 1);
    return tf.mean(tf.cast(tf.greater(picked, 0), 'float32'));
  });
  const v = hit.dataSync()[0]!;
  hit.dispose();
  return v;
}
