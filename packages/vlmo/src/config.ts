// VLMo configuration, as microsoft/unilm `vlmo/` spreads it over three places: sacred's `_config`
// (`vlmo/config.py` → `vlmo_config`), the kwargs the timm entry point gives `MultiWayTransformer`
// (`multiway_transformer.py` → `transformer_kwargs`; the released sizes are hard-coded per `model_arch`)
// and the `BertConfig` that `VLMo.__init__` derives (`bert_config`). A config.json holds those sections
// in snake_case (fixtures/vlmo-official/*/config.json); TypeScript sees them in camelCase. Missing
// transformer kwargs come from the `model_arch` entry point, so a config.json with only `vlmo_config`
// (what the official scripts print) builds the released architecture.
import { camelizeKeys, IMAGE_NORMS, type ImageNorm, snakeKey, snakifyKeys, validateConfig, VlError } from '@vl/core';
import { z } from 'zod';

/** VLMo normalises pixels with mean 0.5 / std 0.5 (`inception_normalize` in `vlmo/transforms/utils.py`): x·2 − 1. */
export const VLMO_IMAGE_NORM: ImageNorm = IMAGE_NORMS.inception;

/** `config.py` `_loss_names`: a weight per task; > 0 turns the task (and the heads it needs) on. */
export interface VlmoLossNames {
  itm: number;
  itc: number;
  mlm: number;
  /** Stage-2 text-only MLM; > 0 also drops the VL-FFN (`vlffn_start_layer_index` = depth), as the official code does. */
  textmlm: number;
  vqa: number;
  nlvr2: number;
  /** Retrieval fine-tuning: only `itc_text_proj`, `itc_image_proj` and `logit_scale`. */
  irtr: number;
  /**
   * Others kept as they are. One is ours: `mim`, stage-1 masked image modelling (not an official loss
   * name: the official stage 1 is BEiT's own pretraining); > 0 adds BEiT's `mask_token` and `lm_head`
   * under `transformer.` (sized by VlmoSection.visualVocabSize).
   */
  [key: string]: number;
}

/** The fields of sacred's `_config` the model reads (the others are kept as they are). */
export interface VlmoSection {
  /** Input resolution; 224 in every release (384/480 for some fine-tunes). */
  imageSize: number;
  /** Every text is padded to exactly this many tokens: the fused sequence splits its experts here. 40. */
  maxTextLen: number;
  /** Text length the relative position table was sized for (stage-2 text pretraining): 196. */
  maxTextLenOfInitckpt: number;
  /** bert-base-uncased: 30522. */
  vocabSize: number;
  /** The timm entry point: `vlmo_base_patch16`, `vlmo_large_patch16` or `vlmo_base_plus_patch16`. */
  modelArch: VlmoArch;
  /** Stochastic depth at the last layer, and BERT's hidden dropout; 0.1. */
  dropPathRate: number;
  lossNames: VlmoLossNames;
  /** MLM masking probability; BERT's 0.15. */
  mlmProb: number;
  /**
   * Size of the visual vocabulary the stage-1 MIM head predicts (`transformer.lm_head`); not an official
   * key (stage 1 is BEiT there, whose DALL-E tokenizer has 8192 codes, the default).
   */
  visualVocabSize?: number;
  /** Answers the VQA head scores (`vqav2_label_size`, 3129 in config.py); read when loss_names.vqa > 0. */
  vqav2LabelSize?: number;
  [key: string]: unknown;
}

/** `MultiWayTransformer(...)` kwargs; the entry point of `modelArch` fills what a file leaves out. */
export interface VlmoTransformerKwargs {
  imgSize: number;
  inChans: number;
  patchSize: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  /** FFN width = int(embedDim · mlpRatio). */
  mlpRatio: number;
  qkvBias: boolean;
  /** First layer with the VL-FFN (`mlp_vl`); layers below route fused tokens to the text/image FFNs. */
  vlffnStartLayerIndex: number;
  /** Learned `transformer.pos_embed` (VLMo-base_plus). */
  useAbsPosEmb: boolean;
  /** One relative position table for every layer (VLMo-base, -large). */
  needRelativePositionEmbed: boolean;
  /** Layer scale γ init (0.1), or null for none (base_plus). */
  layerScaleInitValues: number | null;
  /**
   * Not an official kwarg (ours, for the ablation of VLMo §4.3): false gives every block one self-attention
   * per expert (`attn.{q,k,v,proj}_{text,imag[,vl]}`, routed like the FFNs) instead of the shared
   * `attn.qkv`. Absent or true: the released, shared attention.
   */
  sharedAttention?: boolean;
  [key: string]: unknown;
}

/** The `BertConfig` VLMo builds for `text_embeddings` and `mlm_score` (derived; a file's copy is checked). */
export interface VlmoBertConfig {
  vocabSize: number;
  hiddenSize: number;
  maxPositionEmbeddings: number;
  hiddenDropoutProb: number;
  /** 'rel_pos' (relative path: positions stored, never added) or 'absolute' (base_plus). */
  positionEmbeddingType: string;
  typeVocabSize: number;
  layerNormEps: number;
  hiddenAct: 'gelu';
  padTokenId: number;
  [key: string]: unknown;
}

/** Special token ids (bert-base-uncased: pad 0, unk 100, cls 101, sep 102, mask 103). */
export interface VlmoTokens {
  pad: number;
  unk: number;
  cls: number;
  sep: number;
  mask: number;
}

export interface VlmoConfig {
  vlmoConfig: VlmoSection;
  transformerKwargs: VlmoTransformerKwargs;
  bertConfig: VlmoBertConfig;
  tokens: VlmoTokens;
  [key: string]: unknown;
}

export const VLMO_ARCHS = ['vlmo_base_patch16', 'vlmo_large_patch16', 'vlmo_base_plus_patch16'] as const;
export type VlmoArch = (typeof VLMO_ARCHS)[number];

/** What a timm entry point fixes (the sizes besides the image's). */
export interface ArchKwargs {
  patchSize: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  mlpRatio: number;
  vlffnStartLayerIndex: number;
  useAbsPosEmb: boolean;
  needRelativePositionEmbed: boolean;
  layerScaleInitValues: number | null;
}

/** What each timm entry point of `multiway_transformer.py` hard-codes (the defaults of MultiWayTransformer otherwise). */
export const VLMO_ARCH_KWARGS: Readonly<Record<VlmoArch, ArchKwargs>> = {
  vlmo_base_patch16: {
    patchSize: 16,
    embedDim: 768,
    depth: 12,
    numHeads: 12,
    mlpRatio: 4,
    vlffnStartLayerIndex: 10,
    useAbsPosEmb: false,
    needRelativePositionEmbed: true,
    layerScaleInitValues: 0.1,
  },
  vlmo_large_patch16: {
    patchSize: 16,
    embedDim: 1024,
    depth: 24,
    numHeads: 16,
    mlpRatio: 4,
    vlffnStartLayerIndex: 21,
    useAbsPosEmb: false,
    needRelativePositionEmbed: true,
    layerScaleInitValues: 0.1,
  },
  vlmo_base_plus_patch16: {
    patchSize: 16,
    embedDim: 544,
    depth: 24,
    numHeads: 16,
    mlpRatio: 4,
    vlffnStartLayerIndex: 21,
    useAbsPosEmb: true,
    needRelativePositionEmbed: false,
    layerScaleInitValues: null,
  },
};

const BERT_BASE_UNCASED_TOKENS: VlmoTokens = { pad: 0, unk: 100, cls: 101, sep: 102, mask: 103 };

const int = (min = 1) => z.number().int().min(min);
const weight = z.number().min(0);

const lossNamesSchema = z
  .object({
    itm: weight.default(0),
    itc: weight.default(0),
    mlm: weight.default(0),
    textmlm: weight.default(0),
    vqa: weight.default(0),
    nlvr2: weight.default(0),
    irtr: weight.default(0),
  })
  .catchall(z.number());

/** `vlmo_config`: config.py's defaults, with the pretraining losses (itm, itc, mlm) of the released checkpoints. */
const sectionSchema = z
  .object({
    imageSize: int().default(224),
    maxTextLen: int(2).default(40),
    maxTextLenOfInitckpt: int(2).default(196),
    vocabSize: int().default(30522),
    modelArch: z.enum(VLMO_ARCHS).default('vlmo_base_patch16'),
    dropPathRate: z.number().min(0).max(1).default(0.1),
    lossNames: lossNamesSchema.default(() => lossNamesSchema.parse({ itm: 1, itc: 1, mlm: 1 })),
    mlmProb: z.number().min(0).max(1).default(0.15),
    visualVocabSize: int(2).optional(),
    vqav2LabelSize: int().optional(),
  })
  .loose();

const kwargsSchema = z
  .object({
    imgSize: int().optional(),
    inChans: int().default(3),
    patchSize: int().optional(),
    embedDim: int().optional(),
    depth: int().optional(),
    numHeads: int().optional(),
    mlpRatio: z.number().positive().optional(),
    qkvBias: z.literal(true, { error: 'VLMo always has q/v biases (qkv_bias true)' }).default(true),
    qkScale: z.null({ error: 'only the default head_dim^-0.5 scale is supported (qk_scale null)' }).optional(),
    vlffnStartLayerIndex: int(0).optional(),
    useAbsPosEmb: z.boolean().optional(),
    needRelativePositionEmbed: z.boolean().optional(),
    layerScaleInitValues: z.number().positive().nullable().optional(),
    sharedAttention: z.boolean().optional(),
  })
  .loose();

const bertSchema = z
  .object({
    vocabSize: int().optional(),
    hiddenSize: int().optional(),
    maxPositionEmbeddings: int().optional(),
    hiddenDropoutProb: z.number().min(0).max(1).optional(),
    positionEmbeddingType: z.enum(['rel_pos', 'absolute']).optional(),
    typeVocabSize: z.literal(2, { error: 'VLMo builds BertConfig with type_vocab_size 2' }).default(2),
    layerNormEps: z.number().positive().default(1e-12),
    hiddenAct: z.literal('gelu').default('gelu'),
    padTokenId: int(0).default(0),
  })
  .loose();

const tokensSchema = z.object({ pad: int(0), unk: int(0), cls: int(0), sep: int(0), mask: int(0) }).loose();

/** config.json (camelized), every section validated; `transformer_kwargs`, `bert_config` and `tokens` may be absent. */
export const vlmoConfigSchema = z
  .object({
    vlmoConfig: sectionSchema,
    modelArch: z.enum(VLMO_ARCHS).optional(),
    transformerKwargs: kwargsSchema.optional(),
    bertConfig: bertSchema.optional(),
    tokens: tokensSchema.optional(),
  })
  .loose();

/**
 * Fills the sections the official code derives (transformer kwargs from `model_arch`, BertConfig from
 * the section and the width) and checks that what a file states agrees with them.
 */
function complete(parsed: z.output<typeof vlmoConfigSchema>, subject: string, keyName: (k: string) => string): VlmoConfig {
  const section = parsed.vlmoConfig as VlmoSection;
  const problems: string[] = [];
  const at = (path: string[]) => path.map(keyName).join('.');
  if (parsed.modelArch !== undefined && parsed.modelArch !== section.modelArch) {
    problems.push(`${at(['modelArch'])} '${parsed.modelArch}' ≠ ${at(['vlmoConfig', 'modelArch'])} '${section.modelArch}'`);
  }
  const given: Partial<VlmoTransformerKwargs> = parsed.transformerKwargs ?? {};
  const arch = VLMO_ARCH_KWARGS[section.modelArch];
  const pick = <K extends keyof ArchKwargs>(k: K): ArchKwargs[K] => (given[k] === undefined ? arch[k] : (given[k] as ArchKwargs[K]));
  const kwargs: VlmoTransformerKwargs = {
    ...given,
    imgSize: given.imgSize ?? section.imageSize,
    inChans: given.inChans ?? 3,
    patchSize: pick('patchSize'),
    embedDim: pick('embedDim'),
    depth: pick('depth'),
    numHeads: pick('numHeads'),
    mlpRatio: pick('mlpRatio'),
    qkvBias: true,
    vlffnStartLayerIndex: pick('vlffnStartLayerIndex'),
    useAbsPosEmb: pick('useAbsPosEmb'),
    needRelativePositionEmbed: pick('needRelativePositionEmbed'),
    layerScaleInitValues: pick('layerScaleInitValues'),
  };
  if (kwargs.imgSize !== section.imageSize) {
    problems.push(`${at(['transformerKwargs', 'imgSize'])} ${kwargs.imgSize} ≠ ${at(['vlmoConfig', 'imageSize'])} ${section.imageSize}`);
  }
  if (kwargs.imgSize % kwargs.patchSize !== 0)
    problems.push(`image size ${kwargs.imgSize} is not a multiple of patch size ${kwargs.patchSize}`);
  if (kwargs.embedDim % kwargs.numHeads !== 0) problems.push(`width ${kwargs.embedDim} is not divisible by ${kwargs.numHeads} heads`);
  if (kwargs.vlffnStartLayerIndex > kwargs.depth) {
    problems.push(`${at(['transformerKwargs', 'vlffnStartLayerIndex'])} ${kwargs.vlffnStartLayerIndex} > depth ${kwargs.depth}`);
  }
  if (kwargs.useAbsPosEmb && kwargs.needRelativePositionEmbed) {
    problems.push(
      'a config with both absolute and relative positions is not one VLMo released (use_abs_pos_emb with need_relative_position_embed)',
    );
  }
  if (kwargs.needRelativePositionEmbed && section.maxTextLen > section.maxTextLenOfInitckpt) {
    problems.push(
      `${at(['vlmoConfig', 'maxTextLen'])} ${section.maxTextLen} > ${at(['vlmoConfig', 'maxTextLenOfInitckpt'])} ${section.maxTextLenOfInitckpt}: the relative position table has no rows for such distances`,
    );
  }
  const derivedBert: VlmoBertConfig = {
    vocabSize: section.vocabSize,
    hiddenSize: kwargs.embedDim,
    maxPositionEmbeddings: section.maxTextLen,
    hiddenDropoutProb: section.dropPathRate,
    positionEmbeddingType: kwargs.needRelativePositionEmbed ? 'rel_pos' : 'absolute',
    typeVocabSize: 2,
    layerNormEps: 1e-12,
    hiddenAct: 'gelu',
    padTokenId: 0,
  };
  const givenBert = parsed.bertConfig;
  const bertConfig: VlmoBertConfig = { ...derivedBert, ...givenBert } as VlmoBertConfig;
  if (givenBert) {
    for (const k of ['vocabSize', 'hiddenSize', 'maxPositionEmbeddings', 'positionEmbeddingType'] as const) {
      if (givenBert[k] !== undefined && givenBert[k] !== derivedBert[k]) {
        problems.push(
          `${at(['bertConfig', k])} ${JSON.stringify(givenBert[k])} ≠ ${JSON.stringify(derivedBert[k])}, what VLMo derives from the other sections`,
        );
      }
    }
  }
  if (problems.length) {
    throw new VlError('CONFIG_INVALID', problems.join('; '), { subject, hint: 'fix the fields named (see docs/vlmo.md, "Config")' });
  }
  return {
    ...parsed,
    vlmoConfig: section,
    transformerKwargs: kwargs,
    bertConfig,
    tokens: (parsed.tokens as VlmoTokens | undefined) ?? { ...BERT_BASE_UNCASED_TOKENS },
  };
}

/**
 * Validates a camelCase config and fills what the official code derives; every bad field is listed
 * (VlError CONFIG_INVALID). `keyName` spells paths as the source does (snakeKey for a config.json).
 */
export function parseVlmoConfig(value: unknown, subject = 'VlmoConfig', keyName: (key: string) => string = (k) => k): VlmoConfig {
  return complete(validateConfig(value, vlmoConfigSchema, subject, keyName), subject, keyName);
}

/** A parsed config.json (snake_case, as the fixtures write it) → VlmoConfig; unknown keys are kept. */
export function vlmoConfigFromJson(json: unknown, subject = 'config.json'): VlmoConfig {
  return parseVlmoConfig(camelizeKeys(json, { subject }), subject, snakeKey);
}

/** VlmoConfig → the config.json object (snake_case; unknown keys restored). */
export function vlmoConfigToJson(config: VlmoConfig): Record<string, unknown> {
  return snakifyKeys({ ...config, modelArch: config.vlmoConfig.modelArch }, { subject: 'VlmoConfig' });
}

/** The sizes and switches the model is built from, read off a config. */
export interface VlmoDims {
  imageSize: number;
  patchSize: number;
  inChans: number;
  /** Patches per side (image_size / patch). */
  grid: number;
  /** grid² + 1 (the class token). */
  numImageTokens: number;
  hiddenSize: number;
  depth: number;
  numHeads: number;
  headDim: number;
  intermediateSize: number;
  /** Effective first VL-FFN layer: depth when text-only MLM (stage 2, as the official code sets it) or MIM (stage 1) is on. */
  vlffnStart: number;
  relativePosition: boolean;
  absolutePosition: boolean;
  layerScaleInit: number | null;
  /** One self-attention for every token (VLMo); false: one per expert (transformer_kwargs.shared_attention). */
  sharedAttention: boolean;
  maxTextLen: number;
  maxTextLenOfInitckpt: number;
  vocabSize: number;
  dropPathRate: number;
  bertLayerNormEps: number;
  /** Which heads `VLMo.__init__` builds for these loss names. */
  heads: { mlm: boolean; itm: boolean; itc: boolean; itcVl: boolean };
  /** Visual vocabulary of the stage-1 MIM head, or null without one (loss_names.mim 0, every official config). */
  visualVocabSize: number | null;
  /** Answers of the VQA classifier (`vqav2_label_size`), or null without it (loss_names.vqa 0). */
  vqaLabels: number | null;
  /** The NLVR2 classifier (loss_names.nlvr2 > 0); it also makes `token_type_embeddings` three rows. */
  nlvr2: boolean;
  /** Rows of the top-level `token_type_embeddings`: 2 (text, image), 3 with NLVR2 (its second image). */
  numTokenTypes: number;
}

/** config.py's `vqav2_label_size`: the VQA v2 answer vocabulary. */
export const VQAV2_LABEL_SIZE = 3129;

/** BEiT's DALL-E tokenizer has 8192 codes: the MIM head's default size. */
export const BEIT_VISUAL_VOCAB_SIZE = 8192;

export function vlmoDims(config: VlmoConfig): VlmoDims {
  const s = config.vlmoConfig;
  const k = config.transformerKwargs;
  const grid = k.imgSize / k.patchSize;
  const l = s.lossNames;
  return {
    imageSize: k.imgSize,
    patchSize: k.patchSize,
    inChans: k.inChans,
    grid,
    numImageTokens: grid * grid + 1,
    hiddenSize: k.embedDim,
    depth: k.depth,
    numHeads: k.numHeads,
    headDim: k.embedDim / k.numHeads,
    intermediateSize: Math.floor(k.embedDim * k.mlpRatio),
    // Stage 2 (textmlm) as the official code; stage 1 (our mim) likewise, as the BEiT it stands for has no VL-FFN.
    vlffnStart: l.textmlm > 0 || (l.mim ?? 0) > 0 ? k.depth : k.vlffnStartLayerIndex,
    relativePosition: k.needRelativePositionEmbed,
    absolutePosition: k.useAbsPosEmb,
    layerScaleInit: k.layerScaleInitValues,
    sharedAttention: k.sharedAttention !== false,
    maxTextLen: s.maxTextLen,
    maxTextLenOfInitckpt: s.maxTextLenOfInitckpt,
    vocabSize: s.vocabSize,
    dropPathRate: s.dropPathRate,
    bertLayerNormEps: config.bertConfig.layerNormEps,
    heads: { mlm: l.mlm > 0 || l.textmlm > 0, itm: l.itm > 0, itc: l.itc > 0 || l.irtr > 0, itcVl: l.itc > 0 },
    visualVocabSize: (l.mim ?? 0) > 0 ? (s.visualVocabSize ?? BEIT_VISUAL_VOCAB_SIZE) : null,
    vqaLabels: l.vqa > 0 ? (s.vqav2LabelSize ?? VQAV2_LABEL_SIZE) : null,
    nlvr2: l.nlvr2 > 0,
    numTokenTypes: l.nlvr2 > 0 ? 3 : 2,
  };
}

export type VlmoPresetName = 'tiny' | 'base' | 'basePlus' | 'large';

/** The official entry point's sizes with config.py's section (pretraining losses itm + itc + mlm). */
function archPreset(
  arch: VlmoArch,
  section: Partial<VlmoSection> = {},
  kwargs: Partial<VlmoTransformerKwargs> = {},
  tokens: VlmoTokens = BERT_BASE_UNCASED_TOKENS,
): VlmoConfig {
  return parseVlmoConfig({
    vlmoConfig: { modelArch: arch, lossNames: { itm: 1, itc: 1, mlm: 1 }, ...section },
    transformerKwargs: { ...VLMO_ARCH_KWARGS[arch], ...kwargs },
    tokens: { ...tokens },
  });
}

export interface VlmoPresetOverrides {
  vocabSize?: number;
  imageSize?: number;
  /** Text length every text is padded to; the relative table's text rows grow with it when it passes max_text_len_of_initckpt. */
  maxTextLen?: number;
}

/**
 * Named configs. `tiny` has the sizes of the vlmo-seed0 fixture (the `vlmo_base_patch16` path: relative
 * positions, layer scale); `base`, `large` and `basePlus` are the released architectures at 224 px.
 * Overrides change the vocabulary, the image size (the relative table follows the grid) and the text length.
 */
export function vlmoPreset(name: VlmoPresetName, overrides: VlmoPresetOverrides = {}): VlmoConfig {
  const section: Partial<VlmoSection> = {};
  if (overrides.vocabSize !== undefined) section.vocabSize = overrides.vocabSize;
  if (overrides.imageSize !== undefined) section.imageSize = overrides.imageSize;
  if (overrides.maxTextLen !== undefined) {
    section.maxTextLen = overrides.maxTextLen;
    const initLen = name === 'tiny' ? 12 : 196;
    if (overrides.maxTextLen > initLen) section.maxTextLenOfInitckpt = overrides.maxTextLen;
  }
  switch (name) {
    case 'tiny':
      return archPreset(
        'vlmo_base_patch16',
        { imageSize: 32, maxTextLen: 9, maxTextLenOfInitckpt: 12, vocabSize: 99, ...section },
        { imgSize: section.imageSize ?? 32, patchSize: 8, embedDim: 32, depth: 4, numHeads: 4, mlpRatio: 2, vlffnStartLayerIndex: 2 },
        { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 },
      );
    case 'base':
      return archPreset('vlmo_base_patch16', section, { imgSize: section.imageSize ?? 224 });
    case 'large':
      return archPreset('vlmo_large_patch16', section, { imgSize: section.imageSize ?? 224 });
    case 'basePlus':
      return archPreset('vlmo_base_plus_patch16', section, { imgSize: section.imageSize ?? 224 });
    default:
      throw new VlError('CONFIG_INVALID', `unknown VLMo preset '${String(name)}'`, {
        subject: 'vlmoPreset',
        hint: 'tiny, base, basePlus or large',
      });
  }
}
