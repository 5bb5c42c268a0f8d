// CoCa and CLIP configuration, as open_clip v3.3.0 writes it: `open_clip_config.json` =
// `{ model_cfg: { embed_dim, vision_cfg, text_cfg, multimodal_cfg?, custom_text? }, preprocess_cfg }`
// (model_configs/coca_ViT-B-32.json, ViT-B-32.json). Files keep snake_case; TypeScript sees camelCase.
// Defaults are open_clip's dataclass defaults (`CLIPVisionCfg`, `CLIPTextCfg`, `MultimodalCfg`), so a
// config that omits a field builds what open_clip builds (e.g. 256 pooler queries).
import { camelizeKeys, snakeKey, snakifyKeys, validateConfig, VlError } from '@vl/core';
import { z } from 'zod';

/** `CLIPVisionCfg`, the fields this port reads (others are kept). */
export interface VisionCfg {
  imageSize: number;
  patchSize: number;
  width: number;
  layers: number;
  /** Heads = width / headWidth (open_clip default 64). */
  headWidth: number;
  mlpRatio: number;
  /** CoCa: one attentional pooler over the trunk tokens (query 0 → contrastive, the rest → captioning). */
  attentionalPool: boolean;
  /** Pooler queries Q (default 256: 255 caption tokens). */
  attnPoolerQueries: number;
  /** Pooler heads (default 8); `multimodal_cfg.attn_pooler_heads` is ignored by open_clip. */
  attnPoolerHeads: number;
  /**
   * Ours, for the pooling ablation (not an open_clip key; absent in open_clip configs): where CoCa's
   * contrastive feature comes from. 'attn' (open_clip): pooler query 0. 'mean' / 'cls': the mean of the
   * trunk tokens / the trunk's CLS, through its own `contrastive_ln` and `contrastive_proj`; the pooler
   * then only makes the captioning tokens.
   */
  contrastivePool?: 'attn' | 'mean' | 'cls';
  [key: string]: unknown;
}

/** `CLIPTextCfg`. */
export interface TextCfg {
  contextLength: number;
  vocabSize: number;
  width: number;
  heads: number;
  layers: number;
  mlpRatio: number;
  /** CoCa: a learned CLS appended after the text (`cls_emb`). */
  embedCls: boolean;
  padId: number;
  [key: string]: unknown;
}

/** `MultimodalCfg`: the captioning decoder (no embeddings of its own). */
export interface MultimodalCfg {
  contextLength: number;
  vocabSize: number;
  width: number;
  heads: number;
  layers: number;
  [key: string]: unknown;
}

export interface OpenClipModelCfg {
  embedDim: number;
  visionCfg: VisionCfg;
  textCfg: TextCfg;
  /** Present for CoCa only. */
  multimodalCfg?: MultimodalCfg;
  customText?: boolean;
  quickGelu?: boolean;
  [key: string]: unknown;
}

/** The whole open_clip_config.json in camelCase. */
export interface OpenClipConfig {
  modelCfg: OpenClipModelCfg;
  preprocessCfg?: Record<string, unknown>;
  [key: string]: unknown;
}

const posInt = z.number().int().positive();
const visionSchema = z
  .object({
    imageSize: posInt,
    patchSize: posInt,
    width: posInt,
    layers: posInt,
    headWidth: posInt.default(64),
    mlpRatio: z.number().positive().default(4),
    attentionalPool: z.boolean().default(false),
    attnPoolerQueries: posInt.default(256),
    attnPoolerHeads: posInt.default(8),
    contrastivePool: z.enum(['attn', 'mean', 'cls']).optional(),
    lsInitValue: z.null().optional(),
  })
  .loose();
const textSchema = z
  .object({
    contextLength: posInt.default(77),
    vocabSize: posInt.default(49408),
    width: posInt.default(512),
    heads: posInt.default(8),
    layers: posInt.default(12),
    mlpRatio: z.number().positive().default(4),
    embedCls: z.boolean().default(false),
    padId: z.number().int().nonnegative().default(0),
    lsInitValue: z.null().optional(),
  })
  .loose();
const multimodalSchema = z
  .object({
    contextLength: posInt.default(76),
    vocabSize: posInt.default(49408),
    width: posInt.default(512),
    heads: posInt.default(8),
    layers: posInt.default(12),
    lsInitValue: z.null().optional(),
  })
  .loose();

export const openClipConfigSchema = z
  .object({
    modelCfg: z
      .object({
        embedDim: posInt,
        visionCfg: visionSchema,
        textCfg: textSchema,
        multimodalCfg: multimodalSchema.optional(),
        customText: z.boolean().optional(),
        quickGelu: z.boolean().optional(),
      })
      .loose(),
    preprocessCfg: z.record(z.string(), z.unknown()).optional(),
  })
  .loose();

function invalid(subject: string, message: string, hint?: string): VlError {
  return new VlError('CONFIG_INVALID', message, { subject, hint });
}

/** Parses open_clip_config.json (snake_case) or a bare `model_cfg` into a checked camelCase config. */
export function parseOpenClipConfig(raw: unknown, subject = 'config.json'): OpenClipConfig {
  const camel = camelizeKeys<Record<string, unknown>>(raw, { subject });
  // A bare model config (the model_configs/*.json files) is accepted too.
  const wrapped = camel && typeof camel === 'object' && 'modelCfg' in camel ? camel : { modelCfg: camel };
  const parsed = validateConfig(wrapped, openClipConfigSchema, subject, snakeKey) as OpenClipConfig;
  const m = parsed.modelCfg;
  if (m.visionCfg.width % m.visionCfg.headWidth !== 0) {
    throw invalid(subject, `vision_cfg.width ${m.visionCfg.width} is not a multiple of head_width ${m.visionCfg.headWidth}`);
  }
  if (m.visionCfg.imageSize % m.visionCfg.patchSize !== 0) {
    throw invalid(subject, `vision_cfg.image_size ${m.visionCfg.imageSize} is not a multiple of patch_size ${m.visionCfg.patchSize}`);
  }
  if (m.multimodalCfg) {
    // CoCa feeds the text tokens and the pooled image tokens straight into the decoder (no projections).
    if (m.textCfg.width !== m.embedDim || m.multimodalCfg.width !== m.embedDim) {
      throw invalid(
        subject,
        `CoCa needs embed_dim = text_cfg.width = multimodal_cfg.width, got ${m.embedDim}, ${m.textCfg.width}, ${m.multimodalCfg.width}`,
      );
    }
    if (!m.visionCfg.attentionalPool) throw invalid(subject, 'CoCa needs vision_cfg.attentional_pool: true', 'set it, as coca_*.json do');
    if (m.visionCfg.attnPoolerQueries < 2) throw invalid(subject, 'CoCa needs at least 2 pooler queries (1 contrastive + captioning)');
    if (!m.textCfg.embedCls) throw invalid(subject, 'CoCa needs text_cfg.embed_cls: true');
  }
  return parsed;
}

/** Writes the config back as open_clip_config.json (snake_case). */
export function openClipConfigToJson(config: OpenClipConfig): Record<string, unknown> {
  return snakifyKeys<Record<string, unknown>>(config);
}

export function isCocaConfig(config: OpenClipConfig): boolean {
  return config.modelCfg.multimodalCfg !== undefined;
}

/** OpenAI's CLIP pixel statistics (the CoCa tags' preprocess_cfg). */
export const OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const OPENAI_STD = [0.26862954, 0.26130258, 0.27577711] as const;

export type OpenClipPresetName = 'tiny' | 'base';
export interface PresetOverrides {
  vocabSize?: number;
  imageSize?: number;
}

/**
 * Presets. `base` is open_clip's model_configs/coca_ViT-B-32.json (CoCa) and ViT-B-32.json (CLIP);
 * `tiny` is the size of the fixtures (fast tests and synthetic training).
 */
export function cocaPreset(name: OpenClipPresetName, o: PresetOverrides = {}): OpenClipConfig {
  const vocabSize = o.vocabSize ?? 49408;
  if (name === 'base') {
    return parseOpenClipConfig({
      model_cfg: {
        embed_dim: 512,
        vision_cfg: {
          image_size: o.imageSize ?? 224,
          layers: 12,
          width: 768,
          patch_size: 32,
          attentional_pool: true,
          attn_pooler_heads: 8,
        },
        text_cfg: { context_length: 76, vocab_size: vocabSize, layers: 12, heads: 8, width: 512, embed_cls: true },
        multimodal_cfg: { context_length: 76, vocab_size: vocabSize, width: 512, heads: 8, layers: 12, attn_pooler_heads: 8 },
        custom_text: true,
      },
    });
  }
  return parseOpenClipConfig({
    model_cfg: {
      embed_dim: 32,
      vision_cfg: {
        image_size: o.imageSize ?? 32,
        layers: 2,
        width: 32,
        head_width: 8,
        patch_size: 8,
        attentional_pool: true,
        attn_pooler_queries: 9,
        attn_pooler_heads: 4,
      },
      text_cfg: { context_length: 24, vocab_size: vocabSize, width: 32, heads: 4, layers: 2, embed_cls: true },
      multimodal_cfg: { context_length: 24, vocab_size: vocabSize, width: 32, heads: 4, layers: 2 },
      custom_text: true,
    },
  });
}

export function clipPreset(name: OpenClipPresetName, o: PresetOverrides = {}): OpenClipConfig {
  const vocabSize = o.vocabSize ?? 49408;
  if (name === 'base') {
    return parseOpenClipConfig({
      model_cfg: {
        embed_dim: 512,
        vision_cfg: { image_size: o.imageSize ?? 224, layers: 12, width: 768, patch_size: 32 },
        text_cfg: { context_length: 77, vocab_size: vocabSize, width: 512, heads: 8, layers: 12 },
      },
    });
  }
  return parseOpenClipConfig({
    model_cfg: {
      embed_dim: 32,
      vision_cfg: { image_size: o.imageSize ?? 32, layers: 2, width: 32, head_width: 8, patch_size: 8 },
      text_cfg: { context_length: 24, vocab_size: vocabSize, width: 32, heads: 4, layers: 2 },
    },
  });
}
