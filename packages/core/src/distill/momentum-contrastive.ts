// The momentum-contrastive block that ALBEF (`model_pretrain.py`) and BLIP (`blip_pretrain.py`)
// share: EMA twins, queues of momentum features, ITC against momentum candidates with soft
// targets, and the ITM pairs (hard or random negatives) drawn from the ITC similarities.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import type { Module } from '../nn/module.js';
import { itcAccuracy, itcLoss, type ItcOutput } from '../objectives/itc.js';
import { itmPairs, type ItmNegatives, type ItmPairs, type NegativeStrategy, sampleItmNegatives } from '../objectives/itm.js';
import type { Rng } from '../runtime/rng.js';
import { MomentumEncoder } from './momentum.js';
import { FeatureQueue } from './queue.js';
import { itcMomentumTargets } from './targets.js';

/** Queue buffer names, as the reference code names them (and so as their checkpoints store them). */
export const QUEUE_FIELDS = { image: 'image_queue', text: 'text_queue', imageIds: 'idx_queue' } as const;

/** BLIP's `idx_queue` fill: an id no real image has, so old or id-less slots never count as positives. */
export const NO_IMAGE_ID = -100;

export interface MomentumQueueOptions {
  /** Items kept (ALBEF 65,536; BLIP 57,600). */
  size: number;
  /** Feature size of the ITC embeddings. */
  dim: number;
  /** Also queue each item's image id (BLIP's `idx_queue`), so queued captions of a batch image are positives. */
  imageIds?: boolean;
  /** Draws the initial unit-normal columns. */
  rng: Rng;
}

export interface MomentumContrastiveOptions {
  /** (online, twin) module pairs; the model registers both under their checkpoint names. */
  pairs: readonly (readonly [online: Module, twin: Module])[];
  /** EMA decay (ALBEF and BLIP: 0.995). */
  momentum: number;
  /** The feature queue; absent: in-batch momentum candidates only. */
  queue?: MomentumQueueOptions;
}

export interface MomentumItcInput {
  /** [B, E] L2-normalised online features. */
  imageFeat: tf.Tensor;
  textFeat: tf.Tensor;
  /** [B, E] L2-normalised features of the twins (the batch's candidates). */
  imageFeatM: tf.Tensor;
  textFeatM: tf.Tensor;
  /** The learned temperature. */
  temp: tf.Tensor | number;
  /** Distillation weight: targets = alpha·softmax(momentum similarities) + (1−alpha)·hard. 0: hard targets only. */
  alpha: number;
  /** Image id per pair: pairs (and queued items, with an id queue) sharing an image are positives. */
  imageIds?: readonly number[];
  /** Add the queue's columns to the candidates. Default true (when there is a queue). */
  useQueue?: boolean;
}

export interface MomentumItcOutput extends ItcOutput {
  /** Share of images whose most similar candidate text is a positive. */
  accuracy: number;
}

/**
 * EMA twins plus queues, as one object the model keeps next to its modules. It is not itself a
 * Module: the twins and `queue` are registered by the model under its checkpoint names
 * (`visual_encoder_m`, `queue` / `queues`, …), so state-dict keys stay the reference's.
 */
export class MomentumContrastive {
  readonly twins: MomentumEncoder;
  /** Register it in the model (`registerModule(name, block.queue)`); null without a queue. */
  readonly queue: FeatureQueue | null;

  constructor(options: MomentumContrastiveOptions) {
    const q = options.queue;
    if (q && q.size > 0) {
      const fields: Record<string, { dim: number; init?: number; dtype?: 'int32' }> = {
        [QUEUE_FIELDS.image]: { dim: q.dim },
        [QUEUE_FIELDS.text]: { dim: q.dim },
      };
      if (q.imageIds) fields[QUEUE_FIELDS.imageIds] = { dim: 1, init: NO_IMAGE_ID, dtype: 'int32' };
      this.queue = new FeatureQueue({ size: q.size, fields, pointerName: 'queue_ptr', rng: q.rng });
    } else {
      this.queue = null;
    }
    // copy_params(): the twins start equal to the online modules, frozen.
    this.twins = new MomentumEncoder(options.pairs, { momentum: options.momentum });
  }

  get momentum(): number {
    return this.twins.momentum;
  }

  /** One EMA step of every twin (`_momentum_update`); call after each optimizer step. */
  update(): void {
    this.twins.update();
  }

  /** twin ← online (`copy_params`), e.g. after re-drawing the online weights. */
  copyParams(): void {
    this.twins.copyParams();
  }

  /** ITC candidate columns [E, B (+ queue)]: the reference's `cat([feat_m.t(), queue])`. */
  candidates(featM: tf.Tensor, which: 'image' | 'text', useQueue = true): tf.Tensor {
    return tf.tidy(() => {
      const batch = tf.transpose(featM);
      return useQueue && this.queue ? tf.concat([batch, this.queue.get(QUEUE_FIELDS[which])], 1) : batch;
    });
  }

  /**
   * ITC over the momentum candidates (batch twins, then the queue) with soft targets from the
   * twins' similarities. The caller owns the returned tensors.
   */
  itc(input: MomentumItcInput): MomentumItcOutput {
    const useQueue = (input.useQueue ?? true) && this.queue !== null;
    const b = input.imageFeat.shape[0] as number;
    return tf.tidy(() => {
      const imageAll = this.candidates(input.imageFeatM, 'image', useQueue);
      const textAll = this.candidates(input.textFeatM, 'text', useQueue);
      let imageIdsAll: number[] | undefined;
      if (input.imageIds && useQueue && this.queue?.fieldNames.includes(QUEUE_FIELDS.imageIds)) {
        imageIdsAll = [...input.imageIds, ...Array.from(this.queue.get(QUEUE_FIELDS.imageIds).dataSync())];
      }
      // With alpha 0 the mixed targets are the hard ones, so the soft ones are not computed.
      const softTargets =
        input.alpha > 0 ? itcMomentumTargets(input.imageFeatM, input.textFeatM, imageAll, textAll, input.temp) : undefined;
      const out = itcLoss({
        imageFeat: input.imageFeat,
        textFeat: input.textFeat,
        temp: input.temp,
        imageFeatAll: imageAll,
        textFeatAll: textAll,
        imageIds: input.imageIds,
        imageIdsAll,
        softTargets,
        alpha: input.alpha,
      });
      if (out.simI2t.shape[0] !== b)
        throw new VlError('SHAPE_MISMATCH', 'ITC rows differ from the batch', { subject: 'MomentumContrastive.itc' });
      return { ...out, accuracy: itcAccuracy(out.simI2t, out.targets) };
    });
  }

  /** `_dequeue_and_enqueue`: the batch's momentum features (and image ids, or NO_IMAGE_ID) at the pointer. */
  enqueue(imageFeatM: tf.Tensor, textFeatM: tf.Tensor, imageIds?: readonly number[]): void {
    const queue = this.queue;
    if (!queue) return;
    tf.tidy(() => {
      const batch: Record<string, tf.Tensor> = { [QUEUE_FIELDS.image]: imageFeatM, [QUEUE_FIELDS.text]: textFeatM };
      if (queue.fieldNames.includes(QUEUE_FIELDS.imageIds)) {
        const b = imageFeatM.shape[0] as number;
        batch[QUEUE_FIELDS.imageIds] = imageIds ? tf.tensor1d(Array.from(imageIds), 'int32') : tf.fill([b], NO_IMAGE_ID, 'int32');
      }
      queue.enqueue(batch);
    });
  }
}

export interface ItmPairDraw {
  /** [B, N≥B] ITC similarities; required for 'hard' negatives, unused by 'random'. */
  simI2t?: tf.Tensor | null;
  simT2i?: tf.Tensor | null;
  batchSize: number;
  /** Draws the negatives (the reference draws an image per text, then a text per image). */
  rng: Rng;
  imageIds?: readonly number[];
  strategy: NegativeStrategy;
  /** Recorded negatives to reuse instead of drawing (exact replays). */
  replay?: ItmNegatives;
}

/**
 * The 3B ITM pairs: B positives, then (negative image, text b), then (image b, negative text),
 * with negatives drawn ∝ softmax(similarity) ('hard') or uniformly ('random') over non-positives.
 */
export function drawItmPairs(input: ItmPairDraw): { negatives: ItmNegatives; pairs: ItmPairs } {
  let negatives = input.replay;
  if (!negatives) {
    const hard = input.strategy === 'hard';
    if (hard && (!input.simI2t || !input.simT2i)) {
      throw new VlError('INVALID_ARGUMENT', 'hard ITM negatives need the ITC similarities', {
        subject: 'drawItmPairs',
        hint: "pass simI2t/simT2i or use 'random'",
      });
    }
    // Random negatives need no similarity: constant weights are uniform.
    const flat = hard ? null : tf.zeros([input.batchSize, input.batchSize]);
    try {
      negatives = sampleItmNegatives({
        simI2t: (flat ?? input.simI2t) as tf.Tensor,
        simT2i: (flat ?? input.simT2i) as tf.Tensor,
        rng: input.rng,
        imageIds: input.imageIds,
        strategy: input.strategy,
      });
    } finally {
      flat?.dispose();
    }
  }
  return { negatives, pairs: itmPairs(negatives) };
}
