// BLIP configuration: Hugging Face's `config.json` (transformers v4.30 `configuration_blip.py`:
// BlipConfig with nested vision_config / text_config) under camelCase names, translated from and to
// the file's snake_case at the boundary (blipConfigFromJson / blipConfigToJson), zod-validated, plus
// presets `tiny` (tests) and `base` (the paper's ViT-B/16 + BERT-base).
import { camelizeKeys, snakeKey, snakifyKeys, VlError, validateConfig } from '@vl/core';
import { z } from 'zod';

/** HF `BlipVisionConfig`. Unknown keys (generation defaults HF writes into every sub-config) are kept. */
export interface BlipVisionConfig {
  hiddenSize: number; // ViT width; 768 for ViT-B
  intermediateSize: number; // MLP width, 4 × hidden
  numHiddenLayers: number;
  numAttentionHeads: number;
  numChannels: number; // RGB
  imageSize: number; // 384 for HF checkpoints (fine-tuned), 224 during pretraining
  patchSize: number; // 16 for ViT-B/16
  hiddenAct: 'gelu';
  layerNormEps: number; // 1e-5: BLIP's ViT uses torch's LayerNorm default
  attentionDropout: number;
  initializerRange: number;
  [key: string]: unknown;
}

/** HF `BlipTextConfig`. */
export interface BlipTextConfig {
  vocabSize: number; // bert-base-uncased 30522 + [DEC] + [ENC]
  hiddenSize: number;
  encoderHiddenSize: number; // width of the image features cross-attention reads (= vision hidden)
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  maxPositionEmbeddings: number;
  hiddenAct: 'gelu';
  layerNormEps: number; // 1e-12 as BERT
  hiddenDropoutProb: number;
  attentionProbsDropoutProb: number;
  initializerRange: number;
  bosTokenId: number; // [DEC]: starts every caption
  padTokenId: number;
  eosTokenId: number;
  sepTokenId: number; // [SEP]: generation stops on it
  maxLength?: number; // HF generation default (20)
  [key: string]: unknown;
}

/** HF `BlipConfig`. */
export interface BlipConfig {
  modelType: 'blip';
  architectures?: string[];
  visionConfig: BlipVisionConfig;
  textConfig: BlipTextConfig;
  projectionDim: number; // BlipModel's CLIP-style projection (unused by captioning/retrieval)
  imageTextHiddenSize: number; // ITC embedding width (256 in the paper)
  logitScaleInitValue: number;
  initializerFactor: number;
  initializerRange: number;
  [key: string]: unknown;
}

const int = (min = 1) => z.number().int().min(min);

const visionSchema = z
  .object({
    hiddenSize: int().default(768),
    intermediateSize: int().default(3072),
    numHiddenLayers: int(0).default(12),
    numAttentionHeads: int().default(12),
    numChannels: int().default(3),
    imageSize: int().default(384),
    patchSize: int().default(16),
    hiddenAct: z.literal('gelu').default('gelu'),
    layerNormEps: z.number().positive().default(1e-5),
    attentionDropout: z.number().min(0).max(1).default(0),
    initializerRange: z.number().default(1e-10),
  })
  .loose();

const textSchema = z
  .object({
    vocabSize: int().default(30524),
    hiddenSize: int().default(768),
    encoderHiddenSize: int().default(768),
    intermediateSize: int().default(3072),
    numHiddenLayers: int(0).default(12),
    numAttentionHeads: int().default(8),
    maxPositionEmbeddings: int().default(512),
    hiddenAct: z.literal('gelu').default('gelu'),
    layerNormEps: z.number().positive().default(1e-12),
    hiddenDropoutProb: z.number().min(0).max(1).default(0),
    attentionProbsDropoutProb: z.number().min(0).max(1).default(0),
    initializerRange: z.number().default(0.02),
    bosTokenId: int(0).default(30522),
    padTokenId: int(0).default(0),
    eosTokenId: int(0).default(2),
    sepTokenId: int(0).default(102),
    maxLength: int().optional(),
  })
  .loose();

export const blipConfigSchema = z
  .object({
    modelType: z.literal('blip').default('blip'),
    architectures: z
      .array(z.string())
      .nullish()
      .transform((v) => v ?? undefined),
    visionConfig: visionSchema.default(() => visionSchema.parse({})),
    textConfig: textSchema.default(() => textSchema.parse({})),
    projectionDim: int().default(512),
    imageTextHiddenSize: int().default(256),
    logitScaleInitValue: z.number().default(2.6592),
    initializerFactor: z.number().default(1),
    initializerRange: z.number().default(0.02),
  })
  .loose();

/**
 * Validates a camelCase config (or a partial object): defaults are HF's, every bad field is listed.
 * `keyName` spells the listed paths as the source does (snakeKey for a config.json).
 */
export function parseBlipConfig(value: unknown, subject = 'BlipConfig', keyName?: (key: string) => string): BlipConfig {
  const cfg = validateConfig(value, blipConfigSchema, subject, keyName) as BlipConfig;
  checkConsistency(cfg, subject);
  return cfg;
}

/** A parsed `config.json` (HF snake_case keys) → BlipConfig; unknown keys are kept and come back on save. */
export function blipConfigFromJson(json: unknown, subject = 'config.json'): BlipConfig {
  return parseBlipConfig(camelizeKeys(json, { subject }), subject, snakeKey);
}

/** BlipConfig (plus any extra camelCase fields) → the `config.json` object, in HF's snake_case keys. */
export function blipConfigToJson(config: BlipConfig | Record<string, unknown>): Record<string, unknown> {
  return snakifyKeys(config, { subject: 'BlipConfig' });
}

function checkConsistency(cfg: BlipConfig, subject: string): void {
  const v = cfg.visionConfig;
  const t = cfg.textConfig;
  const problems: string[] = [];
  if (v.imageSize % v.patchSize !== 0) problems.push(`visionConfig.imageSize ${v.imageSize} is not a multiple of patchSize ${v.patchSize}`);
  if (v.hiddenSize % v.numAttentionHeads !== 0)
    problems.push(`visionConfig.hiddenSize ${v.hiddenSize} is not divisible by ${v.numAttentionHeads} heads`);
  if (t.hiddenSize % t.numAttentionHeads !== 0)
    problems.push(`textConfig.hiddenSize ${t.hiddenSize} is not divisible by ${t.numAttentionHeads} heads`);
  if (t.encoderHiddenSize !== v.hiddenSize) {
    problems.push(`textConfig.encoderHiddenSize ${t.encoderHiddenSize} differs from visionConfig.hiddenSize ${v.hiddenSize}`);
  }
  for (const k of ['bosTokenId', 'padTokenId', 'eosTokenId', 'sepTokenId'] as const) {
    if (t[k] >= t.vocabSize) problems.push(`textConfig.${k} ${t[k]} is outside the vocabulary (${t.vocabSize})`);
  }
  if (problems.length)
    throw new VlError('CONFIG_INVALID', problems.join('; '), { subject, hint: 'fix the config so the towers fit together' });
}

export type BlipPresetName = 'tiny' | 'base';

/**
 * Named presets. `tiny` is the size of the reference fixtures (2 layers, width 32) and trains in
 * seconds; `base` is the paper's ViT-B/16 (384px, as the released captioning/retrieval checkpoints)
 * with BERT-base (12 heads, as Salesforce's `med_config.json`, not HF's 8-head default).
 */
export function blipPreset(name: BlipPresetName, overrides: { vocabSize?: number; imageSize?: number } = {}): BlipConfig {
  if (name === 'tiny') {
    return parseBlipConfig(
      {
        visionConfig: {
          hiddenSize: 32,
          intermediateSize: 64,
          numHiddenLayers: 2,
          numAttentionHeads: 4,
          imageSize: overrides.imageSize ?? 32,
          patchSize: 8,
        },
        textConfig: {
          vocabSize: overrides.vocabSize ?? 99,
          hiddenSize: 32,
          encoderHiddenSize: 32,
          intermediateSize: 64,
          numHiddenLayers: 2,
          numAttentionHeads: 4,
          maxPositionEmbeddings: 64,
          bosTokenId: (overrides.vocabSize ?? 99) - 2, // [DEC] sits after the vocabulary, as BLIP's 30522
          sepTokenId: 3,
          eosTokenId: 2,
          padTokenId: 0,
        },
        projectionDim: 16,
        imageTextHiddenSize: 16,
        // ≈ 1/√32: BERT's 0.02 suits width 768; at width 32 it shrinks every linear map ~10×.
        initializerRange: 0.15,
      },
      'preset tiny',
    );
  }
  if (name === 'base') {
    return parseBlipConfig(
      {
        visionConfig: {
          hiddenSize: 768,
          intermediateSize: 3072,
          numHiddenLayers: 12,
          numAttentionHeads: 12,
          imageSize: overrides.imageSize ?? 384,
          patchSize: 16,
        },
        textConfig: {
          vocabSize: overrides.vocabSize ?? 30524,
          hiddenSize: 768,
          encoderHiddenSize: 768,
          intermediateSize: 3072,
          numHiddenLayers: 12,
          numAttentionHeads: 12,
          maxPositionEmbeddings: 512,
          bosTokenId: (overrides.vocabSize ?? 30524) - 2,
          sepTokenId: 102,
          eosTokenId: 2,
          padTokenId: 0,
        },
        projectionDim: 512,
        imageTextHiddenSize: 256,
      },
      'preset base',
    );
  }
  throw new VlError('INVALID_ARGUMENT', `unknown preset '${String(name)}'`, { hint: "use 'tiny' or 'base'" });
}

/** The config with token ids taken from a tokenizer (pretraining on a new vocabulary). */
export function withTokenizerIds(
  cfg: BlipConfig,
  tok: { vocabSize: number; padId: number; sepId: number; clsId: number; tokenToId(token: string): number | undefined },
): BlipConfig {
  const bos = tok.tokenToId('[DEC]') ?? tok.clsId;
  return parseBlipConfig({
    ...cfg,
    textConfig: {
      ...cfg.textConfig,
      vocabSize: tok.vocabSize,
      padTokenId: tok.padId,
      sepTokenId: tok.sepId,
      bosTokenId: bos,
      eosTokenId: tok.sepId,
    },
  });
}
