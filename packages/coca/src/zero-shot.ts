// Zero-shot classification as the CLIP paper evaluates it (and open_clip's `zero_shot_classifier`):
// every class name is put into several prompt templates, the normalised text embeddings of one class
// are averaged (prompt ensembling) and normalised again; an image is scored against every class by
// 100 · cosine similarity, the scale open_clip's zero-shot evaluation uses.
import * as tf from '@tensorflow/tfjs-core';
import { l2Normalize, VlError } from '@vl/core';
import type { Clip, CoCa } from './model.js';

/** `template.replace('{}', name)` for every template (open_clip's format strings). */
export function promptsFor(className: string, templates: readonly string[]): string[] {
  return templates.map((t) => (t.includes('{}') ? t.replaceAll('{}', className) : `${t} ${className}`));
}

/**
 * The classifier weights [E, C]: column c is normalise(mean over templates of normalise(text embedding)).
 * `tokenized[c][t]` holds the ids of class c in template t (rows of one model context length).
 */
export function zeroShotWeights(model: Clip | CoCa, tokenized: readonly (readonly (readonly number[])[])[]): tf.Tensor2D {
  if (tokenized.length === 0 || tokenized.some((c) => c.length === 0)) {
    throw new VlError('INVALID_ARGUMENT', 'zero-shot classification needs at least one class and one template per class', {
      subject: 'zeroShotWeights',
    });
  }
  return tf.tidy(() => {
    const columns = tokenized.map((prompts) => {
      const ids = tf.tensor2d(prompts as number[][], undefined, 'int32');
      const emb = model.encodeText(ids, { normalize: true }); // [T, E]
      return l2Normalize(tf.mean(emb, 0)); // [E]
    });
    return tf.stack(columns, 1) as tf.Tensor2D; // [E, C]
  });
}

/** 100 · normalise(image features) @ weights: [B, C] class logits. */
export function zeroShotLogits(model: Clip | CoCa, pixels: tf.Tensor, weights: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.mul(tf.matMul(model.encodeImage(pixels, { normalize: true }), weights), 100) as tf.Tensor2D);
}

/** Top-1 class per image and the accuracy against `labels`. */
export function zeroShotAccuracy(logits: tf.Tensor2D, labels: readonly number[]): { predictions: number[]; accuracy: number } {
  const predictions = Array.from(tf.tidy(() => tf.argMax(logits, 1)).dataSync());
  const correct = predictions.filter((p, i) => p === labels[i]).length;
  return { predictions, accuracy: labels.length ? correct / labels.length : 0 };
}
