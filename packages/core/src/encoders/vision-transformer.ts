// Vision Transformer encoder: patch embedding (as reshape → transpose → matMul, stored as the
// conv weight checkpoints hold), class token, learned position embeddings (bicubic-interpolated
// for other image sizes), pre-LN layers, final norm. Follows timm `VisionTransformer` (the default
// names, TIMM_VIT_NAMES, as ALBEF's `visual_encoder`); other layouts pass their `names` (HF
// `BlipVisionModel`'s are `BLIP_VISION_NAMES` in @vl/blip).
//
// Parameter names (timm): cls_token [1, 1, D], patch_embed.proj.{weight [D, C, P, P], bias [D]},
//   pos_embed [1, N + 1, D], blocks.<i>.* (see TransformerLayer), norm.{weight,bias}
import * as tf from '@tensorflow/tfjs-core';
import { dropPathSchedule } from '../blocks/drop-path.js';
import { PathModule } from '../blocks/path-module.js';
import { TIMM_VIT_LAYER_NAMES, TransformerLayer, type TransformerLayerNames } from '../blocks/transformer-layer.js';
import type { QkvBias, QkvLayout } from '../attention/multi-head-attention.js';
import { VlError } from '../errors.js';
import { linear } from '../nn/functional.js';
import { truncNormal } from '../nn/init.js';
import { type Activation, bertInit, LayerNorm } from '../nn/layers.js';
import { Module, type ModuleList } from '../nn/module.js';
import type { Rng } from '../runtime/rng.js';
import { interpolatePositionEmbedding } from './position-interpolation.js';

/** Patch embedding. Parameters: weight [D, C, P, P] (a Conv2d weight), bias [D]. */
export class PatchEmbedding extends Module {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | null;

  constructor(
    readonly numChannels: number,
    readonly patchSize: number,
    readonly dim: number,
    rng: Rng,
    options: { bias?: boolean } = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', bertInit([dim, numChannels, patchSize, patchSize], rng));
    this.bias = options.bias === false ? null : this.registerParameter('bias', tf.zeros([dim]));
  }

  /**
   * pixels [B, C, H, W] → [B, (H/P)·(W/P), D], row-major over the patch grid like
   * conv(stride P).flatten(2).transpose(1, 2). A stride-P conv with a P×P kernel is a matMul
   * over non-overlapping patches; this avoids conv2d, which is slow or missing on some backends.
   */
  forward(pixels: tf.Tensor): { patches: tf.Tensor; grid: [number, number] } {
    const [b, c, h, w] = pixels.shape as [number, number, number, number];
    const p = this.patchSize;
    if (pixels.rank !== 4 || c !== this.numChannels || h % p !== 0 || w % p !== 0) {
      throw new VlError(
        'SHAPE_MISMATCH',
        `pixels must be [B, ${this.numChannels}, H, W] with H and W multiples of ${p}, got [${pixels.shape}]`,
        { subject: 'PatchEmbedding.forward' },
      );
    }
    const gh = h / p;
    const gw = w / p;
    const patches = tf.tidy(() => {
      const x = tf.reshape(pixels, [b, c, gh, p, gw, p]); // [B, C, gh, P, gw, P]
      const t = tf.transpose(x, [0, 2, 4, 1, 3, 5]); // [B, gh, gw, C, P, P]
      const flat = tf.reshape(t, [b * gh * gw, c * p * p]); // [B·N, C·P·P]
      const wFlat = tf.reshape(this.weight, [this.dim, c * p * p]); // [D, C·P·P], same order as the conv kernel
      return tf.reshape(linear(flat, wFlat, this.bias), [b, gh * gw, this.dim]); // [B, N, D]
    });
    return { patches, grid: [gh, gw] };
  }
}

export interface VisionTransformerNames {
  classEmbedding: string;
  positionEmbedding: string;
  patchEmbedding: string;
  layers: string;
  /** Norm before the layers (CLIP `ln_pre`); used only with `preNorm`. */
  preNorm: string;
  postNorm: string;
  layer: Partial<TransformerLayerNames>;
}

export const TIMM_VIT_NAMES: VisionTransformerNames = {
  classEmbedding: 'cls_token',
  positionEmbedding: 'pos_embed',
  patchEmbedding: 'patch_embed.proj',
  layers: 'blocks',
  preNorm: 'norm_pre',
  postNorm: 'norm',
  layer: TIMM_VIT_LAYER_NAMES,
};

export interface VisionTransformerConfig {
  imageSize: number;
  patchSize: number;
  /** Default 3. */
  numChannels?: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  /** Default 1e-6 (timm); BLIP uses 1e-5. */
  layerNormEps?: number;
  activation?: Activation;
  qkvLayout?: QkvLayout;
  qkvBias?: QkvBias;
  layerScaleInit?: number | null;
  /** Stochastic depth at the last layer; timm's linear schedule from 0. */
  dropPathRate?: number;
  attentionDropout?: number;
  preNorm?: boolean;
  /** Default true. */
  postNorm?: boolean;
  /**
   * How `poolerOutput` is made from the final CLS row: 'cls' takes it as is (timm), 'clsNorm'
   * applies the post norm once more (HF BLIP applies `post_layernorm` twice). Default 'cls'.
   */
  pooler?: 'cls' | 'clsNorm';
  names?: Partial<VisionTransformerNames>;
}

export interface VisionForwardOptions {
  rng?: Rng;
  outputAttentions?: boolean;
  outputHiddenStates?: boolean;
}

export type VisionTransformerOutput = {
  /** [B, 1 + N, D] after the post norm. */
  lastHiddenState: tf.Tensor;
  /** [B, D] */
  poolerOutput: tf.Tensor;
  /** Per layer [B, H, 1 + N, 1 + N]. */
  attentions?: tf.Tensor[];
  /** Embeddings, then each layer's output (before the post norm). */
  hiddenStates?: tf.Tensor[];
};

export class VisionTransformer extends PathModule {
  readonly config: VisionTransformerConfig;
  readonly classEmbedding: tf.Variable;
  readonly positionEmbedding: tf.Variable;
  readonly patchEmbedding: PatchEmbedding;
  readonly preNorm: LayerNorm | null;
  readonly layers: ModuleList<TransformerLayer>;
  readonly postNorm: LayerNorm | null;
  readonly grid: [number, number];

  constructor(config: VisionTransformerConfig, rng: Rng) {
    super();
    this.config = config;
    const names = { ...TIMM_VIT_NAMES, ...config.names };
    const d = config.hiddenSize;
    const eps = config.layerNormEps ?? 1e-6;
    const g = config.imageSize / config.patchSize;
    if (!Number.isInteger(g)) {
      throw new VlError('CONFIG_INVALID', `image size ${config.imageSize} is not a multiple of patch size ${config.patchSize}`, {
        subject: 'VisionTransformer',
      });
    }
    this.grid = [g, g];
    this.classEmbedding = this.placeParameter(names.classEmbedding, truncNormal([1, 1, d], rng, 0.02));
    this.patchEmbedding = this.placeModule(names.patchEmbedding, new PatchEmbedding(config.numChannels ?? 3, config.patchSize, d, rng));
    this.positionEmbedding = this.placeParameter(names.positionEmbedding, truncNormal([1, 1 + g * g, d], rng, 0.02));
    this.preNorm = config.preNorm ? this.placeModule(names.preNorm, new LayerNorm(d, eps)) : null;
    const rates = dropPathSchedule(config.dropPathRate ?? 0, config.numLayers);
    const layers = rates.map(
      (rate) =>
        new TransformerLayer(
          {
            hiddenSize: d,
            numHeads: config.numHeads,
            intermediateSize: config.intermediateSize,
            layerNormEps: eps,
            activation: config.activation,
            qkvLayout: config.qkvLayout ?? 'fused',
            qkvBias: config.qkvBias,
            layerScaleInit: config.layerScaleInit,
            dropPath: rate,
            attentionDropout: config.attentionDropout,
            names: names.layer,
          },
          rng,
        ),
    );
    this.layers = this.placeModuleList(names.layers, layers);
    this.postNorm = config.postNorm === false ? null : this.placeModule(names.postNorm, new LayerNorm(d, eps));
  }

  /** Class token + patches + position embeddings: [B, 1 + N, D]. */
  embed(pixels: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const { patches, grid } = this.patchEmbedding.forward(pixels); // [B, N, D]
      const [b, , d] = patches.shape as [number, number, number];
      const cls = tf.broadcastTo(this.classEmbedding, [b, 1, d]); // [B, 1, D]
      const pos = interpolatePositionEmbedding(this.positionEmbedding, this.grid, grid); // [1, 1 + N, D]
      return tf.add(tf.concat([cls, patches], 1), pos); // [B, 1 + N, D]
    });
  }

  forward(pixels: tf.Tensor, options: VisionForwardOptions = {}): VisionTransformerOutput {
    return tf.tidy(() => {
      let h = this.embed(pixels);
      if (this.preNorm) h = this.preNorm.forward(h);
      const attentions: tf.Tensor[] = [];
      const hidden: tf.Tensor[] = [h];
      for (const layer of this.layers) {
        const out = layer.forward(h, { rng: options.rng, outputAttentions: options.outputAttentions });
        h = out.hidden;
        hidden.push(h);
        if (out.attentions) attentions.push(out.attentions);
      }
      const last = this.postNorm ? this.postNorm.forward(h) : h;
      const [b, , d] = last.shape as [number, number, number];
      let pooled = tf.reshape(tf.slice(last, [0, 0, 0], [b, 1, d]), [b, d]); // [B, D]
      if (this.config.pooler === 'clsNorm' && this.postNorm) pooled = this.postNorm.forward(pooled);
      const result: VisionTransformerOutput = { lastHiddenState: last, poolerOutput: pooled };
      if (options.outputAttentions) result.attentions = attentions;
      if (options.outputHiddenStates) result.hiddenStates = hidden;
      return result;
    });
  }
}
