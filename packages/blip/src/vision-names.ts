// HF `BlipVisionModel`'s parameter names for core's VisionTransformer (core defaults to timm's):
//   embeddings.class_embedding [1, 1, D], embeddings.patch_embedding.{weight [D, C, P, P], bias [D]},
//   embeddings.position_embedding [1, N + 1, D], encoder.layers.<i>.{layer_norm1, self_attn.qkv,
//   self_attn.projection, layer_norm2, mlp.fc1, mlp.fc2}.*, post_layernorm.{weight,bias}
import type { AttentionNames, TransformerLayerNames, VisionTransformerNames } from '@vl/core';

export const BLIP_VISION_ATTENTION_NAMES: Partial<AttentionNames> = { qkv: 'qkv', out: 'projection' };

export const BLIP_VISION_LAYER_NAMES: TransformerLayerNames = {
  norm1: 'layer_norm1',
  attn: 'self_attn',
  norm2: 'layer_norm2',
  mlp: 'mlp',
  gamma1: 'gamma_1',
  gamma2: 'gamma_2',
  normKv: 'layer_norm_kv',
  attention: BLIP_VISION_ATTENTION_NAMES,
  mlpNames: {},
};

export const BLIP_VISION_NAMES: VisionTransformerNames = {
  classEmbedding: 'embeddings.class_embedding',
  positionEmbedding: 'embeddings.position_embedding',
  patchEmbedding: 'embeddings.patch_embedding',
  layers: 'encoder.layers',
  preNorm: 'pre_layrnorm',
  postNorm: 'post_layernorm',
  layer: BLIP_VISION_LAYER_NAMES,
};
