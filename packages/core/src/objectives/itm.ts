// Image-text matching with hard-negative mining (ALBEF `model_pretrain.py`, BLIP `blip_pretrain.py`):
// for each text a negative image and for each image a negative text, drawn in proportion to
// softmax(similarity) with the positives masked out; then the binary ITM head's cross-entropy.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import type { Rng } from '../runtime/rng.js';
import { crossEntropy, logitsAccuracy } from './losses.js';

export type NegativeStrategy = 'hard' | 'random';

export interface ItmNegativesInput {
  /** [B, N≥B] image→text similarities (already / temp); only the first B columns (the batch) are used. */
  simI2t: tf.Tensor;
  /** [B, N≥B] text→image similarities. */
  simT2i: tf.Tensor;
  rng: Rng;
  /** Pairs sharing an image id are positives and never drawn as negatives (BLIP's idx mask). */
  imageIds?: ArrayLike<number>;
  /** 'hard' (default): ∝ softmax(sim); 'random': uniform over non-positives, for ablations. */
  strategy?: NegativeStrategy;
}

export interface ItmNegatives {
  /** For text b, the index of its negative image in the batch. */
  imageForText: Int32Array;
  /** For image b, the index of its negative text in the batch. */
  textForImage: Int32Array;
}

/**
 * Draws one negative per text and per image. Softmax weights are computed in float64 over the
 * non-positive candidates only (same distribution as ALBEF's softmax-then-zero, but no row can
 * underflow to all zeros). Order of draws follows ALBEF: first an image for each text, then a
 * text for each image. A row with no non-positive candidate (all pairs share one image) is an error.
 */
export function sampleItmNegatives(input: ItmNegativesInput): ItmNegatives {
  const { rng } = input;
  const strategy = input.strategy ?? 'hard';
  const [b, n] = input.simI2t.shape as [number, number];
  if (input.simT2i.shape[0] !== b || (input.simT2i.shape[1] as number) < b || n < b) {
    throw new VlError('SHAPE_MISMATCH', `ITM mining expects sims [B, N≥B], got [${input.simI2t.shape}] and [${input.simT2i.shape}]`, {
      subject: 'itm',
    });
  }
  if (b < 2) throw new VlError('INVALID_ARGUMENT', 'ITM needs a batch of at least 2 pairs to find negatives', { subject: 'itm' });
  const ids = input.imageIds;
  if (ids && ids.length !== b)
    throw new VlError('SHAPE_MISMATCH', `imageIds has ${ids.length} entries for a batch of ${b}`, { subject: 'itm' });
  const isPositive = (i: number, j: number) => (ids ? ids[i] === ids[j] : i === j);
  const i2t = batchBlock(input.simI2t, b);
  const t2i = batchBlock(input.simT2i, b);
  const weights = new Float64Array(b);
  const draw = (sim: Float32Array, row: number): number => {
    let max = -Infinity;
    for (let j = 0; j < b; j++) if (!isPositive(row, j)) max = Math.max(max, sim[row * b + j]!);
    if (max === -Infinity) {
      throw new VlError('DATA_INVALID', `every pair in the batch shares the image of row ${row}: no ITM negative exists`, {
        subject: 'itm',
        hint: 'batch pairs from at least two different images',
      });
    }
    for (let j = 0; j < b; j++) {
      weights[j] = isPositive(row, j) ? 0 : strategy === 'random' ? 1 : Math.exp(sim[row * b + j]! - max);
    }
    return rng.categorical(weights);
  };
  const imageForText = new Int32Array(b);
  const textForImage = new Int32Array(b);
  for (let t = 0; t < b; t++) imageForText[t] = draw(t2i, t);
  for (let i = 0; i < b; i++) textForImage[i] = draw(i2t, i);
  return { imageForText, textForImage };
}

/** The [B, B] in-batch block of a [B, N] similarity matrix, on the host. */
function batchBlock(sim: tf.Tensor, b: number): Float32Array {
  const block = tf.tidy(() => (sim.shape[1] === b ? tf.clone(sim) : tf.slice(sim, [0, 0], [b, b])));
  const data = block.dataSync() as Float32Array;
  block.dispose();
  return data;
}

export interface ItmPairs {
  /** Image index (into the batch) of each of the 3B fusion inputs. */
  imageIndex: Int32Array;
  /** Text index of each fusion input. */
  textIndex: Int32Array;
  /** 1 for the B positives, 0 for the 2B negatives. */
  labels: Int32Array;
}

/**
 * ALBEF's layout of the 3B fusion inputs: the B positive pairs; then (negative image, text b);
 * then (image b, negative text). Labels: ones(B) then zeros(2B).
 */
export function itmPairs(negatives: ItmNegatives): ItmPairs {
  const b = negatives.imageForText.length;
  const imageIndex = new Int32Array(3 * b);
  const textIndex = new Int32Array(3 * b);
  const labels = new Int32Array(3 * b);
  for (let k = 0; k < b; k++) {
    imageIndex[k] = k;
    textIndex[k] = k;
    labels[k] = 1;
    imageIndex[b + k] = negatives.imageForText[k]!;
    textIndex[b + k] = k;
    imageIndex[2 * b + k] = k;
    textIndex[2 * b + k] = negatives.textForImage[k]!;
  }
  return { imageIndex, textIndex, labels };
}

/** Cross-entropy of the ITM head's logits [3B, 2] against the pair labels, plus accuracy for metrics. */
export function itmLoss(logits: tf.Tensor, labels: Int32Array): { loss: tf.Scalar; accuracy: number } {
  if (logits.rank !== 2 || logits.shape[1] !== 2) {
    throw new VlError('SHAPE_MISMATCH', `ITM head logits must be [N, 2], got [${logits.shape}]`, { subject: 'itm' });
  }
  return { loss: crossEntropy(logits, labels) as tf.Scalar, accuracy: logitsAccuracy(logits, labels) };
}
