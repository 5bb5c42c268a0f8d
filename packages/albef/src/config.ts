// ALBEF configuration: the three sections of the official setup (salesforce/ALBEF
// `configs/Pretrain.yaml` → `albef_config`, `configs/config_bert.json` → `bert_config`, the ViT
// arguments hard-coded in `models/model_pretrain.py` → `vision_config`) with presets `tiny` and
// `base`, and a validator for `config.json` files.
import { camelizeKeys, IMAGE_NORMS, type ImageNorm, snakeKey, snakifyKeys, VlError } from '@vl/core';

/** ALBEF normalises pixels with OpenAI CLIP's mean/std (`transforms.Normalize` in the official `create_dataset`). */
export const ALBEF_IMAGE_NORM: ImageNorm = IMAGE_NORMS.clip;

/** Pretraining hyper-parameters (`configs/Pretrain.yaml` and `ALBEF.__init__`). */
export interface AlbefSection {
  /** Input resolution; Pretrain.yaml 256. */
  imageRes: number;
  /** ViT width, the fusion layers' cross-attention key/value size; 768 for ViT-B/16. */
  visionWidth: number;
  /** Joint ITC embedding size after vision_proj / text_proj; 256 in the paper. */
  embedDim: number;
  /** Initial contrastive temperature; learned, clamped to [0.001, 0.5]. */
  temp: number;
  /** Share of text tokens selected for MLM; BERT's 0.15. */
  mlmProbability: number;
  /** Momentum features kept for ITC; 65,536 in the paper. */
  queueSize: number;
  /** EMA decay of the momentum twins; 0.995. */
  momentum: number;
  /** Momentum-distillation weight; 0.4, ramped over the first epoch. */
  alpha: number;
}

/** The BERT config (`config_bert.json`) with ALBEF's two additions. */
export interface AlbefBertConfig {
  vocabSize: number;
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  intermediateSize: number;
  maxPositionEmbeddings: number;
  /** 2 for bert-base-uncased. */
  typeVocabSize: number;
  layerNormEps: number;
  hiddenDropoutProb: number;
  attentionProbsDropoutProb: number;
  padTokenId: number;
  /** First layer with cross-attention: layers [0, fusion_layer) are the text encoder, the rest fuse. ALBEF 6. */
  fusionLayer: number;
  /** Width of the image features the fusion layers attend to (= vision width). */
  encoderWidth: number;
}

/** timm-style ViT arguments (`models/vit.py` `VisionTransformer`). */
export interface AlbefVisionConfig {
  imgSize: number;
  patchSize: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  mlpRatio: number;
  /** Stochastic depth at the last block; ALBEF pretraining 0. */
  dropPathRate: number;
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
  modelType: 'albef';
  albefConfig: AlbefSection;
  bertConfig: AlbefBertConfig;
  visionConfig: AlbefVisionConfig;
  tokens: AlbefTokens;
}

/** The paper's model: ViT-B/16 at 256 px, BERT-base split 6 + 6, 256-d ITC, 65,536-item queue. */
export const ALBEF_BASE: AlbefConfig = {
  modelType: 'albef',
  albefConfig: {
    imageRes: 256,
    visionWidth: 768,
    embedDim: 256,
    temp: 0.07,
    mlmProbability: 0.15,
    queueSize: 65536,
    momentum: 0.995,
    alpha: 0.4,
  },
  bertConfig: {
    vocabSize: 30522,
    hiddenSize: 768,
    numHiddenLayers: 12,
    numAttentionHeads: 12,
    intermediateSize: 3072,
    maxPositionEmbeddings: 512,
    typeVocabSize: 2,
    layerNormEps: 1e-12,
    hiddenDropoutProb: 0.1,
    attentionProbsDropoutProb: 0.1,
    padTokenId: 0,
    fusionLayer: 6,
    encoderWidth: 768,
  },
  visionConfig: { imgSize: 256, patchSize: 16, embedDim: 768, depth: 12, numHeads: 12, mlpRatio: 4, dropPathRate: 0 },
  tokens: { pad: 0, unk: 100, cls: 101, sep: 102, mask: 103 },
};

/** The reference fixture's sizes (fixtures/albef-official): 32 px images, width 32, 2 + 2 text/fusion layers. */
export const ALBEF_TINY: AlbefConfig = {
  modelType: 'albef',
  albefConfig: {
    imageRes: 32,
    visionWidth: 32,
    embedDim: 16,
    temp: 0.07,
    mlmProbability: 0.15,
    queueSize: 8,
    momentum: 0.995,
    alpha: 0.4,
  },
  bertConfig: {
    vocabSize: 99,
    hiddenSize: 32,
    numHiddenLayers: 4,
    numAttentionHeads: 4,
    intermediateSize: 64,
    maxPositionEmbeddings: 64,
    typeVocabSize: 2,
    layerNormEps: 1e-12,
    hiddenDropoutProb: 0.1,
    attentionProbsDropoutProb: 0.1,
    padTokenId: 0,
    fusionLayer: 2,
    encoderWidth: 32,
  },
  visionConfig: { imgSize: 32, patchSize: 8, embedDim: 32, depth: 2, numHeads: 4, mlpRatio: 2, dropPathRate: 0 },
  tokens: { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 },
};

export const ALBEF_PRESETS = { tiny: ALBEF_TINY, base: ALBEF_BASE } as const;
export type AlbefPresetName = keyof typeof ALBEF_PRESETS;

/** A deep copy of a preset with sections overridden field by field. */
export function albefConfig(
  preset: AlbefPresetName | AlbefConfig = 'tiny',
  overrides: {
    albefConfig?: Partial<AlbefSection>;
    bertConfig?: Partial<AlbefBertConfig>;
    visionConfig?: Partial<AlbefVisionConfig>;
    tokens?: Partial<AlbefTokens>;
  } = {},
): AlbefConfig {
  const base = typeof preset === 'string' ? ALBEF_PRESETS[preset] : preset;
  const config: AlbefConfig = {
    modelType: 'albef',
    albefConfig: { ...base.albefConfig, ...overrides.albefConfig },
    bertConfig: { ...base.bertConfig, ...overrides.bertConfig },
    visionConfig: { ...base.visionConfig, ...overrides.visionConfig },
    tokens: { ...base.tokens, ...overrides.tokens },
  };
  return validateAlbefConfig(config, 'albefConfig');
}

/**
 * Checks a camelCase config (built, or a config.json through albefConfigFromJson) and fills fields
 * the reference files leave implicit (`dropPathRate`, `tokens`, `modelType`). Extra keys (notes and
 * timm/BERT fields in the fixture) are kept, so a saved config.json keeps them. `keyName` spells
 * the keys in messages as the source does (snakeKey for a config.json).
 */
export function validateAlbefConfig(raw: unknown, subject = 'AlbefConfig', keyName: (key: string) => string = (k) => k): AlbefConfig {
  const section = (value: unknown, name: string): Record<string, unknown> => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new VlError('CONFIG_INVALID', `'${keyName(name)}' must be an object`, { subject });
    }
    return value as Record<string, unknown>;
  };
  const num = (obj: Record<string, unknown>, key: string, where: string, fallback?: number, integer = false): number => {
    const v = obj[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
      const what = integer ? 'an integer' : 'a finite number';
      throw new VlError('CONFIG_INVALID', `${keyName(where)}.${keyName(key)} must be ${what}, got ${JSON.stringify(v)}`, { subject });
    }
    return v;
  };
  const root = section(raw, 'config');
  const a = section(root.albefConfig, 'albefConfig');
  const b = section(root.bertConfig, 'bertConfig');
  const v = section(root.visionConfig, 'visionConfig');
  const t = root.tokens === undefined ? { ...ALBEF_BASE.tokens } : section(root.tokens, 'tokens');
  const int = (o: Record<string, unknown>, k: string, w: string, f?: number) => num(o, k, w, f, true);
  const config: AlbefConfig = {
    ...root,
    modelType: 'albef',
    albefConfig: {
      ...a,
      imageRes: int(a, 'imageRes', 'albefConfig'),
      visionWidth: int(a, 'visionWidth', 'albefConfig'),
      embedDim: int(a, 'embedDim', 'albefConfig'),
      temp: num(a, 'temp', 'albefConfig', 0.07),
      mlmProbability: num(a, 'mlmProbability', 'albefConfig', 0.15),
      queueSize: int(a, 'queueSize', 'albefConfig'),
      momentum: num(a, 'momentum', 'albefConfig', 0.995),
      alpha: num(a, 'alpha', 'albefConfig', 0.4),
    },
    bertConfig: {
      ...b,
      vocabSize: int(b, 'vocabSize', 'bertConfig'),
      hiddenSize: int(b, 'hiddenSize', 'bertConfig'),
      numHiddenLayers: int(b, 'numHiddenLayers', 'bertConfig'),
      numAttentionHeads: int(b, 'numAttentionHeads', 'bertConfig'),
      intermediateSize: int(b, 'intermediateSize', 'bertConfig'),
      maxPositionEmbeddings: int(b, 'maxPositionEmbeddings', 'bertConfig'),
      typeVocabSize: int(b, 'typeVocabSize', 'bertConfig', 2),
      layerNormEps: num(b, 'layerNormEps', 'bertConfig', 1e-12),
      hiddenDropoutProb: num(b, 'hiddenDropoutProb', 'bertConfig', 0.1),
      attentionProbsDropoutProb: num(b, 'attentionProbsDropoutProb', 'bertConfig', 0.1),
      padTokenId: int(b, 'padTokenId', 'bertConfig', 0),
      fusionLayer: int(b, 'fusionLayer', 'bertConfig'),
      encoderWidth: int(b, 'encoderWidth', 'bertConfig'),
    },
    visionConfig: {
      ...v,
      imgSize: int(v, 'imgSize', 'visionConfig'),
      patchSize: int(v, 'patchSize', 'visionConfig'),
      embedDim: int(v, 'embedDim', 'visionConfig'),
      depth: int(v, 'depth', 'visionConfig'),
      numHeads: int(v, 'numHeads', 'visionConfig'),
      mlpRatio: num(v, 'mlpRatio', 'visionConfig'),
      dropPathRate: num(v, 'dropPathRate', 'visionConfig', 0),
    },
    tokens: {
      ...t,
      pad: int(t, 'pad', 'tokens'),
      unk: int(t, 'unk', 'tokens'),
      cls: int(t, 'cls', 'tokens'),
      sep: int(t, 'sep', 'tokens'),
      mask: int(t, 'mask', 'tokens'),
    },
  };
  const problems: string[] = [];
  const { bertConfig: bc, visionConfig: vc, albefConfig: ac } = config;
  if (bc.fusionLayer < 0 || bc.fusionLayer > bc.numHiddenLayers)
    problems.push(`fusionLayer ${bc.fusionLayer} outside [0, ${bc.numHiddenLayers}]`);
  if (bc.hiddenSize % bc.numAttentionHeads !== 0)
    problems.push(`hiddenSize ${bc.hiddenSize} not divisible by ${bc.numAttentionHeads} heads`);
  if (vc.embedDim % vc.numHeads !== 0) problems.push(`vision embedDim ${vc.embedDim} not divisible by ${vc.numHeads} heads`);
  if (vc.imgSize % vc.patchSize !== 0) problems.push(`imgSize ${vc.imgSize} not a multiple of patchSize ${vc.patchSize}`);
  if (bc.encoderWidth !== vc.embedDim) problems.push(`bertConfig.encoderWidth ${bc.encoderWidth} ≠ vision embedDim ${vc.embedDim}`);
  if (ac.visionWidth !== vc.embedDim) problems.push(`albefConfig.visionWidth ${ac.visionWidth} ≠ vision embedDim ${vc.embedDim}`);
  if (ac.queueSize < 0) problems.push('queueSize must be ≥ 0 (0: in-batch negatives only)');
  if (!(ac.alpha >= 0 && ac.alpha <= 1)) problems.push(`alpha ${ac.alpha} outside [0, 1]`);
  if (!(ac.momentum >= 0 && ac.momentum <= 1)) problems.push(`momentum ${ac.momentum} outside [0, 1]`);
  if (problems.length) throw new VlError('CONFIG_INVALID', problems.join('; '), { subject });
  return config;
}

/** A parsed `config.json` (the official snake_case sections) → AlbefConfig; unknown keys are kept. */
export function albefConfigFromJson(json: unknown, subject = 'config.json'): AlbefConfig {
  return validateAlbefConfig(camelizeKeys(json, { subject }), subject, snakeKey);
}

/** AlbefConfig → the `config.json` object in the official snake_case keys (unknown keys restored). */
export function albefConfigToJson(config: AlbefConfig): Record<string, unknown> {
  return snakifyKeys(config, { subject: 'AlbefConfig' });
}
