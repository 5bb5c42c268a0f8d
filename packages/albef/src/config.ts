// ALBEF configuration: the three sections of the official setup (salesforce/ALBEF
// `configs/Pretrain.yaml` → `albef_config`, `configs/config_bert.json` → `bert_config`, the ViT
// arguments hard-coded in `models/model_pretrain.py` → `vision_config`) with presets `tiny` and
// `base`, and a validator for `config.json` files.
import { VlError } from '@vl/core';

/** Pretraining hyper-parameters (`configs/Pretrain.yaml` and `ALBEF.__init__`). */
export interface AlbefSection {
  /** Input resolution; Pretrain.yaml 256. */
  image_res: number;
  /** ViT width, the fusion layers' cross-attention key/value size; 768 for ViT-B/16. */
  vision_width: number;
  /** Joint ITC embedding size after vision_proj / text_proj; 256 in the paper. */
  embed_dim: number;
  /** Initial contrastive temperature; learned, clamped to [0.001, 0.5]. */
  temp: number;
  /** Share of text tokens selected for MLM; BERT's 0.15. */
  mlm_probability: number;
  /** Momentum features kept for ITC; 65,536 in the paper. */
  queue_size: number;
  /** EMA decay of the momentum twins; 0.995. */
  momentum: number;
  /** Momentum-distillation weight; 0.4, ramped over the first epoch. */
  alpha: number;
}

/** The BERT config (`config_bert.json`) with ALBEF's two additions. */
export interface AlbefBertConfig {
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  max_position_embeddings: number;
  /** 2 for bert-base-uncased. */
  type_vocab_size: number;
  layer_norm_eps: number;
  hidden_dropout_prob: number;
  attention_probs_dropout_prob: number;
  pad_token_id: number;
  /** First layer with cross-attention: layers [0, fusion_layer) are the text encoder, the rest fuse. ALBEF 6. */
  fusion_layer: number;
  /** Width of the image features the fusion layers attend to (= vision width). */
  encoder_width: number;
}

/** timm-style ViT arguments (`models/vit.py` `VisionTransformer`). */
export interface AlbefVisionConfig {
  img_size: number;
  patch_size: number;
  embed_dim: number;
  depth: number;
  num_heads: number;
  mlp_ratio: number;
  /** Stochastic depth at the last block; ALBEF pretraining 0. */
  drop_path_rate: number;
}

/** Special token ids (bert-base-uncased: pad 0, unk 100, cls 101, sep 102, mask 103). */
export interface AlbefTokens {
  pad: number;
  unk: number;
  cls: number;
  sep: number;
  mask: number;
}

export interface AlbefConfig {
  model_type: 'albef';
  albef_config: AlbefSection;
  bert_config: AlbefBertConfig;
  vision_config: AlbefVisionConfig;
  tokens: AlbefTokens;
}

/** The paper's model: ViT-B/16 at 256 px, BERT-base split 6 + 6, 256-d ITC, 65,536-item queue. */
export const ALBEF_BASE: AlbefConfig = {
  model_type: 'albef',
  albef_config: {
    image_res: 256,
    vision_width: 768,
    embed_dim: 256,
    temp: 0.07,
    mlm_probability: 0.15,
    queue_size: 65536,
    momentum: 0.995,
    alpha: 0.4,
  },
  bert_config: {
    vocab_size: 30522,
    hidden_size: 768,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    intermediate_size: 3072,
    max_position_embeddings: 512,
    type_vocab_size: 2,
    layer_norm_eps: 1e-12,
    hidden_dropout_prob: 0.1,
    attention_probs_dropout_prob: 0.1,
    pad_token_id: 0,
    fusion_layer: 6,
    encoder_width: 768,
  },
  vision_config: { img_size: 256, patch_size: 16, embed_dim: 768, depth: 12, num_heads: 12, mlp_ratio: 4, drop_path_rate: 0 },
  tokens: { pad: 0, unk: 100, cls: 101, sep: 102, mask: 103 },
};

/** The reference fixture's sizes (fixtures/albef-official): 32 px images, width 32, 2 + 2 text/fusion layers. */
export const ALBEF_TINY: AlbefConfig = {
  model_type: 'albef',
  albef_config: {
    image_res: 32,
    vision_width: 32,
    embed_dim: 16,
    temp: 0.07,
    mlm_probability: 0.15,
    queue_size: 8,
    momentum: 0.995,
    alpha: 0.4,
  },
  bert_config: {
    vocab_size: 99,
    hidden_size: 32,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    intermediate_size: 64,
    max_position_embeddings: 64,
    type_vocab_size: 2,
    layer_norm_eps: 1e-12,
    hidden_dropout_prob: 0.1,
    attention_probs_dropout_prob: 0.1,
    pad_token_id: 0,
    fusion_layer: 2,
    encoder_width: 32,
  },
  vision_config: { img_size: 32, patch_size: 8, embed_dim: 32, depth: 2, num_heads: 4, mlp_ratio: 2, drop_path_rate: 0 },
  tokens: { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 },
};

export const ALBEF_PRESETS = { tiny: ALBEF_TINY, base: ALBEF_BASE } as const;
export type AlbefPresetName = keyof typeof ALBEF_PRESETS;

/** A deep copy of a preset with sections overridden field by field. */
export function albefConfig(
  preset: AlbefPresetName | AlbefConfig = 'tiny',
  overrides: {
    albef_config?: Partial<AlbefSection>;
    bert_config?: Partial<AlbefBertConfig>;
    vision_config?: Partial<AlbefVisionConfig>;
    tokens?: Partial<AlbefTokens>;
  } = {},
): AlbefConfig {
  const base = typeof preset === 'string' ? ALBEF_PRESETS[preset] : preset;
  const config: AlbefConfig = {
    model_type: 'albef',
    albef_config: { ...base.albef_config, ...overrides.albef_config },
    bert_config: { ...base.bert_config, ...overrides.bert_config },
    vision_config: { ...base.vision_config, ...overrides.vision_config },
    tokens: { ...base.tokens, ...overrides.tokens },
  };
  return validateAlbefConfig(config, 'albefConfig');
}

function section(value: unknown, name: string, subject: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new VlError('CONFIG_INVALID', `'${name}' must be an object`, { subject });
  }
  return value as Record<string, unknown>;
}

function num(obj: Record<string, unknown>, key: string, where: string, subject: string, fallback?: number, integer = false): number {
  const v = obj[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw new VlError('CONFIG_INVALID', `${where}.${key} must be a${integer ? 'n integer' : ' finite number'}, got ${JSON.stringify(v)}`, {
      subject,
    });
  }
  return v;
}

/**
 * Checks a parsed `config.json` (or a built config) and fills fields the reference files leave
 * implicit (`drop_path_rate`, `tokens`, `model_type`). Extra keys (notes in the fixture) are ignored.
 */
export function validateAlbefConfig(raw: unknown, subject = 'config.json'): AlbefConfig {
  const root = section(raw, 'config', subject);
  const a = section(root.albef_config, 'albef_config', subject);
  const b = section(root.bert_config, 'bert_config', subject);
  const v = section(root.vision_config, 'vision_config', subject);
  const t = root.tokens === undefined ? { ...ALBEF_BASE.tokens } : section(root.tokens, 'tokens', subject);
  const int = (o: Record<string, unknown>, k: string, w: string, f?: number) => num(o, k, w, subject, f, true);
  const config: AlbefConfig = {
    model_type: 'albef',
    albef_config: {
      image_res: int(a, 'image_res', 'albef_config'),
      vision_width: int(a, 'vision_width', 'albef_config'),
      embed_dim: int(a, 'embed_dim', 'albef_config'),
      temp: num(a, 'temp', 'albef_config', subject, 0.07),
      mlm_probability: num(a, 'mlm_probability', 'albef_config', subject, 0.15),
      queue_size: int(a, 'queue_size', 'albef_config'),
      momentum: num(a, 'momentum', 'albef_config', subject, 0.995),
      alpha: num(a, 'alpha', 'albef_config', subject, 0.4),
    },
    bert_config: {
      vocab_size: int(b, 'vocab_size', 'bert_config'),
      hidden_size: int(b, 'hidden_size', 'bert_config'),
      num_hidden_layers: int(b, 'num_hidden_layers', 'bert_config'),
      num_attention_heads: int(b, 'num_attention_heads', 'bert_config'),
      intermediate_size: int(b, 'intermediate_size', 'bert_config'),
      max_position_embeddings: int(b, 'max_position_embeddings', 'bert_config'),
      type_vocab_size: int(b, 'type_vocab_size', 'bert_config', 2),
      layer_norm_eps: num(b, 'layer_norm_eps', 'bert_config', subject, 1e-12),
      hidden_dropout_prob: num(b, 'hidden_dropout_prob', 'bert_config', subject, 0.1),
      attention_probs_dropout_prob: num(b, 'attention_probs_dropout_prob', 'bert_config', subject, 0.1),
      pad_token_id: int(b, 'pad_token_id', 'bert_config', 0),
      fusion_layer: int(b, 'fusion_layer', 'bert_config'),
      encoder_width: int(b, 'encoder_width', 'bert_config'),
    },
    vision_config: {
      img_size: int(v, 'img_size', 'vision_config'),
      patch_size: int(v, 'patch_size', 'vision_config'),
      embed_dim: int(v, 'embed_dim', 'vision_config'),
      depth: int(v, 'depth', 'vision_config'),
      num_heads: int(v, 'num_heads', 'vision_config'),
      mlp_ratio: num(v, 'mlp_ratio', 'vision_config', subject),
      drop_path_rate: num(v, 'drop_path_rate', 'vision_config', subject, 0),
    },
    tokens: {
      pad: int(t, 'pad', 'tokens'),
      unk: int(t, 'unk', 'tokens'),
      cls: int(t, 'cls', 'tokens'),
      sep: int(t, 'sep', 'tokens'),
      mask: int(t, 'mask', 'tokens'),
    },
  };
  const problems: string[] = [];
  const { bert_config: bc, vision_config: vc, albef_config: ac } = config;
  if (bc.fusion_layer < 0 || bc.fusion_layer > bc.num_hidden_layers) problems.push(`fusion_layer ${bc.fusion_layer} outside [0, ${bc.num_hidden_layers}]`);
  if (bc.hidden_size % bc.num_attention_heads !== 0) problems.push(`hidden_size ${bc.hidden_size} not divisible by ${bc.num_attention_heads} heads`);
  if (vc.embed_dim % vc.num_heads !== 0) problems.push(`vision embed_dim ${vc.embed_dim} not divisible by ${vc.num_heads} heads`);
  if (vc.img_size % vc.patch_size !== 0) problems.push(`img_size ${vc.img_size} not a multiple of patch_size ${vc.patch_size}`);
  if (bc.encoder_width !== vc.embed_dim) problems.push(`bert_config.encoder_width ${bc.encoder_width} ≠ vision embed_dim ${vc.embed_dim}`);
  if (ac.vision_width !== vc.embed_dim) problems.push(`albef_config.vision_width ${ac.vision_width} ≠ vision embed_dim ${vc.embed_dim}`);
  if (ac.queue_size < 0) problems.push('queue_size must be ≥ 0 (0: in-batch negatives only)');
  if (!(ac.alpha >= 0 && ac.alpha <= 1)) problems.push(`alpha ${ac.alpha} outside [0, 1]`);
  if (!(ac.momentum >= 0 && ac.momentum <= 1)) problems.push(`momentum ${ac.momentum} outside [0, 1]`);
  if (problems.length) throw new VlError('CONFIG_INVALID', problems.join('; '), { subject });
  return config;
}
