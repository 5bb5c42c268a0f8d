// The configuration of Salesforce's original BLIP (salesforce/BLIP: the factory kwargs of `blip_decoder`,
// `blip_retrieval`, `blip_pretrain`, `configs/med_config.json` / `bert_config.json`, and `create_vit`'s ViT sizes),
// translated at the boundary to @vl/blip's BlipConfig (camelCase) and back. Browser-safe.
//
// The file read here is the `config.json` of an official-layout folder, as the reference fixtures
// (fixtures/blip-official) carry it: `{ model, factory, model_kwargs, "med_config.json" | "bert_config.json",
// vision_config?, tokens? }`, snake_case as the original code reads it. Released `.pth` files come without one;
// `blipConfigFromOfficialState` then reads the sizes from the tensor shapes.
import { VlError } from '@vl/core';
import { z } from 'zod';
import { type BlipConfig, parseBlipConfig } from './config.js';
import { OFFICIAL_CLASS_TARGET, type OfficialBlipClass } from './official-keys.js';

/** What the original classes take beyond the sizes: the parts BlipConfig has no field for. */
export interface OfficialBlipSettings {
  modelClass: OfficialBlipClass;
  /** BLIP_Decoder's caption prompt ('a picture of '), whose tokens the LM loss does not score. */
  prompt: string;
  /** [ENC]: the first token of the image-grounded encoder's input (ITM); V−1 after `init_tokenizer`. */
  encTokenId: number;
  /** ITC queue length (57,600 in the paper) and EMA momentum of the twins (BLIP_Retrieval, BLIP_Pretrain). */
  queueSize: number;
  momentum: number;
  /** BLIP_Retrieval: draw ITM negatives across all GPUs (one process here: no difference). */
  negativeAllRank: boolean;
}

/** `create_vit(vit)`: the two ViTs BLIP builds (patch 16, mlp_ratio 4); `vision_width` sizes cross-attention and vision_proj. */
export const BLIP_VITS = {
  base: { width: 768, depth: 12, heads: 12 },
  large: { width: 1024, depth: 24, heads: 16 },
} as const;

/** Each factory's defaults (its `__init__` signature). */
const CLASS_DEFAULTS: Readonly<Record<OfficialBlipClass, { imageSize: number; medConfig: string }>> = {
  BLIP_Decoder: { imageSize: 384, medConfig: 'configs/med_config.json' },
  BLIP_Retrieval: { imageSize: 384, medConfig: 'configs/med_config.json' },
  BLIP_Pretrain: { imageSize: 224, medConfig: 'configs/bert_config.json' },
};

const FACTORY: Readonly<Record<OfficialBlipClass, [file: string, fn: string]>> = {
  BLIP_Decoder: ['blip', 'blip_decoder'],
  BLIP_Retrieval: ['blip_retrieval', 'blip_retrieval'],
  BLIP_Pretrain: ['blip_pretrain', 'blip_pretrain'],
};

/** bert-base-uncased, which `init_tokenizer` always loads: [PAD] 0, [SEP] 102; [DEC] and [ENC] are appended. */
const BERT_BASE_UNCASED = { vocabSize: 30522, pad: 0, sep: 102 } as const;

const int = (min = 1) => z.number().int().min(min);

/** `configs/med_config.json` / `bert_config.json` (transformers' BertConfig keys); unknown keys are kept. */
const medSchema = z
  .object({
    vocab_size: int(),
    hidden_size: int(),
    num_hidden_layers: int(0),
    num_attention_heads: int(),
    intermediate_size: int(),
    max_position_embeddings: int(),
    hidden_act: z.literal('gelu').default('gelu'),
    layer_norm_eps: z.number().positive().default(1e-12),
    hidden_dropout_prob: z.number().min(0).max(1).default(0.1),
    attention_probs_dropout_prob: z.number().min(0).max(1).default(0.1),
    initializer_range: z.number().default(0.02),
    pad_token_id: int(0).default(0),
    encoder_width: int().optional(),
  })
  .loose();

/** `VisionTransformer(...)` kwargs as `create_vit` passes them (the fixtures record the sizes in effect). */
const visionSchema = z
  .object({
    embed_dim: int(),
    depth: int(0),
    num_heads: int(),
    mlp_ratio: z.number().positive().default(4),
    patch_size: int().default(16),
    img_size: int().optional(),
    in_chans: int().default(3),
  })
  .loose();

const officialSchema = z
  .object({
    model: z.string().optional(),
    factory: z.string().optional(),
    model_kwargs: z
      .object({
        med_config: z.string().optional(),
        image_size: int().optional(),
        vit: z.enum(['base', 'large']).default('base'),
        prompt: z.string().optional(),
        embed_dim: int().optional(),
        queue_size: int().optional(),
        momentum: z.number().min(0).max(1).optional(),
        negative_all_rank: z.boolean().optional(),
      })
      .loose()
      .default({ vit: 'base' }),
    'med_config.json': medSchema.optional(),
    'bert_config.json': medSchema.optional(),
    vision_config: visionSchema.optional(),
    tokens: z
      .object({ pad: int(0), sep: int(0), bos: int(0), enc: int(0) })
      .loose()
      .optional(),
    training_config: z.object({ max_length: int().optional() }).loose().optional(),
  })
  .loose();

type OfficialJson = z.infer<typeof officialSchema>;

/** Whether a parsed config.json is in the original code's form (factory kwargs + med config) rather than HF's. */
export function isOfficialBlipConfig(raw: unknown): boolean {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return false;
  const o = raw as Record<string, unknown>;
  return 'med_config.json' in o || 'bert_config.json' in o || 'model_kwargs' in o || 'factory' in o;
}

/** The class a config names: `model` ("BLIP_Decoder (models/blip.py)"), else the factory, else the med config file. */
function classOfConfig(o: OfficialJson): OfficialBlipClass | null {
  for (const c of ['BLIP_Decoder', 'BLIP_Retrieval', 'BLIP_Pretrain'] as const) if (o.model?.startsWith(c)) return c;
  for (const c of ['BLIP_Decoder', 'BLIP_Retrieval', 'BLIP_Pretrain'] as const) if (o.factory?.includes(`${FACTORY[c][1]}(`)) return c;
  if (o['bert_config.json'] && !o['med_config.json']) return 'BLIP_Pretrain';
  return null;
}

/**
 * An official config.json → BlipConfig (architectures = the @vl/blip class holding that original class) and the
 * settings BlipConfig has no field for. `modelClass` (from the checkpoint's keys) decides when the file names none;
 * when both name one they must agree.
 */
export function blipConfigFromOfficial(
  raw: unknown,
  subject = 'config.json',
  modelClass?: OfficialBlipClass,
): { config: BlipConfig; settings: OfficialBlipSettings } {
  const o = parseOfficial(raw, subject);
  const named = classOfConfig(o);
  if (named && modelClass && named !== modelClass) {
    throw new VlError('CONFIG_INVALID', `config.json describes ${named} but the checkpoint's keys are those of ${modelClass}`, {
      subject,
      hint: 'use the config.json that came with this checkpoint',
    });
  }
  const cls = named ?? modelClass;
  if (!cls) {
    throw new VlError('CONFIG_INVALID', 'cannot tell which BLIP class this config is for (no `model` or `factory`)', {
      subject,
      hint: 'add "model": "BLIP_Decoder" (or BLIP_Retrieval / BLIP_Pretrain)',
    });
  }
  const med = o['med_config.json'] ?? o['bert_config.json'];
  if (!med) {
    throw new VlError('CONFIG_INVALID', 'no "med_config.json" (or "bert_config.json") entry with the text sizes', { subject });
  }
  const k = o.model_kwargs;
  const vit = BLIP_VITS[k.vit];
  const v = o.vision_config ?? { embed_dim: vit.width, depth: vit.depth, num_heads: vit.heads, mlp_ratio: 4, patch_size: 16, in_chans: 3 };
  // The factory's image_size is what VisionTransformer gets as img_size; a different img_size is only a record.
  const imageSize = k.image_size ?? v.img_size ?? CLASS_DEFAULTS[cls].imageSize;
  // BLIP_Pretrain builds from bert_config.json (bert-base-uncased's vocabulary) and then resizes the embeddings to
  // len(tokenizer), which init_tokenizer made two longer ([DEC], [ENC]); the other classes' med_config has the final size.
  const vocab = 'bert_config.json' in o && !('med_config.json' in o) ? med.vocab_size + 2 : med.vocab_size;
  const bert = vocab === BERT_BASE_UNCASED.vocabSize + 2;
  const tokens = o.tokens ?? (bert ? { pad: med.pad_token_id, sep: BERT_BASE_UNCASED.sep, bos: vocab - 2, enc: vocab - 1 } : null);
  if (!tokens) {
    throw new VlError(
      'CONFIG_INVALID',
      `vocabulary of ${vocab} tokens is not bert-base-uncased + [DEC] + [ENC], and no "tokens" entry says where [SEP], [DEC] and [ENC] are`,
      {
        subject,
        hint: 'add "tokens": { "pad": …, "sep": …, "bos": …, "enc": … }',
      },
    );
  }
  const config = parseBlipConfig(
    {
      architectures: [OFFICIAL_CLASS_TARGET[cls]],
      visionConfig: {
        hiddenSize: v.embed_dim,
        // timm's Mlp: hidden_features = int(dim * mlp_ratio)
        intermediateSize: Math.floor(v.embed_dim * v.mlp_ratio + 1e-9),
        numHiddenLayers: v.depth,
        numAttentionHeads: v.num_heads,
        numChannels: v.in_chans,
        imageSize,
        patchSize: v.patch_size,
        layerNormEps: 1e-6, // vit.py: partial(nn.LayerNorm, eps=1e-6)
        attentionDropout: 0,
      },
      textConfig: {
        vocabSize: vocab,
        hiddenSize: med.hidden_size,
        // create_vit's vision_width replaces the file's encoder_width
        encoderHiddenSize: v.embed_dim,
        intermediateSize: med.intermediate_size,
        numHiddenLayers: med.num_hidden_layers,
        numAttentionHeads: med.num_attention_heads,
        maxPositionEmbeddings: med.max_position_embeddings,
        hiddenAct: med.hidden_act,
        layerNormEps: med.layer_norm_eps,
        hiddenDropoutProb: med.hidden_dropout_prob,
        attentionProbsDropoutProb: med.attention_probs_dropout_prob,
        initializerRange: med.initializer_range,
        bosTokenId: tokens.bos,
        padTokenId: tokens.pad,
        eosTokenId: tokens.sep,
        sepTokenId: tokens.sep,
        // BLIP_Decoder.generate's default max_length
        maxLength: o.training_config?.max_length ?? 30,
      },
      imageTextHiddenSize: k.embed_dim ?? 256,
      initializerRange: med.initializer_range,
    },
    subject,
  );
  const settings: OfficialBlipSettings = {
    modelClass: cls,
    prompt: k.prompt ?? (cls === 'BLIP_Decoder' ? 'a picture of ' : ''),
    encTokenId: tokens.enc,
    queueSize: k.queue_size ?? 57600,
    momentum: k.momentum ?? 0.995,
    negativeAllRank: k.negative_all_rank ?? false,
  };
  // The training classes read their options from the config, under the names their own savePretrained writes.
  if (cls === 'BLIP_Pretrain') {
    Object.assign(config, {
      blipPretraining: { queueSize: settings.queueSize, momentum: settings.momentum },
      encTokenId: settings.encTokenId,
    });
  } else if (cls === 'BLIP_Retrieval') {
    Object.assign(config, {
      blipRetrievalTraining: { queueSize: settings.queueSize, momentum: settings.momentum, negativeAllRank: settings.negativeAllRank },
      encTokenId: settings.encTokenId,
    });
  }
  return { config, settings };
}

/** The config fields only the training classes read (dropped when an inference class is built from the config). */
export const TRAINING_CONFIG_FIELDS = ['blipPretraining', 'blipRetrievalTraining', 'encTokenId'] as const;

/** The config without the training classes' fields. */
export function inferenceConfig(config: BlipConfig): BlipConfig {
  const out: BlipConfig = { ...config };
  for (const f of TRAINING_CONFIG_FIELDS) delete out[f];
  return out;
}

function parseOfficial(raw: unknown, subject: string): OfficialJson {
  const result = officialSchema.safeParse(raw);
  if (result.success) return result.data;
  const lines = result.error.issues.map((i) => `$.${i.path.join('.')}: ${i.message}`);
  throw new VlError('CONFIG_INVALID', `${lines.length} invalid field${lines.length === 1 ? '' : 's'}:\n${lines.join('\n')}`, {
    subject,
    hint: 'an official BLIP config.json holds model_kwargs and "med_config.json" (or "bert_config.json")',
  });
}

/** BlipConfig + settings → the official config.json form (what blipConfigFromOfficial reads back). */
export function blipConfigToOfficial(config: BlipConfig, settings: OfficialBlipSettings): Record<string, unknown> {
  const v = config.visionConfig;
  const t = config.textConfig;
  const cls = settings.modelClass;
  const medName = cls === 'BLIP_Pretrain' ? 'bert_config.json' : 'med_config.json';
  const [file, fn] = FACTORY[cls];
  const modelKwargs: Record<string, unknown> = {
    med_config: CLASS_DEFAULTS[cls].medConfig,
    image_size: v.imageSize,
    vit: v.hiddenSize === BLIP_VITS.large.width ? 'large' : 'base',
    vit_grad_ckpt: false,
    vit_ckpt_layer: 0,
  };
  if (cls === 'BLIP_Decoder') modelKwargs.prompt = settings.prompt;
  else {
    modelKwargs.embed_dim = config.imageTextHiddenSize;
    modelKwargs.queue_size = settings.queueSize;
    modelKwargs.momentum = settings.momentum;
    if (cls === 'BLIP_Retrieval') modelKwargs.negative_all_rank = settings.negativeAllRank;
  }
  return {
    model: `${cls} (models/${file}.py)`,
    factory: `models.${file}.${fn}(${cls === 'BLIP_Pretrain' ? '' : "pretrained='', "}**model_kwargs)`,
    model_kwargs: modelKwargs,
    [medName]: {
      architectures: ['BertModel'],
      attention_probs_dropout_prob: t.attentionProbsDropoutProb,
      hidden_act: t.hiddenAct,
      hidden_dropout_prob: t.hiddenDropoutProb,
      hidden_size: t.hiddenSize,
      initializer_range: t.initializerRange,
      intermediate_size: t.intermediateSize,
      layer_norm_eps: t.layerNormEps,
      max_position_embeddings: t.maxPositionEmbeddings,
      model_type: 'bert',
      num_attention_heads: t.numAttentionHeads,
      num_hidden_layers: t.numHiddenLayers,
      pad_token_id: t.padTokenId,
      type_vocab_size: 2,
      vocab_size: cls === 'BLIP_Pretrain' ? t.vocabSize - 2 : t.vocabSize,
      encoder_width: t.encoderHiddenSize,
      add_cross_attention: true,
    },
    vision_config: {
      embed_dim: v.hiddenSize,
      depth: v.numHiddenLayers,
      num_heads: v.numAttentionHeads,
      mlp_ratio: v.intermediateSize / v.hiddenSize,
      patch_size: v.patchSize,
      img_size: v.imageSize,
      in_chans: v.numChannels,
    },
    tokens: { pad: t.padTokenId, sep: t.sepTokenId, bos: t.bosTokenId, enc: settings.encTokenId },
    training_config: { max_length: t.maxLength ?? 30 },
  };
}

/** The shape of an official entry, or an error naming it. */
function shapeOf(shapes: ReadonlyMap<string, readonly number[]>, key: string, subject: string): readonly number[] {
  const s = shapes.get(key);
  if (!s) throw new VlError('CHECKPOINT_INVALID', `no '${key}' to read the model's sizes from`, { subject, hint: 'give a config.json' });
  return s;
}

function countLayers(shapes: ReadonlyMap<string, readonly number[]>, prefix: RegExp): number {
  let n = 0;
  for (const k of shapes.keys()) {
    const m = prefix.exec(k);
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  return n;
}

/**
 * The config of a released checkpoint that has no config.json, read from its tensor shapes (official names):
 * widths, depths, vocabulary, image size (the position-embedding grid × patch), embed_dim and queue_size. Head counts
 * are not in any shape: BLIP's ViT-B/ViT-L and BERT-base all use 64-dimensional heads. The tokens are
 * bert-base-uncased's with [DEC], [ENC] appended, so the vocabulary must have 30,524 entries.
 */
export function blipConfigFromOfficialState(
  shapes: ReadonlyMap<string, readonly number[]>,
  modelClass: OfficialBlipClass,
  subject: string,
): { config: BlipConfig; settings: OfficialBlipSettings } {
  const [, , width] = shapeOf(shapes, 'visual_encoder.cls_token', subject) as [number, number, number];
  const patch = shapeOf(shapes, 'visual_encoder.patch_embed.proj.weight', subject);
  const [, tokensN] = shapeOf(shapes, 'visual_encoder.pos_embed', subject) as [number, number];
  const grid = Math.round(Math.sqrt(tokensN - 1));
  const [mlp] = shapeOf(shapes, 'visual_encoder.blocks.0.mlp.fc1.weight', subject) as [number];
  const text = modelClass === 'BLIP_Decoder' ? 'text_decoder.bert' : 'text_encoder';
  const [vocab, hidden] = shapeOf(shapes, `${text}.embeddings.word_embeddings.weight`, subject) as [number, number];
  const [maxPos] = shapeOf(shapes, `${text}.embeddings.position_embeddings.weight`, subject) as [number];
  const [inter] = shapeOf(shapes, `${text}.encoder.layer.0.intermediate.dense.weight`, subject) as [number];
  if (vocab !== BERT_BASE_UNCASED.vocabSize + 2) {
    throw new VlError(
      'CONFIG_INVALID',
      `the vocabulary has ${vocab} entries, not bert-base-uncased's 30522 + [DEC] + [ENC]: its special tokens cannot be guessed`,
      {
        subject,
        hint: 'put a config.json next to the checkpoint (see docs/checkpoints.md)',
      },
    );
  }
  const raw: Record<string, unknown> = {
    model_kwargs: {
      image_size: grid * (patch[2] as number),
      vit: width === BLIP_VITS.large.width ? 'large' : 'base',
      embed_dim: shapes.get('vision_proj.weight')?.[0],
      queue_size: shapes.get('image_queue')?.[1],
    },
    [modelClass === 'BLIP_Pretrain' ? 'bert_config.json' : 'med_config.json']: {
      vocab_size: modelClass === 'BLIP_Pretrain' ? vocab - 2 : vocab,
      hidden_size: hidden,
      num_hidden_layers: countLayers(shapes, new RegExp(`^${text.replace('.', '\\.')}\\.encoder\\.layer\\.(\\d+)\\.`)),
      num_attention_heads: hidden / 64,
      intermediate_size: inter,
      max_position_embeddings: maxPos,
    },
    vision_config: {
      embed_dim: width,
      depth: countLayers(shapes, /^visual_encoder\.blocks\.(\d+)\./),
      num_heads: width / 64,
      mlp_ratio: mlp / width,
      patch_size: patch[2],
      in_chans: patch[1],
    },
  };
  return blipConfigFromOfficial(raw, `${subject} (sizes read from the tensor shapes)`, modelClass);
}
