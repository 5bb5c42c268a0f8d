// BEiT-3 configuration as microsoft/unilm `beit3/` builds it: a timm factory of `modeling_finetune.py`
// (`beit3_base_patch16_384_retrieval`, …) names the task class and the released sizes, and
// `modeling_utils._get_base_config` / `_get_large_config` fill torchscale's `EncoderConfig`. A config.json
// holds `factory`, `encoder_config` (EncoderConfig.__dict__ as the model read it), `num_classes` and the
// special token ids in snake_case (fixtures/beit3-official/*/config.json); TypeScript sees them in
// camelCase. A config.json with only `factory` builds the released architecture of that factory.
import { camelizeKeys, IMAGE_NORMS, type ImageNorm, snakeKey, snakifyKeys, validateConfig, VlError } from '@vl/core';
import { z } from 'zod';

/**
 * The vision-language tasks normalise pixels with mean = std = 0.5 (`datasets.py`: `Normalize(
 * IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD)` after a bicubic resize), i.e. x·2 − 1.
 */
export const BEIT3_IMAGE_NORM: ImageNorm = IMAGE_NORMS.inception;
/** ImageNet classification uses the ImageNet mean and std (`build_imagenet_transform`, timm's defaults). */
export const BEIT3_IMAGENET_NORM: ImageNorm = IMAGE_NORMS.imagenet;

/** The five fine-tuned model classes of the release, by the suffix of their factory. */
export const BEIT3_TASKS = ['retrieval', 'captioning', 'vqa', 'classification', 'nlvr2'] as const;
export type Beit3Task = (typeof BEIT3_TASKS)[number];

const FACTORY_SUFFIX: Readonly<Record<string, Beit3Task>> = {
  retrieval: 'retrieval',
  captioning: 'captioning',
  vqav2: 'vqa',
  imageclassification: 'classification',
  nlvr2: 'nlvr2',
};
const TASK_SUFFIX: Readonly<Record<Beit3Task, string>> = {
  retrieval: 'retrieval',
  captioning: 'captioning',
  vqa: 'vqav2',
  classification: 'imageclassification',
  nlvr2: 'nlvr2',
};

/** `beit3_{base,large}_patch16_{224,384,480,768}_{task}`, as `modeling_finetune.py` registers them. */
const FACTORY = /^beit3_(base|large)_patch(\d+)_(\d+)_(retrieval|captioning|vqav2|imageclassification|nlvr2)$/;

export type Beit3Size = 'base' | 'large';

/** What a factory name says: the size family, patch, image size and task. */
export interface Beit3Factory {
  size: Beit3Size;
  patchSize: number;
  imgSize: number;
  task: Beit3Task;
}

export function parseBeit3Factory(name: string): Beit3Factory | null {
  const m = FACTORY.exec(name);
  if (!m) return null;
  return { size: m[1] as Beit3Size, patchSize: Number(m[2]), imgSize: Number(m[3]), task: FACTORY_SUFFIX[m[4]!]! };
}

export function beit3FactoryName(size: Beit3Size, imgSize: number, task: Beit3Task, patchSize = 16): string {
  return `beit3_${size}_patch${patchSize}_${imgSize}_${TASK_SUFFIX[task]}`;
}

/** `_get_base_config` / `_get_large_config` sizes (mlp_ratio 4). */
const SIZES: Readonly<Record<Beit3Size, { dim: number; heads: number; ffn: number; layers: number }>> = {
  base: { dim: 768, heads: 12, ffn: 3072, layers: 12 },
  large: { dim: 1024, heads: 16, ffn: 4096, layers: 24 },
};

/** The heads' widths the factories hard-code (VQA v2 answers, ImageNet-1k classes, NLVR2's true/false). */
export const BEIT3_NUM_CLASSES: Readonly<Partial<Record<Beit3Task, number>>> = { vqa: 3129, classification: 1000, nlvr2: 2 };

/** torchscale `EncoderConfig` (the fields BEiT-3 reads; the others are kept as they are). */
export interface Beit3EncoderConfig {
  encoderEmbedDim: number;
  encoderAttentionHeads: number;
  encoderFfnEmbedDim: number;
  encoderLayers: number;
  /** Pre-LN; Sub-LN forces it on. */
  encoderNormalizeBefore: boolean;
  /** `encoder.layer_norm` after the last layer (off in the VQA and ImageNet factories). */
  normalizeOutput: boolean;
  activationFn: 'gelu';
  /** Stochastic depth at the last layer (linear from 0), 0.1 in the fine-tuning runs. */
  dropPathRate: number;
  attentionDropout: number;
  dropout: number;
  activationDropout: number;
  /** true: the token embeddings are not multiplied by √D. */
  noScaleEmbedding: boolean;
  subln: boolean;
  multiway: boolean;
  /** Rows of the text position table `embed_positions.B` (the first two are never used). */
  maxSourcePositions: number;
  layernormEps: number;
  vocabSize: number;
  imgSize: number;
  patchSize: number;
  inChans: number;
  [key: string]: unknown;
}

/** Special token ids (XLMRobertaTokenizer of beit3.spm: `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, `<mask>` its last id). */
export interface Beit3Tokens {
  bos: number;
  pad: number;
  eos: number;
  unk: number;
  mask: number;
}

/** `CaptioningHandler` arguments (`run_beit3_finetuning.py` defaults: 64 tokens, 3 beams, length penalty 0.6). */
export interface Beit3CaptionGeneration {
  numMaxBpeTokens: number;
  numBeams: number;
  lengthPenalty: number;
}

export interface Beit3Config {
  /** The timm factory: it names the task class (`…_retrieval`, `…_captioning`, `…_vqav2`, `…_imageclassification`, `…_nlvr2`). */
  factory: string;
  encoderConfig: Beit3EncoderConfig;
  /** Width of the classifier of the VQA, ImageNet and NLVR2 heads; absent for retrieval and captioning. */
  numClasses?: number;
  tokens: Beit3Tokens;
  captionGeneration?: Beit3CaptionGeneration;
  [key: string]: unknown;
}

const int = (min = 1) => z.number().int().min(min);
const rate = z.number().min(0).max(1);
const unsupported = (what: string) => `@vl/beit3 implements the released BEiT-3 path only: ${what}`;

/** EncoderConfig as a file states it; every field optional (the factory fills the rest). */
const encoderSchema = z
  .object({
    encoderEmbedDim: int().optional(),
    encoderAttentionHeads: int().optional(),
    encoderFfnEmbedDim: int().optional(),
    encoderLayers: int().optional(),
    encoderNormalizeBefore: z.literal(true, { error: unsupported('pre-LN (encoder_normalize_before true)') }).optional(),
    normalizeOutput: z.boolean().optional(),
    activationFn: z.literal('gelu', { error: unsupported("activation_fn 'gelu'") }).optional(),
    dropout: z.literal(0, { error: unsupported('dropout 0 (as every release)') }).optional(),
    dropPathRate: rate.optional(),
    attentionDropout: rate.optional(),
    activationDropout: z.literal(0, { error: unsupported('activation_dropout 0 (as every release)') }).optional(),
    noScaleEmbedding: z.boolean().optional(),
    layernormEmbedding: z.literal(false, { error: unsupported('no layernorm_embedding') }).optional(),
    moeFreq: z.literal(0, { error: unsupported('no mixture of experts (moe_freq 0)') }).optional(),
    useXmoe: z.literal(false, { error: unsupported('no X-MoE') }).optional(),
    relPosBuckets: z.number().int().optional(),
    maxRelPos: z.number().int().optional(),
    deepnorm: z.literal(false, { error: unsupported('Sub-LN, not DeepNorm (deepnorm false)') }).optional(),
    subln: z.literal(true, { error: unsupported('Sub-LN (subln true)') }).optional(),
    multiway: z.literal(true, { error: 'BEiT-3 is a Multiway transformer (multiway true)' }).optional(),
    shareEncoderInputOutputEmbed: z.literal(false, { error: 'BEiT-3 asserts share_encoder_input_output_embed false' }).optional(),
    maxSourcePositions: int(3).optional(),
    noOutputLayer: z.literal(true, { error: unsupported('no encoder output projection (no_output_layer true)') }).optional(),
    layernormEps: z.number().positive().optional(),
    vocabSize: int().optional(),
    imgSize: int().optional(),
    patchSize: int().optional(),
    inChans: int().optional(),
    xposRelPos: z.literal(false, { error: unsupported('no xPos (xpos_rel_pos false)') }).optional(),
  })
  .loose();

const tokensSchema = z.object({ bos: int(0), pad: int(0), eos: int(0), unk: int(0), mask: int(0) }).loose();

const generationSchema = z
  .object({
    numMaxBpeTokens: int(2).default(64),
    numBeams: int().default(3),
    lengthPenalty: z.number().default(0.6),
  })
  .loose();

/** config.json (camelized). */
export const beit3ConfigSchema = z
  .object({
    factory: z.string(),
    encoderConfig: encoderSchema.optional(),
    numClasses: int().optional(),
    tokens: tokensSchema.optional(),
    captionGeneration: generationSchema.optional(),
  })
  .loose();

/** XLMRobertaTokenizer's fixed ids; `<mask>` is len(beit3.spm) + 1 — 64001 for the 64000 pieces the 64010-row table suggests. */
const BEIT3_SPM_TOKENS: Beit3Tokens = { bos: 0, pad: 1, eos: 2, unk: 3, mask: 64001 };

/** Fills what the factory and EncoderConfig's defaults give, and checks what a file states against them. */
function complete(parsed: z.output<typeof beit3ConfigSchema>, subject: string, keyName: (k: string) => string): Beit3Config {
  const problems: string[] = [];
  const at = (path: string[]) => path.map(keyName).join('.');
  const factory = parseBeit3Factory(parsed.factory);
  if (!factory) {
    throw new VlError('CONFIG_INVALID', `${at(['factory'])} '${parsed.factory}' is not a BEiT-3 fine-tuning factory`, {
      subject,
      hint: "one of modeling_finetune.py's names: beit3_{base,large}_patch16_{224,384,480}_{retrieval,captioning,vqav2,imageclassification,nlvr2}",
    });
  }
  const given = (parsed.encoderConfig ?? {}) as Partial<Beit3EncoderConfig>;
  const size = SIZES[factory.size];
  const normalizeOutput = factory.task !== 'vqa' && factory.task !== 'classification';
  const encoderConfig: Beit3EncoderConfig = {
    ...given,
    encoderEmbedDim: given.encoderEmbedDim ?? size.dim,
    encoderAttentionHeads: given.encoderAttentionHeads ?? size.heads,
    encoderFfnEmbedDim: given.encoderFfnEmbedDim ?? size.ffn,
    encoderLayers: given.encoderLayers ?? size.layers,
    encoderNormalizeBefore: true,
    normalizeOutput: given.normalizeOutput ?? normalizeOutput,
    activationFn: 'gelu',
    dropout: 0,
    dropPathRate: given.dropPathRate ?? 0,
    attentionDropout: given.attentionDropout ?? 0,
    activationDropout: 0,
    noScaleEmbedding: given.noScaleEmbedding ?? true,
    subln: true,
    multiway: true,
    maxSourcePositions: given.maxSourcePositions ?? 1024,
    layernormEps: given.layernormEps ?? 1e-5,
    vocabSize: given.vocabSize ?? 64010,
    imgSize: given.imgSize ?? factory.imgSize,
    patchSize: given.patchSize ?? factory.patchSize,
    inChans: given.inChans ?? 3,
  };
  const e = encoderConfig;
  const enc = (k: string) => at(['encoderConfig', k]);
  if (e.normalizeOutput !== normalizeOutput) {
    problems.push(
      `${enc('normalizeOutput')} ${e.normalizeOutput}, but the ${factory.task} factory sets it ${normalizeOutput} (the VQA and ImageNet models have no final LayerNorm)`,
    );
  }
  if (((e.relPosBuckets as number | undefined) ?? 0) > 0 && ((e.maxRelPos as number | undefined) ?? 0) > 0) {
    problems.push(`${enc('relPosBuckets')} > 0: BEiT-3 has no relative position bias`);
  }
  if (e.imgSize % e.patchSize !== 0) problems.push(`image size ${e.imgSize} is not a multiple of patch size ${e.patchSize}`);
  if (e.encoderEmbedDim % e.encoderAttentionHeads !== 0) {
    problems.push(`width ${e.encoderEmbedDim} is not divisible by ${e.encoderAttentionHeads} heads`);
  }
  const tokens = (parsed.tokens as Beit3Tokens | undefined) ?? { ...BEIT3_SPM_TOKENS };
  for (const [name, id] of Object.entries(tokens)) {
    if (['bos', 'pad', 'eos', 'unk', 'mask'].includes(name) && typeof id === 'number' && id >= e.vocabSize) {
      problems.push(`${at(['tokens', name])} ${id} is outside the vocabulary of ${e.vocabSize}`);
    }
  }
  const fixedClasses = BEIT3_NUM_CLASSES[factory.task];
  let numClasses = parsed.numClasses;
  if (fixedClasses === undefined) {
    if (numClasses !== undefined) problems.push(`${at(['numClasses'])}: the ${factory.task} model has no classifier`);
  } else {
    numClasses ??= fixedClasses;
    if (factory.task === 'nlvr2' && numClasses !== 2)
      problems.push(`${at(['numClasses'])} ${numClasses}: the NLVR2 head answers true/false (2)`);
  }
  if (problems.length) {
    throw new VlError('CONFIG_INVALID', problems.join('; '), { subject, hint: 'fix the fields named (see docs/beit3.md, "Config")' });
  }
  const out: Beit3Config = { ...parsed, factory: parsed.factory, encoderConfig, tokens };
  if (numClasses !== undefined) out.numClasses = numClasses;
  else delete out.numClasses;
  if (parsed.captionGeneration) out.captionGeneration = parsed.captionGeneration as Beit3CaptionGeneration;
  return out;
}

/**
 * Validates a camelCase config and fills what the official code derives; every bad field is listed
 * (VlError CONFIG_INVALID). `keyName` spells paths as the source does (snakeKey for a config.json).
 */
export function parseBeit3Config(value: unknown, subject = 'Beit3Config', keyName: (key: string) => string = (k) => k): Beit3Config {
  return complete(validateConfig(value, beit3ConfigSchema, subject, keyName), subject, keyName);
}

/** A parsed config.json (snake_case, as the fixtures write it) → Beit3Config; unknown keys are kept. */
export function beit3ConfigFromJson(json: unknown, subject = 'config.json'): Beit3Config {
  return parseBeit3Config(camelizeKeys(json, { subject }), subject, snakeKey);
}

/** Beit3Config → the config.json object (snake_case; unknown keys restored). */
export function beit3ConfigToJson(config: Beit3Config): Record<string, unknown> {
  return snakifyKeys(config, { subject: 'Beit3Config' });
}

/** The sizes and switches the model is built from, read off a config. */
export interface Beit3Dims {
  task: Beit3Task;
  imageSize: number;
  patchSize: number;
  inChans: number;
  /** Patches per side. */
  grid: number;
  /** Nv = grid² + 1 (CLS included): the vision length, and the multiway split of a joint sequence. */
  numVisionTokens: number;
  hiddenSize: number;
  numHeads: number;
  headDim: number;
  ffnSize: number;
  depth: number;
  vocabSize: number;
  /** Rows of `embed_positions.B`; a text may hold maxSourcePositions − 2 tokens. */
  maxSourcePositions: number;
  maxTextLength: number;
  normalizeOutput: boolean;
  layerNormEps: number;
  /** 1, or √D when the config scales embeddings. */
  embedScale: number;
  dropPathRate: number;
  attentionDropout: number;
  numClasses: number | null;
}

export function beit3Dims(config: Beit3Config): Beit3Dims {
  const e = config.encoderConfig;
  const grid = e.imgSize / e.patchSize;
  const task = (parseBeit3Factory(config.factory) as Beit3Factory).task;
  return {
    task,
    imageSize: e.imgSize,
    patchSize: e.patchSize,
    inChans: e.inChans,
    grid,
    numVisionTokens: grid * grid + 1,
    hiddenSize: e.encoderEmbedDim,
    numHeads: e.encoderAttentionHeads,
    headDim: e.encoderEmbedDim / e.encoderAttentionHeads,
    ffnSize: e.encoderFfnEmbedDim,
    depth: e.encoderLayers,
    vocabSize: e.vocabSize,
    maxSourcePositions: e.maxSourcePositions,
    maxTextLength: e.maxSourcePositions - 2,
    normalizeOutput: e.normalizeOutput,
    layerNormEps: e.layernormEps,
    embedScale: e.noScaleEmbedding ? 1 : Math.sqrt(e.encoderEmbedDim),
    dropPathRate: e.dropPathRate,
    attentionDropout: e.attentionDropout,
    numClasses: config.numClasses ?? null,
  };
}

export type Beit3PresetName = 'tiny' | 'base' | 'large';

export interface Beit3PresetOptions {
  task?: Beit3Task;
  vocabSize?: number;
  imageSize?: number;
}

/** The image size of each released task at base size (retrieval 384, captioning and VQA 480, the others 224). */
const RELEASED_IMAGE_SIZE: Readonly<Record<Beit3Task, number>> = {
  retrieval: 384,
  captioning: 480,
  vqa: 480,
  classification: 224,
  nlvr2: 224,
};

/**
 * Named configs for one task (default retrieval). `tiny` has the sizes of the beit3-official fixtures
 * (D 32, 4 heads, FFN 80, 3 layers, 32 px with 8 px patches, vocab 99, 64 text positions, 13 VQA / 11
 * ImageNet classes, mask id V − 2); `base` and `large` are the released architectures at the task's
 * released image size. Overrides change the vocabulary and the image size.
 */
export function beit3Preset(name: Beit3PresetName, options: Beit3PresetOptions = {}): Beit3Config {
  const task = options.task ?? 'retrieval';
  if (!BEIT3_TASKS.includes(task)) {
    throw new VlError('CONFIG_INVALID', `unknown BEiT-3 task '${String(task)}'`, { subject: 'beit3Preset', hint: BEIT3_TASKS.join(', ') });
  }
  switch (name) {
    case 'tiny': {
      const vocabSize = options.vocabSize ?? 99;
      return parseBeit3Config({
        factory: beit3FactoryName('base', RELEASED_IMAGE_SIZE[task], task),
        encoderConfig: {
          encoderEmbedDim: 32,
          encoderAttentionHeads: 4,
          encoderFfnEmbedDim: 80,
          encoderLayers: 3,
          imgSize: options.imageSize ?? 32,
          patchSize: 8,
          maxSourcePositions: 64,
          vocabSize,
          dropPathRate: 0.1,
        },
        ...(task === 'vqa' ? { numClasses: 13 } : task === 'classification' ? { numClasses: 11 } : {}),
        tokens: { bos: 0, pad: 1, eos: 2, unk: 3, mask: vocabSize - 2 },
        ...(task === 'captioning' ? { captionGeneration: { numMaxBpeTokens: 10, numBeams: 3, lengthPenalty: 0.6 } } : {}),
      });
    }
    case 'base':
    case 'large': {
      const imageSize = options.imageSize ?? RELEASED_IMAGE_SIZE[task];
      const vocabSize = options.vocabSize ?? 64010;
      return parseBeit3Config({
        factory: beit3FactoryName(name, imageSize, task),
        encoderConfig: { vocabSize, dropPathRate: 0.1 },
        tokens: { ...BEIT3_SPM_TOKENS, mask: Math.min(BEIT3_SPM_TOKENS.mask, vocabSize - 1) },
        ...(task === 'captioning' ? { captionGeneration: { numMaxBpeTokens: 64, numBeams: 3, lengthPenalty: 0.6 } } : {}),
      });
    }
    default:
      throw new VlError('CONFIG_INVALID', `unknown BEiT-3 preset '${String(name)}'`, {
        subject: 'beit3Preset',
        hint: 'tiny, base or large',
      });
  }
}
