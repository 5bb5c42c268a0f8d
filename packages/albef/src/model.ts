// ALBEF (Li et al. 2021, "Align before Fuse"), ported from salesforce/ALBEF `models/model_pretrain.py`
// (class ALBEF), `models/xbert.py` (BertForMaskedLM with text/fusion modes) and `models/vit.py`
// (timm ViT). Module names copy the official state dict: `visual_encoder.*`, `vision_proj`,
// `text_encoder.bert.*`, `text_encoder.cls.predictions.*`, `text_proj`, `itm_head`, `temp`, the
// `*_m` momentum twins; the queues live in a FeatureQueue registered as `queue` (checkpoint.ts maps
// `queue.image_queue` ↔ `image_queue`, and the tied MLM decoder, to the official keys).
import * as tf from '@tensorflow/tfjs-core';
import {
  clampTemperature,
  combineLosses,
  Container,
  distillAlpha,
  drawItmPairs,
  ensureRuntime,
  type FeatureQueue,
  firstToken,
  type ForwardResult,
  initTemperature,
  itmLoss,
  type ItmPairs,
  l2Normalize,
  Linear,
  maskTokens,
  mlmDistillLoss,
  mlmLoss,
  type MlmMasked,
  Module,
  MomentumContrastive,
  type NegativeStrategy,
  objectiveEnabled,
  type ObjectivesConfig,
  ProjectionHead,
  redrawWeights,
  Rng,
  TextTransformer,
  TIMM_VIT_NAMES,
  VisionTransformer,
  VlError,
  BertPredictionHeadTransform,
  linear,
} from '@vl/core';
import type { AlbefBertConfig, AlbefConfig, AlbefVisionConfig } from './config.js';

// ---------------------------------------------------------------------------------------------
// Pieces

/** `models/vit.py` VisionTransformer under timm names (patch_embed.proj, cls_token, pos_embed, blocks.N, norm). */
export function albefVisionEncoder(config: AlbefVisionConfig, rng: Rng): VisionTransformer {
  return new VisionTransformer(
    {
      imageSize: config.imgSize,
      patchSize: config.patchSize,
      hiddenSize: config.embedDim,
      numLayers: config.depth,
      numHeads: config.numHeads,
      intermediateSize: Math.round(config.embedDim * config.mlpRatio),
      layerNormEps: 1e-6, // vit.py: partial(nn.LayerNorm, eps=1e-6)
      activation: 'gelu', // nn.GELU, exact erf
      qkvLayout: 'fused',
      dropPathRate: config.dropPathRate,
      names: TIMM_VIT_NAMES,
    },
    rng,
  );
}

/**
 * `cls.predictions` of xbert's BertForMaskedLM: transform (dense, gelu, LayerNorm), then logits
 * with the decoder weight **tied to the word embeddings** and the `bias`. Keys: transform.*, bias.
 * The official file also stores `decoder.weight` and `decoder.bias` (same bytes as the tied
 * tensors); checkpoint.ts drops and restores them.
 */
export class AlbefLmHead extends Module {
  readonly transform: BertPredictionHeadTransform;
  readonly bias: tf.Variable;

  constructor(
    config: AlbefBertConfig,
    private readonly wordEmbeddings: () => tf.Variable,
    rng: Rng,
  ) {
    super();
    this.transform = this.registerModule('transform', new BertPredictionHeadTransform(config.hiddenSize, 'gelu', config.layerNormEps, rng));
    this.bias = this.registerParameter('bias', tf.zeros([config.vocabSize]));
  }

  /** [..., D] → [..., V] */
  forward(h: tf.Tensor): tf.Tensor {
    return tf.tidy(() => linear(this.transform.forward(h), this.wordEmbeddings(), this.bias));
  }
}

/** xbert BertForMaskedLM: `bert` (text layers [0, fusion_layer), fusion layers with cross-attention) + `cls.predictions`. */
export class AlbefTextEncoder extends Module {
  readonly bert: TextTransformer;
  readonly lmHead: AlbefLmHead;

  constructor(config: AlbefBertConfig, rng: Rng) {
    super();
    this.bert = this.registerModule(
      'bert',
      new TextTransformer({ ...config, hiddenAct: 'gelu', encoderHiddenSize: config.encoderWidth }, rng, {
        crossAttentionFrom: config.fusionLayer,
      }),
    );
    const cls = this.registerModule('cls', new Container());
    const words = this.bert.embeddings;
    if (!words) throw new VlError('CONFIG_INVALID', 'ALBEF text encoder needs embeddings', { subject: 'AlbefTextEncoder' });
    this.lmHead = cls.registerModule('predictions', new AlbefLmHead(config, () => words.word_embeddings.weight, rng));
  }
}

// ---------------------------------------------------------------------------------------------
// Pretraining switches

/** What a pretraining forward computes; each switch is an ablation axis (ALBEF Table 1). */
export interface AlbefPretrainOptions {
  /** `itc`, `itm`, `mlm`: on/off and weight (absent: on, weight 1). */
  objectives?: ObjectivesConfig;
  /** ITM negatives: 'hard' (∝ softmax of the ITC similarity, the paper) or 'random' (uniform). Default 'hard'. */
  negatives?: NegativeStrategy;
  /**
   * With 'hard': optimizer steps at the start that draw random negatives before mining starts (default 0 = the
   * paper; BLIP's option of the same name). From scratch the ITM head sits at the class prior until the fusion
   * path tells pairs apart at all; mined negatives, near-duplicates of the positive once ITC has learned, give
   * it nothing it can use yet (docs/training.md, "Why ITM did not learn"). Needs `ctx.step` in `forward`.
   */
  randomNegativesSteps?: number;
  /** Momentum distillation (ITC soft targets and MLM soft labels from the *_m twins). Default true. */
  distill?: boolean;
  /** Use the queue's momentum features as extra ITC candidates (needs albefConfig.queueSize > 0). Default true. */
  useQueue?: boolean;
}

/** Images on the host: [B, 3, H, W] normalised pixels, row-major. */
export interface HostImages {
  data: Float32Array;
  shape: [number, number, number, number];
}

export interface AlbefBatch {
  /** [B, 3, H, W] normalised pixels, as a tensor (the caller owns it) or host data (made and freed per forward). */
  pixels: tf.Tensor | HostImages;
  /** [B, T] host token ids. */
  inputIds: Int32Array;
  /** [B, T] 1 token / 0 padding. */
  attentionMask: Int32Array;
  seqLength: number;
  /** Image id per pair: pairs sharing an image are not each other's negatives. */
  imageIds?: number[];
}

export interface AlbefStepContext {
  rng: Rng;
  /** Distillation weight for this step (Trainer ramps it); default albefConfig.alpha. */
  alpha?: number;
  /** 0-based optimizer step (the Trainer passes it): picks random or mined ITM negatives (`randomNegativesSteps`). Absent: mining. */
  step?: number;
}

/** Draws the pretraining forward makes; pass them back (`replay`) to reproduce a call exactly. */
export interface AlbefDraws {
  negatives?: { imageForText: Int32Array; textForImage: Int32Array };
  mlm?: MlmMasked;
}

// ---------------------------------------------------------------------------------------------
// The model

export class Albef extends Module {
  readonly config: AlbefConfig;
  readonly visual_encoder: VisionTransformer;
  readonly vision_proj: ProjectionHead;
  readonly text_encoder: AlbefTextEncoder;
  readonly text_proj: ProjectionHead;
  readonly itm_head: Linear;
  readonly temp: tf.Variable;
  readonly visual_encoder_m: VisionTransformer;
  readonly vision_proj_m: ProjectionHead;
  readonly text_encoder_m: AlbefTextEncoder;
  readonly text_proj_m: ProjectionHead;
  /** `image_queue`, `text_queue` [embed_dim, queue_size] and `queue_ptr`; null when albefConfig.queueSize is 0. */
  readonly queue: FeatureQueue | null;
  /** The momentum twins (EMA), the queue, ITC against momentum candidates, ITM pairs. */
  readonly contrastive: MomentumContrastive;
  /** The forward's switches; change them between steps for ablations. */
  options: AlbefPretrainOptions;

  constructor(config: AlbefConfig, rng = new Rng(0), options: AlbefPretrainOptions = {}) {
    super();
    // Not awaited (a constructor cannot): starts the default runtime when the application chose none.
    void ensureRuntime();
    this.config = config;
    this.options = options;
    const { albefConfig: a, bertConfig: b, visionConfig: v } = config;
    this.visual_encoder = this.registerModule('visual_encoder', albefVisionEncoder(v, rng));
    this.text_encoder = this.registerModule('text_encoder', new AlbefTextEncoder(b, rng));
    this.vision_proj = this.registerModule('vision_proj', new ProjectionHead(a.visionWidth, a.embedDim, rng));
    this.text_proj = this.registerModule('text_proj', new ProjectionHead(b.hiddenSize, a.embedDim, rng));
    this.itm_head = this.registerModule('itm_head', new Linear(b.hiddenSize, 2, rng));
    this.temp = this.registerParameter('temp', initTemperature(a.temp));
    this.visual_encoder_m = this.registerModule('visual_encoder_m', albefVisionEncoder(v, rng));
    this.vision_proj_m = this.registerModule('vision_proj_m', new ProjectionHead(a.visionWidth, a.embedDim, rng));
    this.text_encoder_m = this.registerModule('text_encoder_m', new AlbefTextEncoder(b, rng));
    this.text_proj_m = this.registerModule('text_proj_m', new ProjectionHead(b.hiddenSize, a.embedDim, rng));
    // copy_params(): twins start equal to the online modules and are frozen; the queue starts as unit-normal columns.
    this.contrastive = new MomentumContrastive({
      pairs: [
        [this.visual_encoder, this.visual_encoder_m],
        [this.vision_proj, this.vision_proj_m],
        [this.text_encoder, this.text_encoder_m],
        [this.text_proj, this.text_proj_m],
      ],
      momentum: a.momentum,
      queue: a.queueSize > 0 ? { size: a.queueSize, dim: a.embedDim, rng } : undefined,
    });
    this.queue = this.contrastive.queue ? this.registerModule('queue', this.contrastive.queue) : null;
  }

  // --- encoders (each returns new tensors the caller owns) -----------------------------------

  /** `visual_encoder(image)` → image_embeds [B, 1 + N, D]. */
  encodeImage(pixels: tf.Tensor, options: { momentum?: boolean; rng?: Rng } = {}): tf.Tensor {
    const encoder = options.momentum ? this.visual_encoder_m : this.visual_encoder;
    return encoder.forward(pixels, { rng: options.rng }).lastHiddenState;
  }

  /** normalize(vision_proj(image_embeds[:, 0])) → [B, embed_dim]. */
  imageFeat(imageEmbeds: tf.Tensor, options: { momentum?: boolean } = {}): tf.Tensor {
    return tf.tidy(() => l2Normalize((options.momentum ? this.vision_proj_m : this.vision_proj).forward(firstToken(imageEmbeds))));
  }

  /** `text_encoder.bert(ids, mask, mode='text')` → text_embeds [B, T, D] (layers [0, fusion_layer)). */
  encodeText(inputIds: tf.Tensor, attentionMask: tf.Tensor, options: { momentum?: boolean; rng?: Rng } = {}): tf.Tensor {
    const bert = (options.momentum ? this.text_encoder_m : this.text_encoder).bert;
    return bert.forward({ inputIds, attentionMask, layers: bert.textLayers(), rng: options.rng }).lastHiddenState;
  }

  /** normalize(text_proj(text_embeds[:, 0])) → [B, embed_dim]. */
  textFeat(textEmbeds: tf.Tensor, options: { momentum?: boolean } = {}): tf.Tensor {
    return tf.tidy(() => l2Normalize((options.momentum ? this.text_proj_m : this.text_proj).forward(firstToken(textEmbeds))));
  }

  /** `text_encoder.bert(encoder_embeds=text_embeds, …, encoder_hidden_states=image_embeds, mode='fusion')` → [B, T, D]. */
  fuse(textEmbeds: tf.Tensor, attentionMask: tf.Tensor, imageEmbeds: tf.Tensor, rng?: Rng): tf.Tensor {
    const bert = this.text_encoder.bert;
    // encoder_attention_mask is all ones in ALBEF: no cross mask.
    return bert.forward({ hiddenStates: textEmbeds, attentionMask, encoderHiddenStates: imageEmbeds, layers: bert.fusionLayers(), rng })
      .lastHiddenState;
  }

  /** itm_head(fused[:, 0]) → [B, 2] (class 1 = match). */
  itmLogits(fused: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.itm_head.forward(firstToken(fused)));
  }

  /** The 3B ITM logits for ALBEF's layout (positives, then (negative image, text), then (image, negative text)). */
  itmLogitsForPairs(textEmbeds: tf.Tensor, attentionMask: tf.Tensor, imageEmbeds: tf.Tensor, pairs: ItmPairs, rng?: Rng): tf.Tensor {
    return tf.tidy(() => {
      const img = tf.gather(imageEmbeds, tf.tensor1d(pairs.imageIndex, 'int32')); // [3B, N, Dv]
      const txtIdx = tf.tensor1d(pairs.textIndex, 'int32');
      const fused = this.fuse(tf.gather(textEmbeds, txtIdx), tf.gather(attentionMask, txtIdx), img, rng); // [3B, T, D]
      return this.itmLogits(fused);
    });
  }

  /** `text_encoder(ids, mask, encoder_hidden_states=image_embeds)` in 'multi_modal' mode: all layers, then cls.predictions → [B, T, V]. */
  mlmLogits(
    inputIds: tf.Tensor,
    attentionMask: tf.Tensor,
    imageEmbeds: tf.Tensor,
    options: { momentum?: boolean; rng?: Rng } = {},
  ): tf.Tensor {
    const enc = options.momentum ? this.text_encoder_m : this.text_encoder;
    return tf.tidy(() => {
      const h = enc.bert.forward({ inputIds, attentionMask, encoderHiddenStates: imageEmbeds, rng: options.rng }).lastHiddenState;
      return enc.lmHead.forward(h);
    });
  }

  /** ITC candidate columns [embed_dim, B (+ queue)]: ALBEF's cat([feat_m.t(), queue]). */
  candidates(featM: tf.Tensor, field: 'image_queue' | 'text_queue', useQueue: boolean): tf.Tensor {
    return this.contrastive.candidates(featM, field === 'image_queue' ? 'image' : 'text', useQueue);
  }

  /** MLM masking of a batch (ALBEF `mask()`: 15%, 80/10/10; CLS, SEP, PAD never masked). */
  maskText(inputIds: Int32Array, attentionMask: Int32Array, rng: Rng): MlmMasked {
    const { tokens, bertConfig: b, albefConfig: a } = this.config;
    return maskTokens(inputIds, {
      rng,
      vocabSize: b.vocabSize,
      maskTokenId: tokens.mask,
      specialTokenIds: [tokens.pad, tokens.cls, tokens.sep, tokens.mask],
      attentionMask,
      probability: a.mlmProbability,
    });
  }

  // --- training -------------------------------------------------------------------------------

  /** The ITM negatives drawn at an optimizer step: random during `randomNegativesSteps`, then `negatives`. */
  negativesAt(step: number): NegativeStrategy {
    const { negatives = 'hard', randomNegativesSteps = 0 } = this.options;
    if (!Number.isInteger(randomNegativesSteps) || randomNegativesSteps < 0) {
      throw new VlError('CONFIG_INVALID', `randomNegativesSteps must be an integer ≥ 0, got ${randomNegativesSteps}`, {
        subject: 'ALBEF pretraining options',
      });
    }
    return negatives === 'hard' && step >= randomNegativesSteps ? 'hard' : 'random';
  }

  /** What ALBEF does under no_grad at the start of each forward; call after each optimizer step. */
  afterStep(): void {
    clampTemperature(this.temp);
    this.contrastive.update();
  }

  /**
   * One pretraining forward (`ALBEF.forward(image, text, alpha)`): ITC with momentum features,
   * queue and soft targets; ITM on positives and mined negatives; MLM conditioned on the image
   * with distilled soft labels; then the queue update. Disabled objectives skip their work.
   * `replay` reuses recorded draws (negatives, MLM masking) instead of drawing.
   */
  forward(batch: AlbefBatch, ctx: AlbefStepContext, replay: AlbefDraws = {}): ForwardResult & { draws: AlbefDraws } {
    const opts = this.options;
    const objectives = opts.objectives;
    const doItc = objectiveEnabled(objectives, 'itc');
    const doItm = objectiveEnabled(objectives, 'itm');
    const doMlm = objectiveEnabled(objectives, 'mlm');
    const distill = opts.distill ?? true;
    const useQueue = (opts.useQueue ?? true) && this.queue !== null;
    const negatives = this.negativesAt(ctx.step ?? Infinity);
    const alpha = distill ? (ctx.alpha ?? this.config.albefConfig.alpha) : 0;
    const b = batch.pixels.shape[0];
    const t = batch.seqLength;
    const metrics: Record<string, number> = { alpha };
    const draws: AlbefDraws = {};
    const training = this.training;
    const dropRng = training ? ctx.rng.fork('dropout') : undefined;

    const parts = tf.tidy(() => {
      const pixels = batch.pixels instanceof tf.Tensor ? batch.pixels : tf.tensor4d(batch.pixels.data, batch.pixels.shape);
      const ids = tf.tensor2d(batch.inputIds, [b, t], 'int32');
      const mask = tf.tensor2d(batch.attentionMask, [b, t], 'int32');
      const imageEmbeds = this.encodeImage(pixels, { rng: dropRng?.fork('vision') });
      const out: Record<string, tf.Scalar | undefined> = {};
      let textEmbeds: tf.Tensor | null = null;
      let imageEmbedsM: tf.Tensor | null = null;
      const needSims = doItc || (doItm && negatives === 'hard');
      let simI2t: tf.Tensor | null = null;
      let simT2i: tf.Tensor | null = null;
      let imageFeatM: tf.Tensor | null = null;
      let textFeatM: tf.Tensor | null = null;
      if (doItc || doItm) textEmbeds = this.encodeText(ids, mask, { rng: dropRng?.fork('text') });
      if (needSims && textEmbeds) {
        const imageFeat = this.imageFeat(imageEmbeds);
        const textFeat = this.textFeat(textEmbeds);
        // Momentum features (frozen twins: no gradient reaches them).
        imageEmbedsM = this.encodeImage(pixels, { momentum: true, rng: dropRng?.fork('vision_m') });
        imageFeatM = this.imageFeat(imageEmbedsM, { momentum: true });
        textFeatM = this.textFeat(this.encodeText(ids, mask, { momentum: true, rng: dropRng?.fork('text_m') }), { momentum: true });
        const itc = this.contrastive.itc({
          imageFeat,
          textFeat,
          imageFeatM,
          textFeatM,
          temp: this.temp,
          alpha,
          imageIds: batch.imageIds,
          useQueue,
        });
        simI2t = itc.simI2t;
        simT2i = itc.simT2i;
        if (doItc) {
          out.itc = itc.loss;
          metrics.itcAcc = itc.accuracy;
        }
      }
      if (doItm && textEmbeds) {
        const { negatives: neg, pairs } = drawItmPairs({
          simI2t,
          simT2i,
          batchSize: b,
          rng: ctx.rng.fork('itm'),
          imageIds: batch.imageIds,
          strategy: negatives,
          replay: replay.negatives,
        });
        draws.negatives = neg;
        const logits = this.itmLogitsForPairs(textEmbeds, mask, imageEmbeds, pairs, dropRng?.fork('fusion'));
        const itm = itmLoss(logits, pairs.labels);
        out.itm = itm.loss;
        metrics.itmAcc = itm.accuracy;
        // 1 when this step's negatives were mined, 0 when drawn uniformly (the random-negative warm-up shows in the log).
        metrics.itmHardNegatives = negatives === 'hard' ? 1 : 0;
      }
      if (doMlm) {
        const masked = replay.mlm ?? this.maskText(batch.inputIds, batch.attentionMask, ctx.rng.fork('mlm'));
        draws.mlm = masked;
        const mlmIds = tf.tensor2d(masked.inputIds, [b, t], 'int32');
        const v = this.config.bertConfig.vocabSize;
        const logits = tf.reshape(this.mlmLogits(mlmIds, mask, imageEmbeds, { rng: dropRng?.fork('mlm') }), [-1, v]);
        if (alpha > 0) {
          const imgM = imageEmbedsM ?? this.encodeImage(pixels, { momentum: true, rng: dropRng?.fork('vision_m') });
          const logitsM = tf.reshape(this.mlmLogits(mlmIds, mask, imgM, { momentum: true, rng: dropRng?.fork('mlm_m') }), [-1, v]);
          out.mlm = mlmDistillLoss(logits, logitsM, masked.labels, alpha);
        } else {
          out.mlm = mlmLoss(logits, masked.labels);
        }
      }
      if (useQueue && imageFeatM && textFeatM) this.contrastive.enqueue(imageFeatM, textFeatM);
      return out;
    });
    metrics.temp = this.temp.dataSync()[0]!;
    return { ...combineLosses(parts, objectives, metrics), draws };
  }

  /** A pretraining step's alpha: ALBEF ramps it linearly over the first epoch. */
  alphaAt(step: number, stepsPerEpoch: number): number {
    return distillAlpha(step, stepsPerEpoch, this.config.albefConfig.alpha);
  }
}

/**
 * Re-draws the online weights for training from scratch at small width and copies them into the
 * twins: every matrix (Linear, Embedding, patch projection, position and class embeddings) from
 * N(0, std²) truncated at 2·std, biases 0, LayerNorm weight 1 / bias 0. BERT's 0.02 is sized for
 * width 768; at width 32 it leaves the attention path ~1e-4 of the residual and a from-scratch
 * tiny model does not learn within a few hundred steps. std ≈ 0.02·√(768 / width) keeps BERT's
 * per-unit scale. Not used when loading checkpoints.
 */
export function reinitAlbef(model: Albef, std: number, rng: Rng): void {
  redrawWeights(model, std, rng, { keep: ['temp'] });
  model.contrastive.copyParams();
}
