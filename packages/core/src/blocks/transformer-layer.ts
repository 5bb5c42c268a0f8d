// Pre-LN transformer layer: x + drop_path(γ₁·attn(norm1(x))), then x + drop_path(γ₂·mlp(norm2(x))).
// One class for timm `Block` (the default names), BLIP vision (HF `BlipEncoderLayer`, names in @vl/blip), BEiT/VLMo blocks with layer
// scale, torchscale `EncoderLayer` (sub-LN) and open_clip `ResidualAttentionBlock`, including its
// cross-attention form (`ln_1_kv`), chosen by flags and names rather than copies. With `experts`, the
// chosen parts get one copy per Multiway expert (VLMo, BEiT-3; see multiway.ts and multiway-layer.ts).
//
// Parameter names (timm, the default; see the presets below for the others):
//   norm1.{weight,bias}, attn.qkv.{weight [3D, D], bias [3D]} [attn.q_bias, attn.v_bias with qkvBias 'qv'],
//   attn.proj.{weight,bias}, norm2.{weight,bias}, mlp.fc1.*, mlp.fc2.*
//   [gamma_1, gamma_2 [D] with layerScaleInit]  [ln_1_kv.* for open_clip cross-attention blocks]
import * as tf from '@tensorflow/tfjs-core';
import type { AttentionCache } from '../attention/kv-cache.js';
import {
  type AttentionNames,
  MultiHeadAttention,
  type QkvBias,
  type QkvLayout,
  TIMM_ATTENTION_NAMES,
  TORCHSCALE_ATTENTION_NAMES,
} from '../attention/multi-head-attention.js';
import type { Activation } from '../nn/layers.js';
import { LayerNorm } from '../nn/layers.js';
import { VlError } from '../errors.js';
import type { Module } from '../nn/module.js';
import type { Rng } from '../runtime/rng.js';
import { DropPath } from './drop-path.js';
import { FeedForward, type FeedForwardNames, OPEN_CLIP_MLP_NAMES } from './feed-forward.js';
import { type ExpertNaming, Multiway, type Route } from './multiway.js';
import { PathModule } from './path-module.js';

export interface TransformerLayerNames {
  norm1: string;
  attn: string;
  norm2: string;
  mlp: string;
  /** Layer-scale parameters; dotted paths allowed (open_clip `ls_1.gamma`). */
  gamma1: string;
  gamma2: string;
  /** Norm on the context of a cross-attention block (open_clip `ln_1_kv`). */
  normKv: string;
  attention: Partial<AttentionNames>;
  mlpNames: Partial<FeedForwardNames>;
}

/** timm ViT / ALBEF visual encoder / BEiT / VLMo (`gamma_1`, `q_bias`, `v_bias`). */
export const TIMM_VIT_LAYER_NAMES: TransformerLayerNames = {
  norm1: 'norm1',
  attn: 'attn',
  norm2: 'norm2',
  mlp: 'mlp',
  gamma1: 'gamma_1',
  gamma2: 'gamma_2',
  normKv: 'norm_kv',
  attention: TIMM_ATTENTION_NAMES,
  mlpNames: {},
};

/** open_clip `ResidualAttentionBlock` (use with qkvLayout 'in_proj'). */
export const OPEN_CLIP_LAYER_NAMES: TransformerLayerNames = {
  norm1: 'ln_1',
  attn: 'attn',
  norm2: 'ln_2',
  mlp: 'mlp',
  gamma1: 'ls_1.gamma',
  gamma2: 'ls_2.gamma',
  normKv: 'ln_1_kv',
  attention: {},
  mlpNames: OPEN_CLIP_MLP_NAMES,
};

/** torchscale `EncoderLayer` (BEiT-3), without the multiway wrapping (use with qkvLayout 'separate', subLn). */
export const TORCHSCALE_LAYER_NAMES: TransformerLayerNames = {
  norm1: 'self_attn_layer_norm',
  attn: 'self_attn',
  norm2: 'final_layer_norm',
  mlp: 'ffn',
  gamma1: 'gamma_1',
  gamma2: 'gamma_2',
  normKv: 'kv_layer_norm',
  attention: TORCHSCALE_ATTENTION_NAMES,
  mlpNames: {},
};

/** The parts of a layer that can have Multiway experts ('attention': its q/k/v/out projections and inner norm). */
export type LayerPart = 'norm1' | 'attention' | 'norm2' | 'mlp';

export interface LayerExperts {
  naming: ExpertNaming;
  /** The parts with one copy per expert; the others are shared by every token. */
  parts: readonly LayerPart[];
}

export interface TransformerLayerConfig {
  hiddenSize: number;
  numHeads: number;
  intermediateSize: number;
  /** Default 1e-6 (timm); BLIP vision uses 1e-5. */
  layerNormEps?: number;
  activation?: Activation;
  /** Default 'fused'. */
  qkvLayout?: QkvLayout;
  /** Default 'full'; BEiT/VLMo use 'qv'. */
  qkvBias?: QkvBias;
  /** torchscale sub-LN: a LayerNorm inside attention (before out_proj) and inside the FFN. */
  subLn?: boolean;
  /** 'cross': the attention reads a normalised context instead of x (open_clip cross_attn blocks). */
  attentionKind?: 'self' | 'cross';
  /** Context width for attentionKind 'cross'. */
  kvSize?: number;
  /** Layer scale γ init (BEiT/VLMo 0.1, CaiT 1e-5…); null or absent for none. */
  layerScaleInit?: number | null;
  /** Stochastic depth rate of this layer. */
  dropPath?: number;
  attentionDropout?: number;
  names?: Partial<TransformerLayerNames>;
  /** Multiway experts for some parts; every forward then needs a `route`. */
  experts?: LayerExperts;
}

export interface TransformerLayerForward {
  /** Additive mask broadcastable to [B, H, T, Tk]. */
  mask?: tf.Tensor | null;
  causal?: boolean;
  /** Keys/values source for attentionKind 'cross' [B, S, kvSize]. */
  context?: tf.Tensor | null;
  cache?: AttentionCache | null;
  /** Which expert each token uses; required when the layer has experts, ignored otherwise. */
  route?: Route;
  rng?: Rng;
  outputAttentions?: boolean;
}

export type TransformerLayerOutput = {
  hidden: tf.Tensor;
  attentions?: tf.Tensor;
};

/** γ·x when layer scale is on. */
export function layerScale(x: tf.Tensor, gamma: tf.Tensor | null): tf.Tensor {
  return gamma ? tf.mul(x, gamma) : x;
}

/** One module for every token, or the experts of a Multiway part. */
export type LayerPartModule<T extends Module> = T | Multiway<T>;

function applyPart<T extends Module>(
  part: LayerPartModule<T>,
  x: tf.Tensor,
  route: Route | undefined,
  apply: (m: T, part: tf.Tensor) => tf.Tensor,
): tf.Tensor {
  return part instanceof Multiway ? part.forward(x, route, apply) : apply(part, x);
}

export class TransformerLayer extends PathModule {
  readonly norm1: LayerPartModule<LayerNorm>;
  readonly attn: MultiHeadAttention;
  readonly normKv: LayerNorm | null;
  readonly norm2: LayerPartModule<LayerNorm>;
  readonly mlp: LayerPartModule<FeedForward>;
  readonly gamma1: tf.Variable | null;
  readonly gamma2: tf.Variable | null;
  readonly dropPath: DropPath;
  readonly attentionKind: 'self' | 'cross';
  /** Names of the Multiway experts routes may use; empty without experts. */
  readonly expertNames: readonly string[];

  constructor(config: TransformerLayerConfig, rng: Rng) {
    super();
    const names = { ...TIMM_VIT_LAYER_NAMES, ...config.names };
    const d = config.hiddenSize;
    const eps = config.layerNormEps ?? 1e-6;
    const sub = config.subLn ? eps : null;
    this.attentionKind = config.attentionKind ?? 'self';
    const kvSize = this.attentionKind === 'cross' ? (config.kvSize ?? d) : d;
    const experts = config.experts;
    this.expertNames = experts ? experts.naming.experts.map((e) => e.name) : [];
    if (experts?.parts.includes('attention') && this.attentionKind === 'cross') {
      throw new VlError('CONFIG_INVALID', 'Multiway attention is self-attention only', {
        subject: 'TransformerLayer',
        hint: "leave 'attention' out of experts.parts for a cross-attention layer",
      });
    }
    // A part with experts gets one copy per expert, placed under the checkpoint's expert names.
    const place = <T extends Module>(part: LayerPart, path: string, make: () => T): LayerPartModule<T> =>
      experts?.parts.includes(part) ? Multiway.place(this, path, experts.naming, make) : this.placeModule(path, make());
    this.norm1 = place('norm1', names.norm1, () => new LayerNorm(d, eps));
    this.normKv = this.attentionKind === 'cross' ? this.placeModule(names.normKv, new LayerNorm(kvSize, eps)) : null;
    this.attn = this.placeModule(
      names.attn,
      new MultiHeadAttention(
        {
          hiddenSize: d,
          numHeads: config.numHeads,
          kvSize,
          layout: config.qkvLayout ?? 'fused',
          qkvBias: config.qkvBias,
          innerNormEps: sub,
          multiway: experts?.parts.includes('attention') ? experts.naming : undefined,
          attentionDropout: config.attentionDropout,
          names: names.attention,
        },
        rng,
      ),
    );
    this.norm2 = place('norm2', names.norm2, () => new LayerNorm(d, eps));
    const mlpConfig = {
      dim: d,
      hiddenDim: config.intermediateSize,
      activation: config.activation,
      innerNormEps: sub,
      names: names.mlpNames,
    };
    this.mlp = place('mlp', names.mlp, () => new FeedForward(mlpConfig, rng));
    const ls = config.layerScaleInit;
    this.gamma1 = ls != null ? this.placeParameter(names.gamma1, tf.fill([d], ls)) : null;
    this.gamma2 = ls != null ? this.placeParameter(names.gamma2, tf.fill([d], ls)) : null;
    this.dropPath = this.registerModule('drop_path', new DropPath(config.dropPath ?? 0));
  }

  /** x: [B, T, D] → [B, T, D]. Parts with experts send each token where `options.route` says. */
  forward(x: tf.Tensor, options: TransformerLayerForward = {}): TransformerLayerOutput {
    const { route, rng } = options;
    if (route == null && this.expertNames.length > 0) {
      throw new VlError('ROUTE_INVALID', `no route given: this layer sends every token to one of ${this.expertNames.join(', ')}`, {
        subject: 'TransformerLayer.forward',
        hint: 'pass route: an expert name, or segments [{ expert, length }, …] that cover the sequence',
      });
    }
    return tf.tidy(() => {
      const context = this.normKv && options.context ? this.normKv.forward(options.context) : null;
      const a = this.attn.forward(
        applyPart(this.norm1, x, route, (n, p) => n.forward(p)),
        {
          context,
          mask: options.mask,
          causal: options.causal,
          cache: options.cache,
          route,
          rng,
          outputAttentions: options.outputAttentions,
        },
      );
      let h = tf.add(x, this.dropPath.forward(layerScale(a.output, this.gamma1), options.rng));
      const normed = applyPart(this.norm2, h, route, (n, p) => n.forward(p));
      const m = applyPart(this.mlp, normed, route, (f, p) => f.forward(p, rng));
      h = tf.add(h, this.dropPath.forward(layerScale(m, this.gamma2), options.rng));
      return a.attentions ? { hidden: h, attentions: a.attentions } : { hidden: h };
    });
  }
}
