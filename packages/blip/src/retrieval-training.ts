// BLIP's retrieval fine-tuning model (salesforce/BLIP `models/blip_retrieval.py` BLIP_Retrieval, the class behind
// `model_base_retrieval_coco.pth` / `_flickr.pth` and the CapFilt filter): BlipForImageTextRetrieval's modules plus
// the momentum twins, the feature queues with image ids (`idx_queue`) and the learned temperature. ITC counts every
// caption of the same image as a positive, in the batch and in the queue; ITM draws its hard negatives from the
// online features of the batch. Sub-trees use the Hugging Face names as everywhere in @vl/blip; official-keys.ts maps
// the original names (`visual_encoder_m`, `image_queue`, `ptr_queue`, …). `toRetrieval()` hands out the inference model.
import * as tf from '@tensorflow/tfjs-core';
import {
  type BertTokenizer,
  clampTemperature,
  combineLosses,
  drawItmPairs,
  ensureRuntime,
  type FeatureQueue,
  type ForwardResult,
  initTemperature,
  Linear,
  Module,
  MomentumContrastive,
  objectiveEnabled,
  type ObjectivesConfig,
  Rng,
  type TextTransformer,
  type VisionTransformer,
  VlError,
} from '@vl/core';
import { applyBlipCheckpoint, type BlipCheckpointReport, readBlipCheckpoint, saveBlipFolder } from './checkpoint.js';
import type { BlipConfig } from './config.js';
import { blipItc, blipItm } from './contrastive.js';
import { BlipForImageTextRetrieval, blipTextModel, blipVisionModel, initBlipWeights } from './modeling.js';
import type { PretrainBatch } from './pretraining.js';
import { loadTokenizerFrom } from './processor.js';

/** BLIP_Retrieval's kwargs (`configs/retrieval_coco.yaml` values as defaults). */
export interface BlipRetrievalTrainingOptions {
  /** itc / itm: `{ enabled, weight }`; absent = on with weight 1 (BLIP sums the two). */
  objectives: ObjectivesConfig;
  /** ITC queue length: 57,600 as in the released checkpoints. */
  queueSize: number;
  /** EMA decay of the twins. */
  momentum: number;
  /** Draw ITM negatives across all GPUs; one process here, so it changes nothing (kept for the config round trip). */
  negativeAllRank: boolean;
  /** Initial ITC temperature. */
  temp: number;
}

const DEFAULTS: BlipRetrievalTrainingOptions = { objectives: {}, queueSize: 57600, momentum: 0.995, negativeAllRank: false, temp: 0.07 };

export class BlipForRetrievalTraining extends Module {
  readonly config: BlipConfig;
  readonly options: BlipRetrievalTrainingOptions;
  readonly vision_model: VisionTransformer;
  readonly text_encoder: TextTransformer;
  readonly vision_proj: Linear;
  readonly text_proj: Linear;
  readonly itm_head: Linear;
  readonly temp: tf.Variable;
  readonly vision_model_m: VisionTransformer;
  readonly vision_proj_m: Linear;
  readonly text_encoder_m: TextTransformer;
  readonly text_proj_m: Linear;
  /** `image_queue`, `text_queue` [E, Q], `idx_queue` [1, Q] (−100 = empty) and the pointer (BLIP's `ptr_queue`). */
  readonly queues: FeatureQueue;
  /** The twins' EMA and the queues. */
  readonly contrastive: MomentumContrastive;
  /** [ENC]: column 0 of the image-grounded encoder's input. */
  encTokenId: number;
  tokenizer: BertTokenizer | null = null;
  tokenizerDir: string | null = null;
  checkpointReport: BlipCheckpointReport | null = null;

  constructor(config: BlipConfig, options: Partial<BlipRetrievalTrainingOptions> = {}, rng: Rng = new Rng(0), encTokenId?: number) {
    super();
    this.config = config;
    this.options = { ...DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
    const v = config.visionConfig;
    const t = config.textConfig;
    const e = config.imageTextHiddenSize;
    this.encTokenId = encTokenId ?? t.vocabSize - 1; // init_tokenizer appends [ENC] last
    this.vision_model = this.registerModule('vision_model', blipVisionModel(v, rng));
    this.text_encoder = this.registerModule('text_encoder', blipTextModel(t, rng, { causal: false }));
    this.vision_proj = this.registerModule('vision_proj', new Linear(v.hiddenSize, e, rng));
    this.text_proj = this.registerModule('text_proj', new Linear(t.hiddenSize, e, rng));
    this.itm_head = this.registerModule('itm_head', new Linear(t.hiddenSize, 2, rng));
    this.temp = this.registerParameter('temp', initTemperature(this.options.temp));
    initBlipWeights(this, config.initializerRange, rng.fork('init-weights'));
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
      queue: { size: this.options.queueSize, dim: e, imageIds: true, rng: rng.fork('queues') },
    });
    this.queues = this.registerModule('queues', this.contrastive.queue as FeatureQueue);
  }

  /**
   * Reads a checkpoint folder or file: Salesforce's BLIP_Retrieval (`model_base_retrieval_coco.pth`, the whole
   * state), BLIP_Pretrain (to fine-tune from it, as `train_retrieval.py` does: the decoder is listed as unused, the
   * image ids of the queue start empty), or a folder this class saved.
   */
  static async fromPretrained(path: string): Promise<BlipForRetrievalTraining> {
    await ensureRuntime();
    const ck = await readBlipCheckpoint(path, 'BlipForRetrievalTraining');
    // From the config: written by savePretrained, or translated from BLIP_Retrieval's kwargs (official-config.ts).
    // A pretraining checkpoint brings its own queue (size and contents) and momentum.
    const { blipRetrievalTraining: own, blipPretraining: pre, encTokenId: enc, ...config } = ck.config;
    const fromPretraining = pre as { queueSize?: number; momentum?: number } | undefined;
    const options = own ?? (fromPretraining ? { queueSize: fromPretraining.queueSize, momentum: fromPretraining.momentum } : {});
    const model = new BlipForRetrievalTraining(
      config as BlipConfig,
      options as Partial<BlipRetrievalTrainingOptions>,
      new Rng(0),
      typeof enc === 'number' ? enc : undefined,
    );
    try {
      applyBlipCheckpoint(model, ck);
      model.checkpointReport = ck.report;
      model.tokenizer = await loadTokenizerFrom(ck.folder, { ids: config.textConfig, configFile: ck.report.config });
      if (model.tokenizer) model.tokenizerDir = ck.folder;
    } catch (err) {
      model.dispose();
      throw err;
    }
    return model.eval();
  }

  /** config.json (HF keys + `blip_retrieval_training`, `enc_token_id`) and model.safetensors with twins, queues and temp. */
  async savePretrained(dir: string): Promise<void> {
    const config = { ...this.config, blipRetrievalTraining: this.options, encTokenId: this.encTokenId };
    await saveBlipFolder(this, config, dir, 'BlipForRetrievalTraining', this.tokenizerDir);
  }

  /** The inference model (HF layout): vision tower, text encoder, projections, ITM head. */
  toRetrieval(): BlipForImageTextRetrieval {
    const model = new BlipForImageTextRetrieval(this.config);
    const dict = new Map<string, tf.Tensor>();
    for (const name of ['vision_model', 'text_encoder', 'vision_proj', 'text_proj', 'itm_head'] as const) {
      for (const [k, v] of this[name].stateDict()) dict.set(`${name}.${k}`, v);
    }
    model.loadStateDict(dict, { source: 'BlipForRetrievalTraining' });
    model.tokenizer = this.tokenizer;
    model.tokenizerDir = this.tokenizerDir;
    return model.eval();
  }

  /** Trainer `afterStep`: clamp the temperature and take one EMA step (BLIP does both at the start of the next forward). */
  afterStep(): void {
    clampTemperature(this.temp);
    this.contrastive.update();
  }

  enabled(name: 'itc' | 'itm'): boolean {
    return objectiveEnabled(this.options.objectives, name);
  }

  /**
   * One fine-tuning forward (BLIP_Retrieval.forward without its momentum update, which `afterStep` does):
   * `{ loss, losses: { itc, itm }, metrics }`. `batch.imageIds` is BLIP's `idx` and is required. Enqueues the
   * batch's momentum features and ids. ITM negatives: for each text an image and for each image a text, drawn
   * ∝ softmax(online similarity / temp) over the batch, never one with the same image id.
   */
  forward(batch: PretrainBatch, ctx: { rng: Rng; alpha: number }): ForwardResult {
    const ids = batch.imageIds;
    if (!ids || ids.length !== batch.batchSize) {
      throw new VlError('INVALID_ARGUMENT', 'BLIP retrieval fine-tuning needs the image id of every pair (batch.imageIds)', {
        subject: 'BlipForRetrievalTraining.forward',
      });
    }
    const metrics: Record<string, number> = {};
    const { batchSize: b, seqLength: t, imageSize: s } = batch;
    const parts = tf.tidy(() => {
      const out: Record<string, tf.Scalar | undefined> = {};
      const pixels = tf.tensor4d(batch.pixels, [b, 3, s, s]);
      const inputIds = tf.tensor2d(batch.inputIds, [b, t], 'int32');
      const attentionMask = tf.tensor2d(batch.attentionMask, [b, t], 'int32');
      const itc = blipItc(this, { pixels, inputIds, attentionMask, imageIds: ids, alpha: ctx.alpha });
      if (this.enabled('itc')) out.itc = itc.loss;
      this.contrastive.enqueue(itc.imageFeatM, itc.textFeatM, Array.from(ids));
      if (this.enabled('itm')) {
        // BLIP_Retrieval weighs the negatives by the online features of the batch (not the ITC similarities).
        const { negatives } = drawItmPairs({
          simI2t: tf.div(tf.matMul(itc.imageFeat, itc.textFeat, false, true), this.temp),
          simT2i: tf.div(tf.matMul(itc.textFeat, itc.imageFeat, false, true), this.temp),
          batchSize: b,
          rng: ctx.rng.fork('itm'),
          imageIds: Array.from(ids),
          strategy: 'hard',
        });
        const enc = Int32Array.from(batch.inputIds);
        for (let r = 0; r < enc.length; r += t) enc[r] = this.encTokenId;
        const itm = blipItm(this, {
          imageEmbeds: itc.imageEmbeds,
          encInputIds: tf.tensor2d(enc, [b, t], 'int32'),
          attentionMask,
          negatives,
        });
        out.itm = itm.loss;
        metrics.itmAcc = itm.accuracy;
      }
      return out;
    });
    metrics.temp = this.temp.dataSync()[0] as number;
    return combineLosses(parts, this.options.objectives, metrics);
  }
}
