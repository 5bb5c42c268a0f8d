// The pretraining forward of each VLMo stage as `{ loss, losses, metrics }` (core's ForwardResult), after
// microsoft/unilm `vlmo/modules/objectives.py`: stage 1 BEiT's masked image modelling on the image-only
// route (block masking, visual tokens from a pluggable tokenizer); stage 2 `compute_textonly_mlm`
// (`infer_text_mlm`, loss not scaled); stage 3 `compute_itc` (plain and VL-FFN, averaged),
// `compute_itm_hardneg` (one negative image per text and one negative text per image, drawn in
// proportion to softmax of the plain ITC logits, the positive excluded) and `compute_mlm` (fusion
// route, loss × 0.25). Every random draw comes from the step's generator.
import * as tf from '@tensorflow/tfjs-core';
import {
  BlockMaskingGenerator,
  combineLosses,
  drawItmPairs,
  type ForwardResult,
  IGNORE_INDEX,
  itcAccuracy,
  itmLoss,
  logitsAccuracy,
  maskTokens,
  mimLabels,
  mimLoss,
  mlmLoss,
  type ObjectivesConfig,
  type Rng,
  type VisualTokenizer,
  VlError,
} from '@vl/core';
import type { Vlmo } from './model.js';
import { VLMO_STAGES, type VlmoStage } from './stages.js';
import { VLMO_MLM_LOSS_SCALE, vlmoItcLoss } from './verify.js';

/** One training batch on the host: images and one caption each, padded to max_text_len. */
export interface VlmoPretrainBatch {
  /** [B, 3, S, S] normalised as VLMO_IMAGE_NORM. */
  pixels: Float32Array;
  imageSize: number;
  batchSize: number;
  /** [B, L] with L = max_text_len. */
  inputIds: Int32Array;
  attentionMask: Int32Array;
  seqLength: number;
}

export interface VlmoPretrainOptions {
  stage: VlmoStage;
  /** Objective switches and weights (`{ itc: { weight: 0 } }` switches ITC off). */
  objectives?: ObjectivesConfig;
  /** Stage 1: visual tokens of the images (the MIM targets). */
  visualTokenizer?: VisualTokenizer;
  /** Stage 1: patches masked per image; default round(0.4 · patches), BEiT's 75 of 196. */
  maskPatches?: number;
  /** Stage 1: smallest masked block; default min(16, ⌈maskPatches / 4⌉) (BEiT: 16 of 75). */
  minBlockPatches?: number;
}

/** tf.tidy for a ForwardResult (tensors kept, host metrics passed through). */
function tidyResult(fn: () => ForwardResult): ForwardResult {
  return tf.tidy(fn as unknown as () => tf.TensorContainer) as unknown as ForwardResult;
}

/** BEiT-style block masking sized for a grid: ~40% of the patches, blocks of ≥ min(16, ¼ of them). */
export function vlmoMaskingGenerator(
  grid: number,
  options: { maskPatches?: number; minBlockPatches?: number } = {},
): BlockMaskingGenerator {
  const n = grid * grid;
  const maskPatches = options.maskPatches ?? Math.max(1, Math.round(0.4 * n));
  return new BlockMaskingGenerator({
    inputSize: [grid, grid],
    numMaskingPatches: maskPatches,
    minNumPatches: options.minBlockPatches ?? Math.min(16, Math.ceil(maskPatches / 4)),
  });
}

/** The stage's forward over one batch, for core's Trainer. */
export class VlmoPretrainer {
  readonly stage: VlmoStage;
  private readonly masking: BlockMaskingGenerator | null;

  constructor(
    readonly model: Vlmo,
    readonly options: VlmoPretrainOptions,
  ) {
    this.stage = options.stage;
    const need = VLMO_STAGES[this.stage].lossNames;
    const l = model.config.vlmoConfig.lossNames;
    for (const [name, v] of Object.entries(need)) {
      if (!((l[name] ?? 0) > 0)) {
        throw new VlError('CONFIG_INVALID', `stage ${this.stage} needs loss_names.${name} > 0 in the model's config`, {
          subject: 'VlmoPretrainer',
          hint: `build the model from vlmoStageConfig(config, ${this.stage}) (value ${v})`,
        });
      }
    }
    if (this.stage === 1) {
      const tok = options.visualTokenizer;
      if (!tok) throw new VlError('CONFIG_INVALID', 'stage 1 (MIM) needs a visual tokenizer', { subject: 'VlmoPretrainer' });
      if (tok.vocabSize !== model.dims.visualVocabSize) {
        throw new VlError(
          'CONFIG_INVALID',
          `the visual tokenizer has ${tok.vocabSize} codes but the MIM head predicts ${model.dims.visualVocabSize}`,
          { subject: 'VlmoPretrainer', hint: 'set vlmo_config.visual_vocab_size to the tokenizer vocabulary' },
        );
      }
      this.masking = vlmoMaskingGenerator(model.dims.grid, options);
    } else {
      this.masking = null;
    }
  }

  forward(batch: VlmoPretrainBatch, rng: Rng): ForwardResult {
    if (this.stage === 1) return this.forwardMim(batch, rng);
    if (this.stage === 2) return this.forwardTextMlm(batch, rng);
    return this.forwardImageText(batch, rng);
  }

  private pixels(batch: VlmoPretrainBatch): tf.Tensor4D {
    const s = batch.imageSize;
    return tf.tensor4d(batch.pixels, [batch.batchSize, 3, s, s]);
  }

  private text(batch: VlmoPretrainBatch, ids: Int32Array = batch.inputIds): { ids: tf.Tensor2D; mask: tf.Tensor2D } {
    const shape: [number, number] = [batch.batchSize, batch.seqLength];
    return { ids: tf.tensor2d(ids, shape, 'int32'), mask: tf.tensor2d(batch.attentionMask, shape, 'int32') };
  }

  /** BERT masking (mlm_prob) of the batch's texts; at least one position is always selected (tiny batches). */
  maskText(batch: VlmoPretrainBatch, rng: Rng): { inputIds: Int32Array; labels: Int32Array } {
    const t = this.model.config.tokens;
    const specials = [t.pad, t.cls, t.sep, t.mask, t.unk];
    const masked = maskTokens(batch.inputIds, {
      rng,
      vocabSize: this.model.dims.vocabSize,
      maskTokenId: t.mask,
      specialTokenIds: specials,
      attentionMask: batch.attentionMask,
      probability: this.model.config.vlmoConfig.mlmProb,
    });
    if (masked.labels.every((y) => y === IGNORE_INDEX)) {
      const eligible: number[] = [];
      batch.inputIds.forEach((id, i) => {
        if (batch.attentionMask[i] && !specials.includes(id)) eligible.push(i);
      });
      if (eligible.length === 0) {
        throw new VlError('DATA_INVALID', 'no maskable token in the batch (every text is empty)', { subject: 'VLMo MLM' });
      }
      const i = eligible[rng.int(eligible.length)]!;
      masked.labels[i] = batch.inputIds[i]!;
      masked.inputIds[i] = t.mask;
    }
    return masked;
  }

  private forwardMim(batch: VlmoPretrainBatch, rng: Rng): ForwardResult {
    const model = this.model;
    const masking = this.masking as BlockMaskingGenerator;
    const tokenizer = this.options.visualTokenizer as VisualTokenizer;
    const mask = masking.generateBatch(batch.batchSize, rng.fork('mim-mask'));
    return tidyResult(() => {
      const pixels = this.pixels(batch);
      const labels = mimLabels(tokenizer.tokenize(pixels), mask);
      const patchMask = tf.tensor2d(mask, [batch.batchSize, masking.numPatches], 'float32');
      const logits = model.mimLogits(pixels, patchMask, { rng: rng.fork('mim') }); // [B, N, V]
      const flat = tf.reshape(logits, [-1, logits.shape[2] as number]);
      const loss = mimLoss(logits, labels);
      return combineLosses({ mim: loss }, this.options.objectives, { mimAccuracy: logitsAccuracy(flat, labels) });
    });
  }

  private forwardTextMlm(batch: VlmoPretrainBatch, rng: Rng): ForwardResult {
    const model = this.model;
    const masked = this.maskText(batch, rng.fork('mlm-mask'));
    return tidyResult(() => {
      const { ids, mask } = this.text(batch, masked.inputIds);
      const feats = model.encodeText(ids, mask, { vlffn: false, rng: rng.fork('textmlm') }).feats; // infer_text_mlm
      const logits = model.mlmLogits(feats);
      const flat = tf.reshape(logits, [-1, model.dims.vocabSize]);
      return combineLosses({ textmlm: mlmLoss(logits, masked.labels) }, this.options.objectives, {
        textmlmAccuracy: logitsAccuracy(flat, masked.labels),
      });
    });
  }

  private on(name: string): boolean {
    const o = this.options.objectives?.[name];
    return (o?.enabled ?? true) && (o?.weight ?? 1) !== 0;
  }

  private forwardImageText(batch: VlmoPretrainBatch, rng: Rng): ForwardResult {
    const model = this.model;
    const b = batch.batchSize;
    const useItc = this.on('itc');
    const useItm = this.on('itm');
    const useMlm = this.on('mlm');
    const masked = useMlm ? this.maskText(batch, rng.fork('mlm-mask')) : null;
    return tidyResult(() => {
      const pixels = this.pixels(batch);
      const { ids, mask } = this.text(batch);
      const parts: Record<string, tf.Scalar | undefined> = {};
      const metrics: Record<string, number> = {};
      let i2t: tf.Tensor | null = null;
      if (useItc || useItm) {
        // compute_itc: infer_image / infer_text with their VL-FFN branches.
        const img = model.encodeImage(pixels, { rng: rng.fork('itc-image') });
        const txt = model.encodeText(ids, mask, { rng: rng.fork('itc-text') });
        i2t = model.itcLogits(img.clsFeats as tf.Tensor, txt.clsFeats as tf.Tensor); // [B, B], rows = images
        const vl = img.clsVlffnFeats && txt.clsVlffnFeats ? model.itcLogits(img.clsVlffnFeats, txt.clsVlffnFeats, true) : null;
        const targets = tf.eye(b);
        metrics.itcI2tAccuracy = itcAccuracy(i2t, targets);
        metrics.itcT2iAccuracy = itcAccuracy(tf.transpose(i2t), targets);
        metrics.logitScale = model.itcScale().dataSync()[0]!;
        if (useItc) parts.itc = vlmoItcLoss(i2t, vl);
      }
      if (useItm) {
        // compute_itm_hardneg: negatives ∝ softmax(ITC logits) with the diagonal excluded.
        const { pairs } = drawItmPairs({
          simI2t: i2t as tf.Tensor,
          simT2i: tf.transpose(i2t as tf.Tensor),
          batchSize: b,
          rng: rng.fork('itm-negatives'),
          strategy: 'hard',
        });
        const fused = model.fuse(
          tf.gather(pixels, tf.tensor1d(pairs.imageIndex, 'int32')),
          tf.gather(ids, tf.tensor1d(pairs.textIndex, 'int32')),
          tf.gather(mask, tf.tensor1d(pairs.textIndex, 'int32')),
          { rng: rng.fork('itm') },
        );
        const itm = itmLoss(model.itmLogits(fused.clsFeats), pairs.labels);
        parts.itm = itm.loss;
        metrics.itmAccuracy = itm.accuracy;
      }
      if (masked) {
        const mlmIds = tf.tensor2d(masked.inputIds, [b, batch.seqLength], 'int32');
        const logits = model.mlmLogits(model.fuse(pixels, mlmIds, mask, { rng: rng.fork('mlm') }).textFeats);
        parts.mlm = tf.mul(mlmLoss(logits, masked.labels), VLMO_MLM_LOSS_SCALE) as tf.Scalar;
        metrics.mlmAccuracy = logitsAccuracy(tf.reshape(logits, [-1, model.dims.vocabSize]), masked.labels);
      }
      return combineLosses(parts, this.options.objectives, metrics);
    });
  }
}
