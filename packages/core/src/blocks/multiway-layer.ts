// Multiway transformer layer (VLMo `multiway_transformer.Block`, BEiT-3 / torchscale `EncoderLayer` with
// multiway=True): a TransformerLayer whose chosen parts have one copy per expert, with a route required in
// every forward. Which expert each token uses is the caller's `route`; see multiway.ts.
//
// Parameter names, VLMo layout (experts as suffixes, VLMO_FUSION_EXPERTS adds the `_vl` ones; the
// preset is VLMO_LAYER_PRESET in @vl/vlmo):
//   gamma_1, gamma_2, norm1.*, attn.q_bias, attn.v_bias, attn.qkv.weight, attn.proj.*,
//   norm2_text.*, norm2_imag.*, [norm2_vl.*], mlp_text.fc{1,2}.*, mlp_imag.fc{1,2}.*, [mlp_vl.fc{1,2}.*]
// BEiT-3 layout (experts as children A = image, B = text; attention multiway too; the preset is
// BEIT3_LAYER_PRESET in @vl/beit3):
//   self_attn_layer_norm.{A,B}.*, self_attn.{q,k,v,out}_proj.{A,B}.*, self_attn.inner_attn_ln.{A,B}.*,
//   final_layer_norm.{A,B}.*, ffn.{A,B}.{fc1,ffn_layernorm,fc2}.*
import type * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../runtime/rng.js';
import type { ExpertNaming, Route } from './multiway.js';
import {
  type LayerPart,
  TransformerLayer,
  type TransformerLayerConfig,
  type TransformerLayerForward,
  type TransformerLayerOutput,
} from './transformer-layer.js';

export interface MultiwayLayerConfig extends Omit<TransformerLayerConfig, 'attentionKind' | 'kvSize' | 'experts'> {
  /** The experts and their checkpoint names (VLMO_EXPERTS, VLMO_FUSION_EXPERTS, TORCHSCALE_EXPERTS). */
  experts: ExpertNaming;
  /** The parts with experts. Default ['norm2', 'mlp'] (VLMo); BEiT-3 has all four. */
  multiwayParts?: readonly LayerPart[];
}

export interface MultiwayLayerForward extends Omit<TransformerLayerForward, 'context' | 'route'> {
  route: Route;
}

export class MultiwayLayer extends TransformerLayer {
  constructor(config: MultiwayLayerConfig, rng: Rng) {
    const { experts, multiwayParts, ...layer } = config;
    super({ ...layer, experts: { naming: experts, parts: multiwayParts ?? ['norm2', 'mlp'] } }, rng);
  }

  /** x: [B, T, D] → [B, T, D]. */
  override forward(x: tf.Tensor, options: MultiwayLayerForward): TransformerLayerOutput {
    return super.forward(x, options);
  }
}
