// Multiway transformer layer (VLMo `multiway_transformer.Block`, BEiT-3 / torchscale
// `EncoderLayer` with multiway=True): self-attention shared by all tokens, a feed-forward expert
// per modality (V-FFN, L-FFN) and optionally a VL-FFN used for fused image-text input in the top
// layers (VLMo). Which expert a token uses is the `route` argument of `forward`.
//
// Parameter names, VLMo preset (experts named by suffix):
//   norm1.*, attn.qkv.weight, attn.q_bias, attn.v_bias, attn.proj.*, gamma_1, gamma_2,
//   norm2_imag.*, mlp_imag.fc{1,2}.*, norm2_text.*, mlp_text.fc{1,2}.*, [norm2_vl.*, mlp_vl.*]
// BEiT-3 preset (experts as children A = vision, B = language; attention multiway too):
//   self_attn_layer_norm.{A,B}.*, self_attn.{q,k,v,out}_proj.{A,B}.*, self_attn.inner_attn_ln.{A,B}.*,
//   final_layer_norm.{A,B}.*, ffn.{A,B}.{fc1,fc2,ffn_layernorm}.*
import * as tf from '@tensorflow/tfjs-core';
import type { AttentionCache } from '../attention/kv-cache.js';
import { MultiHeadAttention } from '../attention/multi-head-attention.js';
import { applyRouted, Multiway, type Route } from '../attention/routing.js';
import { LayerNorm } from '../nn/layers.js';
import type { Rng } from '../runtime/rng.js';
import { DropPath } from './drop-path.js';
import { FeedForward } from './feed-forward.js';
import { PathModule } from './path-module.js';
import {
  layerScale,
  TIMM_VIT_LAYER_NAMES,
  TORCHSCALE_LAYER_NAMES,
  type TransformerLayerConfig,
  type TransformerLayerNames,
} from './transformer-layer.js';

/**
 * How experts are named. 'suffix': siblings `<base>_<name>` (VLMo `mlp_imag`, `norm2_text`);
 * 'child': children `<base>.<name>` (torchscale `ffn.A`, `final_layer_norm.B`).
 */
export interface ExpertNames {
  style: 'suffix' | 'child';
  vision: string;
  language: string;
  vl: string;
}

export const VLMO_EXPERT_NAMES: ExpertNames = { style: 'suffix', vision: 'imag', language: 'text', vl: 'vl' };
export const TORCHSCALE_EXPERT_NAMES: ExpertNames = { style: 'child', vision: 'A', language: 'B', vl: 'C' };

export interface MultiwayLayerConfig extends Omit<TransformerLayerConfig, 'attentionKind' | 'kvSize'> {
  experts?: ExpertNames;
  /** BEiT-3: norm1, the attention projections and its inner norm are per-modality too. */
  multiwayAttention?: boolean;
  /** Has a VL-FFN (VLMo: layers ≥ `vlffn_start_layer_index`); it serves split routes. */
  vlExpert?: boolean;
}

/** VLMo defaults: fused qkv with q/v biases, layer scale, suffix experts. */
export const VLMO_LAYER_PRESET: Partial<MultiwayLayerConfig> = {
  qkvLayout: 'fused',
  qkvBias: 'qv',
  layerScaleInit: 0.1,
  experts: VLMO_EXPERT_NAMES,
  names: TIMM_VIT_LAYER_NAMES,
};

/** BEiT-3 defaults: torchscale names, sub-LN, multiway attention, A/B children. */
export const BEIT3_LAYER_PRESET: Partial<MultiwayLayerConfig> = {
  qkvLayout: 'separate',
  qkvBias: 'full',
  subLn: true,
  multiwayAttention: true,
  experts: TORCHSCALE_EXPERT_NAMES,
  names: TORCHSCALE_LAYER_NAMES,
};

export interface MultiwayLayerForward {
  route: Route;
  /** Additive mask broadcastable to [B, H, T, T]. */
  mask?: tf.Tensor | null;
  causal?: boolean;
  cache?: AttentionCache | null;
  rng?: Rng;
  outputAttentions?: boolean;
}

export type MultiwayLayerOutput = {
  hidden: tf.Tensor;
  attentions?: tf.Tensor;
};

type Expert = 'vision' | 'language' | 'vl';

export class MultiwayLayer extends PathModule {
  readonly attn: MultiHeadAttention;
  readonly norm1: (x: tf.Tensor, route: Route) => tf.Tensor;
  readonly norm2: Map<Expert, LayerNorm> = new Map();
  readonly mlp: Map<Expert, FeedForward> = new Map();
  readonly gamma1: tf.Variable | null;
  readonly gamma2: tf.Variable | null;
  readonly dropPath: DropPath;
  readonly hasVlExpert: boolean;

  constructor(config: MultiwayLayerConfig, rng: Rng) {
    super();
    const names: TransformerLayerNames = { ...TIMM_VIT_LAYER_NAMES, ...config.names };
    const experts = config.experts ?? VLMO_EXPERT_NAMES;
    const d = config.hiddenSize;
    const eps = config.layerNormEps ?? 1e-6;
    const sub = config.subLn ? eps : null;
    const mwNames = { vision: experts.vision, language: experts.language };
    this.hasVlExpert = config.vlExpert ?? false;

    if (config.multiwayAttention) {
      const n1 = this.placeModule(names.norm1, new Multiway(() => new LayerNorm(d, eps), mwNames));
      this.norm1 = (x, route) => n1.forward(x, route, (n, p) => n.forward(p));
    } else {
      const n1 = this.placeModule(names.norm1, new LayerNorm(d, eps));
      this.norm1 = (x) => n1.forward(x);
    }
    this.attn = this.placeModule(
      names.attn,
      new MultiHeadAttention(
        {
          hiddenSize: d,
          numHeads: config.numHeads,
          layout: config.qkvLayout ?? 'fused',
          qkvBias: config.qkvBias,
          innerNormEps: sub,
          multiway: config.multiwayAttention ? mwNames : false,
          attentionDropout: config.attentionDropout,
          names: names.attention,
        },
        rng,
      ),
    );
    // Norms first, then FFNs, per expert: the registration order VLMo's Block uses.
    const expertList: Expert[] = this.hasVlExpert ? ['language', 'vision', 'vl'] : ['language', 'vision'];
    const at = (base: string, e: Expert) =>
      experts.style === 'suffix' ? `${base}_${experts[e]}` : `${base}.${experts[e]}`;
    for (const e of expertList) this.norm2.set(e, this.placeModule(at(names.norm2, e), new LayerNorm(d, eps)));
    for (const e of expertList) {
      const ffn = new FeedForward(
        { dim: d, hiddenDim: config.intermediateSize, activation: config.activation, innerNormEps: sub, names: names.mlpNames },
        rng,
      );
      this.mlp.set(e, this.placeModule(at(names.mlp, e), ffn));
    }
    const ls = config.layerScaleInit;
    this.gamma1 = ls != null ? this.placeParameter(names.gamma1, tf.fill([d], ls)) : null;
    this.gamma2 = ls != null ? this.placeParameter(names.gamma2, tf.fill([d], ls)) : null;
    this.dropPath = this.registerModule('drop_path', new DropPath(config.dropPath ?? 0));
  }

  private ffn(e: Expert, x: tf.Tensor, rng?: Rng): tf.Tensor {
    const norm = this.norm2.get(e) as LayerNorm;
    const mlp = this.mlp.get(e) as FeedForward;
    return mlp.forward(norm.forward(x), rng);
  }

  /**
   * x: [B, T, D] → [B, T, D]. Route 'vision' / 'language' sends every token to that expert; a
   * split route sends each part to its expert, or all tokens to the VL expert when this layer
   * has one (VLMo fusion layers).
   */
  forward(x: tf.Tensor, options: MultiwayLayerForward): MultiwayLayerOutput {
    const { route, rng } = options;
    return tf.tidy(() => {
      const a = this.attn.forward(this.norm1(x, route), {
        mask: options.mask,
        causal: options.causal,
        cache: options.cache,
        route,
        rng,
        outputAttentions: options.outputAttentions,
      });
      let h = tf.add(x, this.dropPath.forward(layerScale(a.output, this.gamma1), rng));
      const m =
        typeof route !== 'string' && this.hasVlExpert
          ? this.ffn('vl', h, rng)
          : applyRouted(h, route, {
              vision: (p) => this.ffn('vision', p, rng),
              language: (p) => this.ffn('language', p, rng),
            });
      h = tf.add(h, this.dropPath.forward(layerScale(m, this.gamma2), rng));
      return a.attentions ? { hidden: h, attentions: a.attentions } : { hidden: h };
    });
  }
}
