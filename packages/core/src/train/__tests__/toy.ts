// A tiny ALBEF-shaped model made of nn layers (linear image tower, embedding-bag text tower,
// momentum twins, queues, ITM fusion MLP, MLM head) and a toy caption dataset, for Trainer tests.
import * as tf from '@tensorflow/tfjs-core';
import { itcMomentumTargets } from '../../distill/targets.js';
import { MomentumEncoder } from '../../distill/momentum.js';
import { FeatureQueue } from '../../distill/queue.js';
import { Dropout, Embedding, Linear, Mlp } from '../../nn/layers.js';
import { Module } from '../../nn/module.js';
import { clampTemperature, initTemperature, itcLoss } from '../../objectives/itc.js';
import { itmLoss, itmPairs, sampleItmNegatives } from '../../objectives/itm.js';
import { combineLosses, type ForwardResult, type ObjectivesConfig } from '../../objectives/losses.js';
import { maskTokens, mlmLoss } from '../../objectives/mlm.js';
import { Rng } from '../../runtime/rng.js';
import type { TrainStepContext } from '../../node/trainer.js';

const PAD = 0;
const CLS = 1;
const SEP = 2;
const MASK = 3;
const COLORS = [4, 5, 6, 7];
const SHAPES = [8, 9, 10, 11];
const FILLERS = [12, 13, 14, 15];
const VOCAB = 16;
const SEQ = 7;
const IMAGE_DIM = 12;

export interface ToyBatch {
  images: Float32Array; // [B, IMAGE_DIM]
  tokens: Int32Array; // [B, SEQ]
  imageIds: number[];
}

interface Pair {
  image: Float32Array;
  tokens: number[];
  imageId: number;
}

/** 16 distinct images (4 colours × 4 shapes, with noise), two captions each: 32 pairs. */
export function toyPairs(seed: number): Pair[] {
  const rng = new Rng(seed);
  const pairs: Pair[] = [];
  let id = 0;
  for (let c = 0; c < 4; c++) {
    for (let s = 0; s < 4; s++, id++) {
      const image = new Float32Array(IMAGE_DIM);
      for (let k = 0; k < IMAGE_DIM; k++) image[k] = 0.1 * rng.normal();
      image[c]! += 1;
      image[4 + s]! += 1;
      for (let cap = 0; cap < 2; cap++) {
        const filler = FILLERS[rng.int(FILLERS.length)]!;
        pairs.push({ image, tokens: [CLS, filler, COLORS[c]!, SHAPES[s]!, SEP, PAD, PAD], imageId: id });
      }
    }
  }
  return pairs;
}

/** An epoch's batches: the pairs shuffled by (seed, epoch), so a resumed epoch replays the same order. */
export function toyEpoch(pairs: Pair[], batchSize: number, seed: number) {
  return (epoch: number): ToyBatch[] => {
    const order = new Rng(seed).fork(`epoch-${epoch}`).shuffle(pairs.map((_, i) => i));
    const batches: ToyBatch[] = [];
    for (let start = 0; start + batchSize <= order.length; start += batchSize) {
      const idx = order.slice(start, start + batchSize);
      const images = new Float32Array(batchSize * IMAGE_DIM);
      const tokens = new Int32Array(batchSize * SEQ);
      idx.forEach((p, k) => {
        images.set(pairs[p]!.image, k * IMAGE_DIM);
        tokens.set(pairs[p]!.tokens, k * SEQ);
      });
      batches.push({ images, tokens, imageIds: idx.map((p) => pairs[p]!.imageId) });
    }
    return batches;
  };
}

class TextTower extends Module {
  readonly word_embeddings: Embedding;
  readonly dense: Linear;
  constructor(hidden: number, rng: Rng) {
    super();
    this.word_embeddings = this.registerModule('word_embeddings', new Embedding(VOCAB, hidden, rng, { init: (s, r) => normal(s, r, 0.5) }));
    this.dense = this.registerModule('dense', new Linear(hidden, hidden, rng, { init: (s, r) => normal(s, r, 0.3) }));
  }
  /** Mean of the non-padding token embeddings → dense → tanh: [B, H]. */
  forward(tokens: tf.Tensor2D): tf.Tensor {
    return tf.tidy(() => {
      const emb = this.word_embeddings.forward(tokens); // [B, L, H]
      const keep = tf.expandDims(tf.cast(tf.notEqual(tokens, PAD), 'float32'), 2); // [B, L, 1]
      const bag = tf.div(tf.sum(tf.mul(emb, keep), 1), tf.sum(keep, 1));
      return tf.tanh(this.dense.forward(bag));
    });
  }
}

class VisionTower extends Module {
  readonly dense: Linear;
  constructor(hidden: number, rng: Rng) {
    super();
    this.dense = this.registerModule('dense', new Linear(IMAGE_DIM, hidden, rng, { init: (s, r) => normal(s, r, 0.3) }));
  }
  forward(images: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.tanh(this.dense.forward(images)));
  }
}

function normal(shape: number[], rng: Rng, std: number): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = std * rng.normal();
  return tf.tensor(data, shape);
}

function l2norm(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.div(x, tf.maximum(tf.norm(x, 'euclidean', -1, true), 1e-12)));
}

export class ToyAlbef extends Module {
  readonly visual_encoder: VisionTower;
  readonly text_encoder: TextTower;
  readonly vision_proj: Linear;
  readonly text_proj: Linear;
  readonly itm_head: Mlp;
  readonly position_embeddings: Embedding;
  readonly mlm_head: Mlp;
  readonly dropout: Dropout;
  readonly temp: tf.Variable;
  readonly visual_encoder_m: VisionTower;
  readonly text_encoder_m: TextTower;
  readonly vision_proj_m: Linear;
  readonly text_proj_m: Linear;
  readonly queues: FeatureQueue;
  readonly momentum: MomentumEncoder;

  constructor(
    seed: number,
    readonly objectives: ObjectivesConfig = {},
    readonly queueSize = 20,
  ) {
    super();
    const rng = new Rng(seed);
    const h = 16;
    const e = 8;
    this.visual_encoder = this.registerModule('visual_encoder', new VisionTower(h, rng));
    this.text_encoder = this.registerModule('text_encoder', new TextTower(h, rng));
    this.vision_proj = this.registerModule('vision_proj', new Linear(h, e, rng, { init: (s, r) => normal(s, r, 0.3) }));
    this.text_proj = this.registerModule('text_proj', new Linear(h, e, rng, { init: (s, r) => normal(s, r, 0.3) }));
    this.itm_head = this.registerModule('itm_head', new Mlp(3 * h, h, 2, rng, { init: (s, r) => normal(s, r, 0.3) }));
    this.position_embeddings = this.registerModule(
      'position_embeddings',
      new Embedding(SEQ, h, rng, { init: (s, r) => normal(s, r, 0.5) }),
    );
    this.mlm_head = this.registerModule('mlm_head', new Mlp(h, 2 * h, VOCAB, rng, { init: (s, r) => normal(s, r, 0.3) }));
    this.dropout = this.registerModule('dropout', new Dropout(0.1));
    this.temp = this.registerParameter('temp', initTemperature());
    this.visual_encoder_m = this.registerModule('visual_encoder_m', new VisionTower(h, rng));
    this.text_encoder_m = this.registerModule('text_encoder_m', new TextTower(h, rng));
    this.vision_proj_m = this.registerModule('vision_proj_m', new Linear(h, e, rng));
    this.text_proj_m = this.registerModule('text_proj_m', new Linear(h, e, rng));
    this.queues = this.registerModule(
      'queues',
      new FeatureQueue({
        size: queueSize,
        fields: { image_queue: { dim: e }, text_queue: { dim: e }, idx_queue: { dim: 1, init: -100, dtype: 'int32' } },
        rng,
      }),
    );
    this.momentum = new MomentumEncoder([
      [this.visual_encoder, this.visual_encoder_m],
      [this.text_encoder, this.text_encoder_m],
      [this.vision_proj, this.vision_proj_m],
      [this.text_proj, this.text_proj_m],
    ]);
  }

  /** What ALBEF does under no_grad at the start of each forward; the Trainer calls it after each step. */
  afterStep(): void {
    clampTemperature(this.temp);
    this.momentum.update();
  }

  forward(batch: ToyBatch, ctx: Pick<TrainStepContext, 'rng' | 'alpha'>): ForwardResult {
    const b = batch.imageIds.length;
    const metrics: Record<string, number> = {};
    const parts = tf.tidy(() => {
      const images = tf.tensor2d(batch.images, [b, IMAGE_DIM]);
      const tokens = tf.tensor2d(batch.tokens, [b, SEQ], 'int32');
      const imgH = this.visual_encoder.forward(images);
      const txtH = this.text_encoder.forward(tokens);
      const imageFeat = l2norm(this.vision_proj.forward(imgH));
      const textFeat = l2norm(this.text_proj.forward(txtH));
      // Momentum features and candidate banks [D, B + Q], ALBEF's image_feat_all / text_feat_all.
      const imageFeatM = l2norm(this.vision_proj_m.forward(this.visual_encoder_m.forward(images)));
      const textFeatM = l2norm(this.text_proj_m.forward(this.text_encoder_m.forward(tokens)));
      const imageAll = tf.concat([tf.transpose(imageFeatM), this.queues.get('image_queue')], 1);
      const textAll = tf.concat([tf.transpose(textFeatM), this.queues.get('text_queue')], 1);
      const idsAll = [...batch.imageIds, ...this.queues.get('idx_queue').dataSync()];
      const soft = itcMomentumTargets(imageFeatM, textFeatM, imageAll, textAll, this.temp);
      const itc = itcLoss({
        imageFeat,
        textFeat,
        temp: this.temp,
        imageFeatAll: imageAll,
        textFeatAll: textAll,
        imageIds: batch.imageIds,
        imageIdsAll: idsAll,
        softTargets: soft,
        alpha: ctx.alpha,
      });

      const negatives = sampleItmNegatives({ simI2t: itc.simI2t, simT2i: itc.simT2i, rng: ctx.rng.fork('itm'), imageIds: batch.imageIds });
      const pairs = itmPairs(negatives);
      // The fusion "encoder": both towers and their product, so matching is easy for a small MLP.
      const pairImg = tf.gather(imgH, tf.tensor1d(pairs.imageIndex, 'int32'));
      const pairTxt = tf.gather(txtH, tf.tensor1d(pairs.textIndex, 'int32'));
      const fused = tf.concat([pairImg, pairTxt, tf.mul(pairImg, pairTxt)], 1);
      const itm = itmLoss(this.itm_head.forward(this.dropout.forward(fused, ctx.rng.fork('dropout'))), pairs.labels);
      metrics.itmAcc = itm.accuracy;

      const masked = maskTokens(batch.tokens, {
        rng: ctx.rng.fork('mlm'),
        vocabSize: VOCAB,
        maskTokenId: MASK,
        specialTokenIds: [PAD, CLS, SEP, MASK],
        probability: 0.3,
      });
      const maskedIds = tf.tensor2d(masked.inputIds, [b, SEQ], 'int32');
      const tokenH = tf.add(
        tf.add(this.text_encoder.word_embeddings.forward(maskedIds), this.position_embeddings.forward(tf.range(0, SEQ, 1, 'int32'))),
        tf.expandDims(imgH, 1),
      );
      const mlm = mlmLoss(this.mlm_head.forward(tf.tanh(tokenH)), masked.labels);

      this.queues.enqueue({ image_queue: imageFeatM, text_queue: textFeatM, idx_queue: tf.tensor1d(batch.imageIds, 'int32') });
      return { itc: itc.loss, itm: itm.loss, mlm };
    });
    metrics.temp = this.temp.dataSync()[0]!;
    return combineLosses(parts, this.objectives, metrics);
  }
}
