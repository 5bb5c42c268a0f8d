// BLIP configuration: the snake_case keys of Hugging Face's `config.json` (transformers v4.30
// `configuration_blip.py`: BlipConfig with nested vision_config / text_config), zod-validated at
// the boundary, plus presets `tiny` (tests) and `base` (the paper's ViT-B/16 + BERT-base).
import { VlError, validateConfig } from '@vl/core';
import { z } from 'zod';

/** HF `BlipVisionConfig`. Unknown keys (generation defaults HF writes into every sub-config) are kept. */
export interface BlipVisionConfig {
  hidden_size: number; // ViT width; 768 for ViT-B
  intermediate_size: number; // MLP width, 4 × hidden
  num_hidden_layers: number;
  num_attention_heads: number;
  num_channels: number; // RGB
  image_size: number; // 384 for HF checkpoints (fine-tuned), 224 during pretraining
  patch_size: number; // 16 for ViT-B/16
  hidden_act: 'gelu';
  layer_norm_eps: number; // 1e-5: BLIP's ViT uses torch's LayerNorm default
  attention_dropout: number;
  initializer_range: number;
  [key: string]: unknown;
}

/** HF `BlipTextConfig`. */
export interface BlipTextConfig {
  vocab_size: number; // bert-base-uncased 30522 + [DEC] + [ENC]
  hidden_size: number;
  encoder_hidden_size: number; // width of the image features cross-attention reads (= vision hidden)
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  hidden_act: 'gelu';
  layer_norm_eps: number; // 1e-12 as BERT
  hidden_dropout_prob: number;
  attention_probs_dropout_prob: number;
  initializer_range: number;
  bos_token_id: number; // [DEC]: starts every caption
  pad_token_id: number;
  eos_token_id: number;
  sep_token_id: number; // [SEP]: generation stops on it
  max_length?: number; // HF generation default (20)
  [key: string]: unknown;
}

/** HF `BlipConfig`. */
export interface BlipConfig {
  model_type: 'blip';
  architectures?: string[];
  vision_config: BlipVisionConfig;
  text_config: BlipTextConfig;
  projection_dim: number; // BlipModel's CLIP-style projection (unused by captioning/retrieval)
  image_text_hidden_size: number; // ITC embedding width (256 in the paper)
  logit_scale_init_value: number;
  initializer_factor: number;
  initializer_range: number;
  [key: string]: unknown;
}

const int = (min = 1) => z.number().int().min(min);

const visionSchema = z
  .object({
    hidden_size: int().default(768),
    intermediate_size: int().default(3072),
    num_hidden_layers: int(0).default(12),
    num_attention_heads: int().default(12),
    num_channels: int().default(3),
    image_size: int().default(384),
    patch_size: int().default(16),
    hidden_act: z.literal('gelu').default('gelu'),
    layer_norm_eps: z.number().positive().default(1e-5),
    attention_dropout: z.number().min(0).max(1).default(0),
    initializer_range: z.number().default(1e-10),
  })
  .loose();

const textSchema = z
  .object({
    vocab_size: int().default(30524),
    hidden_size: int().default(768),
    encoder_hidden_size: int().default(768),
    intermediate_size: int().default(3072),
    num_hidden_layers: int(0).default(12),
    num_attention_heads: int().default(8),
    max_position_embeddings: int().default(512),
    hidden_act: z.literal('gelu').default('gelu'),
    layer_norm_eps: z.number().positive().default(1e-12),
    hidden_dropout_prob: z.number().min(0).max(1).default(0),
    attention_probs_dropout_prob: z.number().min(0).max(1).default(0),
    initializer_range: z.number().default(0.02),
    bos_token_id: int(0).default(30522),
    pad_token_id: int(0).default(0),
    eos_token_id: int(0).default(2),
    sep_token_id: int(0).default(102),
    max_length: int().optional(),
  })
  .loose();

const blipSchema = z
  .object({
    model_type: z.literal('blip').default('blip'),
    architectures: z.array(z.string()).nullish().transform((v) => v ?? undefined),
    vision_config: visionSchema.default(() => visionSchema.parse({})),
    text_config: textSchema.default(() => textSchema.parse({})),
    projection_dim: int().default(512),
    image_text_hidden_size: int().default(256),
    logit_scale_init_value: z.number().default(2.6592),
    initializer_factor: z.number().default(1),
    initializer_range: z.number().default(0.02),
  })
  .loose();

/** Validates a parsed `config.json` (or a partial object): defaults are HF's, every bad field is listed. */
export function parseBlipConfig(value: unknown, subject = 'config.json'): BlipConfig {
  const cfg = validateConfig(value, blipSchema, subject) as BlipConfig;
  checkConsistency(cfg, subject);
  return cfg;
}

function checkConsistency(cfg: BlipConfig, subject: string): void {
  const v = cfg.vision_config;
  const t = cfg.text_config;
  const problems: string[] = [];
  if (v.image_size % v.patch_size !== 0) problems.push(`vision_config.image_size ${v.image_size} is not a multiple of patch_size ${v.patch_size}`);
  if (v.hidden_size % v.num_attention_heads !== 0) problems.push(`vision_config.hidden_size ${v.hidden_size} is not divisible by ${v.num_attention_heads} heads`);
  if (t.hidden_size % t.num_attention_heads !== 0) problems.push(`text_config.hidden_size ${t.hidden_size} is not divisible by ${t.num_attention_heads} heads`);
  if (t.encoder_hidden_size !== v.hidden_size) {
    problems.push(`text_config.encoder_hidden_size ${t.encoder_hidden_size} differs from vision_config.hidden_size ${v.hidden_size}`);
  }
  for (const k of ['bos_token_id', 'pad_token_id', 'eos_token_id', 'sep_token_id'] as const) {
    if (t[k] >= t.vocab_size) problems.push(`text_config.${k} ${t[k]} is outside the vocabulary (${t.vocab_size})`);
  }
  if (problems.length) throw new VlError('CONFIG_INVALID', problems.join('; '), { subject, hint: 'fix the config so the towers fit together' });
}

export type BlipPresetName = 'tiny' | 'base';

/**
 * Named presets. `tiny` is the size of the reference fixtures (2 layers, width 32) and trains in
 * seconds; `base` is the paper's ViT-B/16 (384px, as the released captioning/retrieval checkpoints)
 * with BERT-base (12 heads, as Salesforce's `med_config.json`, not HF's 8-head default).
 */
export function blipPreset(name: BlipPresetName, overrides: { vocab_size?: number; image_size?: number } = {}): BlipConfig {
  if (name === 'tiny') {
    return parseBlipConfig({
      vision_config: {
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        image_size: overrides.image_size ?? 32,
        patch_size: 8,
      },
      text_config: {
        vocab_size: overrides.vocab_size ?? 99,
        hidden_size: 32,
        encoder_hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        max_position_embeddings: 64,
        bos_token_id: (overrides.vocab_size ?? 99) - 2, // [DEC] sits after the vocabulary, as BLIP's 30522
        sep_token_id: 3,
        eos_token_id: 2,
        pad_token_id: 0,
      },
      projection_dim: 16,
      image_text_hidden_size: 16,
      // ≈ 1/√32: BERT's 0.02 suits width 768; at width 32 it shrinks every linear map ~10×.
      initializer_range: 0.15,
    }, 'preset tiny');
  }
  if (name === 'base') {
    return parseBlipConfig({
      vision_config: {
        hidden_size: 768,
        intermediate_size: 3072,
        num_hidden_layers: 12,
        num_attention_heads: 12,
        image_size: overrides.image_size ?? 384,
        patch_size: 16,
      },
      text_config: {
        vocab_size: overrides.vocab_size ?? 30524,
        hidden_size: 768,
        encoder_hidden_size: 768,
        intermediate_size: 3072,
        num_hidden_layers: 12,
        num_attention_heads: 12,
        max_position_embeddings: 512,
        bos_token_id: (overrides.vocab_size ?? 30524) - 2,
        sep_token_id: 102,
        eos_token_id: 2,
        pad_token_id: 0,
      },
      projection_dim: 512,
      image_text_hidden_size: 256,
    }, 'preset base');
  }
  throw new VlError('INVALID_ARGUMENT', `unknown preset '${String(name)}'`, { hint: "use 'tiny' or 'base'" });
}

/** The config with token ids taken from a tokenizer (pretraining on a new vocabulary). */
export function withTokenizerIds(
  cfg: BlipConfig,
  tok: { vocabSize: number; padId: number; sepId: number; decId: number | undefined; clsId: number },
): BlipConfig {
  const bos = tok.decId ?? tok.clsId;
  return parseBlipConfig({
    ...cfg,
    text_config: {
      ...cfg.text_config,
      vocab_size: tok.vocabSize,
      pad_token_id: tok.padId,
      sep_token_id: tok.sepId,
      bos_token_id: bos,
      eos_token_id: tok.sepId,
    },
  });
}
