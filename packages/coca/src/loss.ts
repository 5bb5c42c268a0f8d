// open_clip v3.3.0 `loss.py`: `ClipLoss` (symmetric cross-entropy over the scaled cosine similarities,
// targets on the diagonal) and `CoCaLoss` (ClipLoss · clip_loss_weight + caption cross-entropy ·
// caption_loss_weight, pad positions ignored). Single process: no feature gathering across workers.
import * as tf from '@tensorflow/tfjs-core';
import { crossEntropy, VlError } from '@vl/core';

/** `get_logits`: logits_per_image = scale · img @ txtᵀ [I, T]; logits_per_text is its transpose. */
export function contrastiveLogits(
  imageFeatures: tf.Tensor,
  textFeatures: tf.Tensor,
  logitScale: tf.Tensor | number,
): { logitsPerImage: tf.Tensor2D; logitsPerText: tf.Tensor2D } {
  return tf.tidy(() => {
    const perImage = tf.mul(tf.matMul(imageFeatures, textFeatures, false, true), logitScale) as tf.Tensor2D;
    return { logitsPerImage: perImage, logitsPerText: tf.transpose(perImage) as tf.Tensor2D };
  });
}

/** `ClipLoss`: (CE(logits_per_image, arange) + CE(logits_per_text, arange)) / 2, on normalised features. */
export function clipLoss(imageFeatures: tf.Tensor, textFeatures: tf.Tensor, logitScale: tf.Tensor | number): tf.Scalar {
  const b = imageFeatures.shape[0] as number;
  if (textFeatures.shape[0] !== b) {
    throw new VlError('SHAPE_MISMATCH', `contrastive loss needs as many texts as images, got ${textFeatures.shape[0]} and ${b}`, {
      subject: 'clipLoss',
      hint: 'pair image i with text i',
    });
  }
  return tf.tidy(() => {
    const { logitsPerImage, logitsPerText } = contrastiveLogits(imageFeatures, textFeatures, logitScale);
    const targets = Int32Array.from({ length: b }, (_, i) => i);
    return tf.div(tf.add(crossEntropy(logitsPerImage, targets), crossEntropy(logitsPerText, targets)), 2) as tf.Scalar;
  });
}

/** Mean cross-entropy of logits [B, T, V] against labels [B, T], ignoring every position whose label is `padId`. */
export function captionLoss(logits: tf.Tensor, labels: tf.Tensor | Int32Array, padId = 0): tf.Scalar {
  const [b, t, v] = logits.shape as [number, number, number];
  return tf.tidy(
    () =>
      crossEntropy(tf.reshape(logits, [b * t, v]), labels instanceof tf.Tensor ? tf.reshape(labels, [b * t]) : labels, {
        ignoreIndex: padId,
      }) as tf.Scalar,
  );
}

export interface CocaLossWeights {
  /** open_clip_train's default 2.0. */
  captionLossWeight?: number;
  /** Default 1.0. */
  clipLossWeight?: number;
  padId?: number;
}

export interface CocaLossOutput {
  /** clip_loss_weight · ClipLoss (0 when the weight is 0). */
  contrastive: tf.Scalar;
  /** caption_loss_weight · caption CE. */
  caption: tf.Scalar;
  total: tf.Scalar;
}

/** `CoCaLoss(...)(image_features, text_features, logits, labels, logit_scale, output_dict=True)`. */
export function cocaLoss(
  out: { imageFeatures: tf.Tensor; textFeatures: tf.Tensor; logits: tf.Tensor; labels: tf.Tensor; logitScale: tf.Tensor },
  weights: CocaLossWeights = {},
): CocaLossOutput {
  const clipW = weights.clipLossWeight ?? 1;
  const capW = weights.captionLossWeight ?? 2;
  return tf.tidy(() => {
    // open_clip skips ClipLoss entirely when its weight is 0 (`if self.clip_loss_weight:`).
    const contrastive = clipW ? (tf.mul(clipLoss(out.imageFeatures, out.textFeatures, out.logitScale), clipW) as tf.Scalar) : tf.scalar(0);
    const caption = capW ? (tf.mul(captionLoss(out.logits, out.labels, weights.padId ?? 0), capW) as tf.Scalar) : tf.scalar(0);
    return { contrastive, caption, total: tf.add(contrastive, caption) as tf.Scalar };
  });
}
