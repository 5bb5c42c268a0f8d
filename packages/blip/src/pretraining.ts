// BLIP pretraining (salesforce/BLIP `models/blip_pretrain.py`): ITC with momentum distillation
// and feature queues, ITM on the image-grounded encoder with hard negatives mined from the ITC
// similarities, and LM on the causal image-grounded decoder, which shares every weight with the
// text encoder except its self-attention layers (the paper's MED sharing). Every part is switched
// by `BlipPretrainingOptions`. Sub-trees use the Hugging Face names, so `toConditionalGeneration()`
// and `toRetrieval()` hand out HF-layout models; the twins add `_m` (`vision_model_m`, …) and the
// queues live under `queues.*`, as in the reference's `*_m` and `image_queue`/`text_queue`/`idx_queue`.
import * as tf from '@tensorflow/tfjs-core';
import {
  BertAttention,
  type BertLMPredictionHead,
  type BertTokenizer,
  clampTemperature,
  combineLosses,
  Container,
  drawItmPairs,
  ensureRuntime,
  extendedAttentionMask,
  type FeatureQueue,
  firstToken,
  type ForwardResult,
  initTemperature,
  itcAccuracy,
  itcLoss,
  itmLoss,
  l2Normalize,
  Linear,
  lmLabels,
  lmLoss,
  Module,
  type ModuleList,
  MomentumContrastive,
  type MomentumItcOutput,
  objectiveEnabled,
  type ObjectivesConfig,
  Rng,
  snakeKey,
  type TextTransformer,
  type VisionTransformer,
  VlError,
  validateConfig,
} from '@vl/core';
import { z } from 'zod';
import { applyBlipCheckpoint, readBlipCheckpoint, saveBlipFolder } from './checkpoint.js';
import type { BlipConfig, BlipTextConfig } from './config.js';
import {
  BlipForConditionalGeneration,
  BlipForImageTextRetrieval,
  BlipTextLMHeadModel,
  blipTextModel,
  blipVisionModel,
  initBlipWeights,
  registerLmHead,
  textTransformerConfig,
} from './modeling.js';
import { loadTokenizerFrom } from './processor.js';

/** What is switched on, and the paper's values (BLIP §3.2, `configs/pretrain.yaml`). */
export interface BlipPretrainingOptions {
  /** itc / itm / lm: `{ enabled, weight }`; absent = on with weight 1 (BLIP sums the three). */
  objectives: ObjectivesConfig;
  /** Momentum twins + soft ITC targets (ALBEF's distillation, which BLIP keeps for ITC). */
  momentumDistillation: boolean;
  /** EMA decay of the twins. */
  momentum: number;
  /** Queue of momentum features as extra ITC negatives; needs momentumDistillation. 57,600 in the paper. */
  queueSize: number;
  useQueue: boolean;
  /** ITM negatives: 'hard' ∝ softmax(ITC similarity) (paper), 'random' uniform (ablation). */
  negatives: 'hard' | 'random';
  /**
   * With 'hard': optimizer steps at the start that draw random negatives before mining starts (0 = the paper).
   * From scratch the ITM head sits at the class prior until the fusion path tells pairs apart at all; hard
   * negatives, near-duplicates of the positive once ITC has learned, give it nothing it can use yet
   * (docs/training.md, "Why ITM did not learn").
   */
  randomNegativesSteps: number;
  /** Decoder shares all but self-attention with the encoder (paper); false gives it its own weights. */
  shareDecoder: boolean;
  /** Initial ITC temperature (learned, clamped to [0.001, 0.5]). */
  temp: number;
  /** LM label smoothing. */
  labelSmoothing: number;
}

const objectiveSchema = z.object({ enabled: z.boolean().optional(), weight: z.number().min(0).optional() }).strict();

export const pretrainingOptionsSchema = z
  .object({
    objectives: z
      .object({ itc: objectiveSchema.optional(), itm: objectiveSchema.optional(), lm: objectiveSchema.optional() })
      .strict()
      .default({}),
    momentumDistillation: z.boolean().default(true),
    momentum: z.number().min(0).max(1).default(0.995),
    queueSize: z.number().int().positive().default(57600),
    useQueue: z.boolean().default(true),
    negatives: z.enum(['hard', 'random']).default('hard'),
    randomNegativesSteps: z.number().int().min(0).default(0),
    shareDecoder: z.boolean().default(true),
    temp: z.number().positive().default(0.07),
    labelSmoothing: z.number().min(0).max(1).default(0.1),
  })
  .strict();

/** Validates camelCase options; `keyName` spells error paths as the source does (snakeKey inside a config.json). */
export function parsePretrainingOptions(
  value: unknown,
  subject = 'pretraining options',
  keyName?: (key: string) => string,
): BlipPretrainingOptions {
  const o = validateConfig(value ?? {}, pretrainingOptionsSchema, subject, keyName) as BlipPretrainingOptions;
  if (o.useQueue && !o.momentumDistillation) {
    throw new VlError('CONFIG_INVALID', 'useQueue needs momentumDistillation (the queue holds momentum features)', {
      subject,
      hint: 'set useQueue: false',
    });
  }
  return o;
}

/** One training batch on the host: pixels [B,3,H,W], caption ids [B,T] starting with [CLS]. */
export interface PretrainBatch {
  pixels: Float32Array;
  imageSize: number;
  inputIds: Int32Array;
  attentionMask: Int32Array;
  batchSize: number;
  seqLength: number;
  /** Optional image ids: captions of one image are positives of each other in ITC and never ITM negatives. */
  imageIds?: number[];
}

/** Self-attention only: the decoder's own part of each layer under the shared-MED scheme. */
class DecoderSelfLayer extends Module {
  readonly attention: BertAttention;

  constructor(cfg: BlipTextConfig, rng: Rng) {
    super();
    this.attention = this.registerModule('attention', new BertAttention(textTransformerConfig(cfg), rng));
  }
}

/**
 * `text_decoder` when shared: registers `bert.encoder.layer.N.attention.*` and `cls.predictions.*`;
 * embeddings, cross-attention and feed-forward are the text encoder's (not registered twice).
 */
export class SharedTextDecoder extends Module {
  readonly layers: ModuleList<DecoderSelfLayer>;
  readonly predictions: BertLMPredictionHead;

  constructor(
    cfg: BlipTextConfig,
    readonly encoder: TextTransformer,
    rng: Rng,
  ) {
    super();
    const bert = this.registerModule('bert', new Container());
    const enc = bert.registerModule('encoder', new Container());
    this.layers = enc.registerModuleList(
      'layer',
      Array.from({ length: cfg.numHiddenLayers }, () => new DecoderSelfLayer(cfg, rng)),
    );
    this.predictions = registerLmHead(this, cfg, rng);
  }

  /** Teacher-forced logits [B, T, V]: causal self-attention (own), cross-attention and FFN (shared). */
  forward(inputs: { inputIds: tf.Tensor; attentionMask?: tf.Tensor | null; encoderHiddenStates: tf.Tensor; rng?: Rng }): tf.Tensor {
    return tf.tidy(() => {
      const emb = this.encoder.embeddings;
      if (!emb) throw new VlError('INVALID_ARGUMENT', 'the shared text encoder has no embeddings');
      let h = emb.forward({ inputIds: inputs.inputIds, rng: inputs.rng }); // [B, T, D]
      const t = h.shape[1] as number;
      const selfMask = extendedAttentionMask({ attentionMask: inputs.attentionMask ?? null, causal: true, queryLength: t, keyLength: t });
      for (let i = 0; i < this.layers.length; i++) {
        const shared = this.encoder.layer.at(i);
        const a = this.layers.at(i).attention.forward(h, { mask: selfMask, rng: inputs.rng }).output;
        const cross = shared.crossattention;
        if (!cross) throw new VlError('INVALID_ARGUMENT', `encoder layer ${i} has no cross-attention to share`);
        const c = cross.forward(a, { context: inputs.encoderHiddenStates, rng: inputs.rng }).output;
        h = shared.output.forward(shared.intermediate.forward(c), c, inputs.rng);
      }
      return this.predictions.forward(h);
    });
  }
}

/** Replaces column 0 of host ids [B, T] (BLIP: [ENC] for ITM, [DEC] for LM). */
function withFirstToken(ids: Int32Array, seqLength: number, token: number): Int32Array {
  const out = Int32Array.from(ids);
  for (let r = 0; r < out.length; r += seqLength) out[r] = token;
  return out;
}

export class BlipForPretraining extends Module {
  readonly config: BlipConfig;
  readonly options: BlipPretrainingOptions;
  readonly vision_model: VisionTransformer;
  readonly text_encoder: TextTransformer;
  readonly text_decoder: SharedTextDecoder | BlipTextLMHeadModel;
  readonly vision_proj: Linear;
  readonly text_proj: Linear;
  readonly itm_head: Linear;
  readonly temp: tf.Variable;
  readonly vision_model_m: VisionTransformer | null = null;
  readonly vision_proj_m: Linear | null = null;
  readonly text_encoder_m: TextTransformer | null = null;
  readonly text_proj_m: Linear | null = null;
  readonly queues: FeatureQueue | null = null;
  /** Twins (EMA), queues, momentum ITC and ITM pairs; null without momentum distillation. */
  readonly contrastive: MomentumContrastive | null = null;
  /** [ENC] id for ITM inputs (defaults to [CLS] = what the caption starts with when absent). */
  encTokenId: number | null;
  tokenizer: BertTokenizer | null = null;
  tokenizerDir: string | null = null;

  constructor(config: BlipConfig, options: Partial<BlipPretrainingOptions> = {}, rng: Rng = new Rng(0), encTokenId: number | null = null) {
    super();
    this.config = config;
    this.options = parsePretrainingOptions(options);
    this.encTokenId = encTokenId;
    const v = config.visionConfig;
    const t = config.textConfig;
    const e = config.imageTextHiddenSize;
    this.vision_model = this.registerModule('vision_model', blipVisionModel(v, rng));
    this.text_encoder = this.registerModule('text_encoder', blipTextModel(t, rng, { causal: false }));
    this.text_decoder = this.registerModule(
      'text_decoder',
      this.options.shareDecoder ? new SharedTextDecoder(t, this.text_encoder, rng) : new BlipTextLMHeadModel(t, rng),
    );
    this.vision_proj = this.registerModule('vision_proj', new Linear(v.hiddenSize, e, rng));
    this.text_proj = this.registerModule('text_proj', new Linear(t.hiddenSize, e, rng));
    this.itm_head = this.registerModule('itm_head', new Linear(t.hiddenSize, 2, rng));
    this.temp = this.registerParameter('temp', initTemperature(this.options.temp));
    initBlipWeights(this, config.initializerRange, rng.fork('init-weights'));
    if (this.options.momentumDistillation) {
      this.vision_model_m = this.registerModule('vision_model_m', blipVisionModel(v, rng));
      this.vision_proj_m = this.registerModule('vision_proj_m', new Linear(v.hiddenSize, e, rng));
      this.text_encoder_m = this.registerModule('text_encoder_m', blipTextModel(t, rng, { causal: false }));
      this.text_proj_m = this.registerModule('text_proj_m', new Linear(t.hiddenSize, e, rng));
      this.contrastive = new MomentumContrastive({
        pairs: [
          [this.vision_model, this.vision_model_m],
          [this.vision_proj, this.vision_proj_m],
          [this.text_encoder, this.text_encoder_m],
          [this.text_proj, this.text_proj_m],
        ],
        momentum: this.options.momentum,
        queue: this.options.useQueue ? { size: this.options.queueSize, dim: e, imageIds: true, rng: rng.fork('queues') } : undefined,
      });
      if (this.contrastive.queue) this.queues = this.registerModule('queues', this.contrastive.queue);
    }
  }

  /** Trainer `afterStep`: clamp the temperature and take one EMA step, outside the gradient tape. */
  afterStep(): void {
    clampTemperature(this.temp);
    this.contrastive?.update();
  }

  /** The ITM negatives drawn at an optimizer step: random during `randomNegativesSteps`, then `negatives`. */
  negativesAt(step: number): 'hard' | 'random' {
    return this.options.negatives === 'hard' && step >= this.options.randomNegativesSteps ? 'hard' : 'random';
  }

  enabled(name: 'itc' | 'itm' | 'lm'): boolean {
    return objectiveEnabled(this.options.objectives, name);
  }

  /** One pretraining forward: `{ loss, losses: { itc, itm, lm }, metrics }` (see docs/training.md). */
  forward(batch: PretrainBatch, ctx: { rng: Rng; alpha: number; step?: number }): ForwardResult {
    const metrics: Record<string, number> = {};
    const b = batch.batchSize;
    const t = batch.seqLength;
    const s = batch.imageSize;
    const txt = this.config.textConfig;
    const parts = tf.tidy(() => {
      const out: Record<string, tf.Scalar | undefined> = {};
      const pixels = tf.tensor4d(batch.pixels, [b, 3, s, s]);
      const ids = tf.tensor2d(batch.inputIds, [b, t], 'int32');
      const mask = tf.tensor2d(batch.attentionMask, [b, t], 'int32');
      const image = this.vision_model.forward(pixels, { rng: ctx.rng.fork('vision') }).lastHiddenState; // [B, 1+N, D]
      let simI2t: tf.Tensor | null = null;
      let simT2i: tf.Tensor | null = null;
      const itmOn = this.enabled('itm');
      if (this.enabled('itc') || (itmOn && this.options.negatives === 'hard')) {
        const textH = this.text_encoder.forward({ inputIds: ids, attentionMask: mask, rng: ctx.rng.fork('text') }).lastHiddenState;
        const imageFeat = l2Normalize(this.vision_proj.forward(firstToken(image))); // [B, E]
        const textFeat = l2Normalize(this.text_proj.forward(firstToken(textH))); // [B, E]
        let itc: MomentumItcOutput;
        if (this.contrastive && this.vision_model_m && this.vision_proj_m && this.text_encoder_m && this.text_proj_m) {
          const imageFeatM = l2Normalize(this.vision_proj_m.forward(firstToken(this.vision_model_m.forward(pixels).lastHiddenState)));
          const textHiddenM = this.text_encoder_m.forward({ inputIds: ids, attentionMask: mask }).lastHiddenState;
          const textFeatM = l2Normalize(this.text_proj_m.forward(firstToken(textHiddenM)));
          itc = this.contrastive.itc({
            imageFeat,
            textFeat,
            imageFeatM,
            textFeatM,
            temp: this.temp,
            alpha: ctx.alpha,
            imageIds: batch.imageIds,
          });
          this.contrastive.enqueue(imageFeatM, textFeatM, batch.imageIds);
        } else {
          // No twins: in-batch ITC with hard targets (CLIP-style).
          const plain = itcLoss({ imageFeat, textFeat, temp: this.temp, imageIds: batch.imageIds });
          itc = { ...plain, accuracy: itcAccuracy(plain.simI2t, plain.targets) };
        }
        simI2t = itc.simI2t;
        simT2i = itc.simT2i;
        if (this.enabled('itc')) {
          out.itc = itc.loss;
          metrics.itcAcc = itc.accuracy;
        }
      }
      if (itmOn) {
        const { pairs } = drawItmPairs({
          simI2t,
          simT2i,
          batchSize: b,
          rng: ctx.rng.fork('itm'),
          imageIds: batch.imageIds,
          strategy: this.negativesAt(ctx.step ?? Infinity),
        });
        const encIds = tf.tensor2d(withFirstToken(batch.inputIds, t, this.encTokenId ?? batch.inputIds[0] ?? 0), [b, t], 'int32');
        const textIdx = tf.tensor1d(pairs.textIndex, 'int32');
        const h = this.text_encoder.forward({
          inputIds: tf.gather(encIds, textIdx),
          attentionMask: tf.gather(mask, textIdx),
          encoderHiddenStates: tf.gather(image, tf.tensor1d(pairs.imageIndex, 'int32')),
          rng: ctx.rng.fork('itm-encoder'),
        }).lastHiddenState; // [3B, T, D]
        const itm = itmLoss(this.itm_head.forward(firstToken(h)), pairs.labels);
        out.itm = itm.loss;
        metrics.itmAcc = itm.accuracy;
      }
      if (this.enabled('lm')) {
        const decIds = withFirstToken(batch.inputIds, t, txt.bosTokenId);
        const labels = lmLabels(decIds, [b, t], { padTokenId: txt.padTokenId });
        const logits = this.text_decoder.forward({
          inputIds: tf.tensor2d(decIds, [b, t], 'int32'),
          attentionMask: mask,
          encoderHiddenStates: image,
          rng: ctx.rng.fork('decoder'),
        });
        out.lm = lmLoss(logits, labels, { labelSmoothing: this.options.labelSmoothing }) as tf.Scalar;
      }
      return out;
    });
    metrics.temp = this.temp.dataSync()[0] as number;
    return combineLosses(parts, this.options.objectives, metrics);
  }

  /** The captioning model (HF layout): vision tower, and the decoder with the shared weights filled in. */
  toConditionalGeneration(): BlipForConditionalGeneration {
    const model = new BlipForConditionalGeneration(this.config);
    const dict = new Map<string, tf.Tensor>();
    for (const [k, v] of this.vision_model.stateDict()) dict.set(`vision_model.${k}`, v);
    if (this.text_decoder instanceof SharedTextDecoder) {
      for (const [k, v] of this.text_encoder.stateDict())
        if (!/^encoder\.layer\.\d+\.attention\./.test(k)) dict.set(`text_decoder.bert.${k}`, v);
    }
    for (const [k, v] of this.text_decoder.stateDict()) dict.set(`text_decoder.${k}`, v);
    model.loadStateDict(dict, { source: 'BlipForPretraining' });
    model.tokenizer = this.tokenizer;
    model.tokenizerDir = this.tokenizerDir;
    return model.eval();
  }

  /** The retrieval model (HF layout): vision tower, text encoder, projections, ITM head. */
  toRetrieval(): BlipForImageTextRetrieval {
    const model = new BlipForImageTextRetrieval(this.config);
    const dict = new Map<string, tf.Tensor>();
    for (const name of ['vision_model', 'text_encoder', 'vision_proj', 'text_proj', 'itm_head'] as const) {
      for (const [k, v] of this[name].stateDict()) dict.set(`${name}.${k}`, v);
    }
    model.loadStateDict(dict, { source: 'BlipForPretraining' });
    model.tokenizer = this.tokenizer;
    model.tokenizerDir = this.tokenizerDir;
    return model.eval();
  }

  /** config.json (HF keys + `blip_pretraining`, `enc_token_id`) and model.safetensors with twins, queues and temp. */
  async savePretrained(dir: string): Promise<void> {
    const config = { ...this.config, blipPretraining: this.options, encTokenId: this.encTokenId };
    await saveBlipFolder(this, config, dir, 'BlipForPretraining', this.tokenizerDir);
  }

  /**
   * Reads a folder this class saved, or Salesforce's original BLIP_Pretrain checkpoint (`model_base.pth`,
   * `model_base_capfilt_large.pth`, …: see official-keys.ts), from a folder or the weights file itself.
   */
  static async fromPretrained(dir: string): Promise<BlipForPretraining> {
    await ensureRuntime();
    // Any format core reads (model.safetensors, a sharded index, pytorch_model.bin / .pth), either key layout.
    const ck = await readBlipCheckpoint(dir, 'BlipForPretraining');
    const { blipPretraining: opts, encTokenId: enc, ...config } = ck.config;
    const model = new BlipForPretraining(
      config as BlipConfig,
      parsePretrainingOptions(opts, `${ck.report.config} blip_pretraining`, snakeKey),
      new Rng(0),
      typeof enc === 'number' ? enc : null,
    );
    try {
      applyBlipCheckpoint(model, ck);
      model.tokenizer = await loadTokenizerFrom(ck.folder, { ids: config.textConfig, configFile: ck.report.config });
      if (model.tokenizer) model.tokenizerDir = ck.folder;
    } catch (err) {
      model.dispose();
      throw err;
    }
    return model;
  }
}
