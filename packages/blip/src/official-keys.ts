// The key map between Salesforce's original BLIP checkpoints (github.com/salesforce/BLIP: `models/blip.py`
// BLIP_Decoder, `blip_retrieval.py` BLIP_Retrieval, `blip_pretrain.py` BLIP_Pretrain, over `vit.py` and `med.py`)
// and @vl/blip's module tree, which uses Hugging Face's names. Both directions, browser-safe (no files).
//
// What differs (everything else keeps its name, e.g. `text_encoder.*`, `text_decoder.bert.*`, `itm_head`, `temp`):
//   visual_encoder{,_m}.cls_token / pos_embed / patch_embed.proj   ↔ vision_model{,_m}.embeddings.{class_embedding,
//                                                                    position_embedding, patch_embedding}
//   visual_encoder{,_m}.blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp} ↔ vision_model{,_m}.encoder.layers.N.{layer_norm1,
//                                                                    self_attn.qkv, self_attn.projection, layer_norm2, mlp}
//   visual_encoder{,_m}.norm                                        ↔ vision_model{,_m}.post_layernorm
//   image_queue, text_queue, idx_queue, queue_ptr                   ↔ queues.* (core's MomentumContrastive queue)
//   ptr_queue (BLIP_Retrieval's name for its pointer)                → queues.queue_ptr (and back for BLIP_Retrieval)
// The ViT attention is the fused `qkv` Linear [3W, W] in both trees (core's 'fused' layout), so no tensor changes.
//
// Tied entries of the official state dicts (every name is in the file, with identical bytes):
//   text_decoder.cls.predictions.decoder.bias = text_decoder.cls.predictions.bias (every class with a decoder): our
//     LM head reads `bias` only, so the duplicate is checked and dropped, and written back by toOfficialState;
//   BLIP_Pretrain: text_decoder.bert.X = text_encoder.X for every X outside the self-attention
//     (`tie_encoder_decoder_weights(..., '/attention')`): our SharedTextDecoder registers only
//     `text_decoder.bert.encoder.layer.N.attention.*` and reads the rest from `text_encoder`, so when loading into
//     BlipForPretraining the duplicates are checked and dropped; loading the same file into a captioner keeps
//     `text_decoder.bert.*` (that is what Hugging Face's converter does with `model_base_capfilt_large.pth`).
//   `text_decoder.cls.predictions.decoder.weight` = the word embeddings: we keep both names as separate
//     parameters (as Hugging Face's BLIP classes do), loaded from their own entries.

/** Which layout a state dict is in: Salesforce's original names, or ours (= Hugging Face transformers'). */
export type BlipLayout = 'official' | 'hf';

/** The original classes behind the released `.pth` files. */
export type OfficialBlipClass = 'BLIP_Decoder' | 'BLIP_Retrieval' | 'BLIP_Pretrain';

/** The @vl/blip class a checkpoint is loaded into. */
export type BlipTarget = 'BlipForConditionalGeneration' | 'BlipForImageTextRetrieval' | 'BlipForRetrievalTraining' | 'BlipForPretraining';

/** The @vl/blip class that holds everything of each original class. */
export const OFFICIAL_CLASS_TARGET: Readonly<Record<OfficialBlipClass, BlipTarget>> = {
  BLIP_Decoder: 'BlipForConditionalGeneration',
  BLIP_Retrieval: 'BlipForRetrievalTraining',
  BLIP_Pretrain: 'BlipForPretraining',
};

/**
 * Renames as [official, ours]. An entry ending in '.' renames a prefix, otherwise one whole key; `N` stands for
 * a layer index. The first entry that matches wins; a key no entry matches keeps its name.
 */
export const BLIP_OFFICIAL_RENAMES: readonly (readonly [official: string, ours: string])[] = [
  ...(['', '_m'] as const).flatMap(
    (m) =>
      [
        [`visual_encoder${m}.cls_token`, `vision_model${m}.embeddings.class_embedding`],
        [`visual_encoder${m}.pos_embed`, `vision_model${m}.embeddings.position_embedding`],
        [`visual_encoder${m}.patch_embed.proj.`, `vision_model${m}.embeddings.patch_embedding.`],
        [`visual_encoder${m}.blocks.N.norm1.`, `vision_model${m}.encoder.layers.N.layer_norm1.`],
        [`visual_encoder${m}.blocks.N.attn.qkv.`, `vision_model${m}.encoder.layers.N.self_attn.qkv.`],
        [`visual_encoder${m}.blocks.N.attn.proj.`, `vision_model${m}.encoder.layers.N.self_attn.projection.`],
        [`visual_encoder${m}.blocks.N.norm2.`, `vision_model${m}.encoder.layers.N.layer_norm2.`],
        [`visual_encoder${m}.blocks.N.mlp.`, `vision_model${m}.encoder.layers.N.mlp.`],
        [`visual_encoder${m}.norm.`, `vision_model${m}.post_layernorm.`],
      ] as const,
  ),
  ...(['image_queue', 'text_queue', 'idx_queue', 'queue_ptr'] as const).map((q) => [q, `queues.${q}`] as const),
  // BLIP_Retrieval names its pointer ptr_queue; ours is core's MomentumContrastive queue_ptr in both classes.
  ['ptr_queue', 'queues.queue_ptr'],
];

interface CompiledRule {
  from: RegExp;
  to: string;
}

function compile(from: string, to: string): CompiledRule {
  const prefix = from.endsWith('.');
  const body = from
    .split('.')
    .map((part) => (part === 'N' ? '(\\d+)' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('\\.');
  return { from: new RegExp(`^${body}${prefix ? '' : '$'}`), to };
}

const TO_OURS = BLIP_OFFICIAL_RENAMES.map(([o, f]) => compile(o, f));
const TO_OFFICIAL = BLIP_OFFICIAL_RENAMES.map(([o, f]) => compile(f, o));

function rename(key: string, rules: readonly CompiledRule[]): string {
  for (const { from, to } of rules) {
    const m = from.exec(key);
    if (!m) continue;
    const replaced = m[1] === undefined ? to : to.replace('.N.', `.${m[1]}.`);
    return replaced + key.slice(m[0].length);
  }
  return key;
}

/** An official key under our name (`visual_encoder.blocks.3.attn.qkv.weight` → `vision_model.encoder.layers.3.self_attn.qkv.weight`). */
export function officialToOurKey(key: string): string {
  return rename(key, TO_OURS);
}

/** Our key under the official name: the inverse of officialToOurKey. */
export function ourToOfficialKey(key: string): string {
  return rename(key, TO_OFFICIAL);
}

/**
 * The layout of a state dict, from its key names: official if it has `visual_encoder.*` (every original class
 * has it), ours/HF if it has `vision_model.*`; null if neither (not a BLIP checkpoint).
 */
export function detectBlipLayout(keys: Iterable<string>): BlipLayout | null {
  let hf = false;
  for (const k of keys) {
    if (k.startsWith('visual_encoder.')) return 'official';
    if (k.startsWith('vision_model.')) hf = true;
  }
  return hf ? 'hf' : null;
}

/**
 * The original class that saved an official state dict: a text decoder and a text encoder make BLIP_Pretrain, a
 * decoder alone BLIP_Decoder (caption checkpoints have only `visual_encoder.*` and `text_decoder.*`), an encoder
 * alone BLIP_Retrieval. Null when it has neither.
 */
export function officialClassOf(keys: Iterable<string>): OfficialBlipClass | null {
  let encoder = false;
  let decoder = false;
  for (const k of keys) {
    if (k.startsWith('text_encoder.')) encoder = true;
    else if (k.startsWith('text_decoder.')) decoder = true;
  }
  if (decoder) return encoder ? 'BLIP_Pretrain' : 'BLIP_Decoder';
  return encoder ? 'BLIP_Retrieval' : null;
}

/** The official duplicate of the LM head bias, dropped on load and written back on save. */
export const DECODER_BIAS_DUPLICATE = 'text_decoder.cls.predictions.decoder.bias';
const DECODER_BIAS = 'text_decoder.cls.predictions.bias';

const DECODER_SELF_ATTENTION = /^text_decoder\.bert\.encoder\.layer\.\d+\.attention\./;

/**
 * For BLIP_Pretrain's encoder-decoder tie: the text encoder key a `text_decoder.bert.*` key duplicates, or null
 * for the decoder's own self-attention and for keys outside `text_decoder.bert`.
 */
export function sharedEncoderKey(decoderKey: string): string | null {
  if (!decoderKey.startsWith('text_decoder.bert.') || DECODER_SELF_ATTENTION.test(decoderKey)) return null;
  return `text_encoder.${decoderKey.slice('text_decoder.bert.'.length)}`;
}

/** What each target reads of an official file: [which official keys, why the others are not used]. */
interface Part {
  name: string;
  matches: (officialKey: string) => boolean;
}

const PARTS: readonly Part[] = [
  { name: 'vision', matches: (k) => k.startsWith('visual_encoder.') },
  { name: 'textEncoder', matches: (k) => k.startsWith('text_encoder.') },
  { name: 'decoder', matches: (k) => k.startsWith('text_decoder.') },
  { name: 'heads', matches: (k) => /^(vision_proj|text_proj|itm_head)\./.test(k) },
  { name: 'momentum', matches: (k) => /^(visual_encoder_m|vision_proj_m|text_encoder_m|text_proj_m)\./.test(k) },
  { name: 'queues', matches: (k) => /^(image_queue|text_queue|idx_queue|queue_ptr|ptr_queue)$/.test(k) },
  { name: 'temp', matches: (k) => k === 'temp' },
];

const TARGET_PARTS: Readonly<Record<BlipTarget, readonly string[]>> = {
  BlipForConditionalGeneration: ['vision', 'decoder'],
  BlipForImageTextRetrieval: ['vision', 'textEncoder', 'heads'],
  BlipForRetrievalTraining: ['vision', 'textEncoder', 'heads', 'momentum', 'queues', 'temp'],
  BlipForPretraining: ['vision', 'textEncoder', 'decoder', 'heads', 'momentum', 'queues', 'temp'],
};

const PART_REASON: Readonly<Record<string, string>> = {
  vision: 'the image encoder',
  textEncoder: 'the text encoder (ITC/ITM)',
  decoder: 'the image-grounded text decoder (captioning)',
  heads: 'the ITC projections and the ITM head',
  momentum: 'a momentum twin (training state: the EMA copy that makes ITC targets)',
  queues: 'the ITC feature queue (training state)',
  temp: 'the learned ITC temperature (training; inference ranks by cosine similarity)',
};

/**
 * Why `target` does not use an official key, or null when it does (or the key belongs to no known part of BLIP,
 * which a loader must treat as an error).
 */
export function unusedReason(officialKey: string, target: BlipTarget): string | null {
  const part = PARTS.find((p) => p.matches(officialKey));
  if (!part) return null;
  if (TARGET_PARTS[target].includes(part.name)) return null;
  return `${PART_REASON[part.name]}: not part of ${target}`;
}

/** One entry of a state dict, host or tensor-backed: only shape and values are compared. */
export interface StateLike {
  shape: readonly number[];
  data: ArrayLike<number>;
}

function sameValues(a: StateLike, b: StateLike): boolean {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i]) || a.data.length !== b.data.length) return false;
  for (let i = 0; i < a.data.length; i++) if (a.data[i] !== b.data[i]) return false;
  return true;
}

/** A tied official entry that was checked against the key it duplicates and dropped. */
export interface TiedEntry {
  key: string;
  source: string;
}

export interface FromOfficialResult<T> {
  /** Our keys → the file's values, for the keys `target` reads (tied duplicates resolved). */
  tensors: Map<string, T>;
  /** Official keys `target` does not read, each with the reason. */
  unused: { key: string; reason: string }[];
  /** Official duplicates that were checked equal to their source and dropped. */
  tied: TiedEntry[];
  /** Tied pairs whose values differ: the file was not made by BLIP's tied modules. */
  tieMismatches: TiedEntry[];
  /** Official keys that belong to no part of BLIP. */
  unknown: string[];
}

/**
 * Official state dict → ours for one target class: renames, resolves the tied duplicates (checking them equal),
 * and sets aside, with the reason, what the target does not read.
 */
export function fromOfficialState<T extends StateLike>(official: ReadonlyMap<string, T>, target: BlipTarget): FromOfficialResult<T> {
  const out: FromOfficialResult<T> = { tensors: new Map(), unused: [], tied: [], tieMismatches: [], unknown: [] };
  const sharedDecoder = target === 'BlipForPretraining';
  for (const [key, value] of official) {
    const reason = unusedReason(key, target);
    if (reason !== null) {
      out.unused.push({ key, reason });
      continue;
    }
    if (!PARTS.some((p) => p.matches(key))) {
      out.unknown.push(key);
      continue;
    }
    const source = key === DECODER_BIAS_DUPLICATE ? DECODER_BIAS : sharedDecoder ? sharedEncoderKey(key) : null;
    if (source !== null) {
      const src = official.get(source);
      if (src) {
        (sameValues(src, value) ? out.tied : out.tieMismatches).push({ key, source });
        continue;
      }
    }
    out.tensors.set(officialToOurKey(key), value);
  }
  return out;
}

/**
 * Our state dict (of any @vl/blip class) → the names of `officialClass`'s `state_dict()`, the tied duplicates
 * written back as the original has them: the decoder bias always; for BLIP_Pretrain every `text_decoder.bert.*`
 * entry outside the self-attention, from `text_encoder.*`. BLIP_Retrieval's pointer is `ptr_queue`; BLIP_Pretrain
 * has no `idx_queue` (ours is left out). `copy` duplicates a value.
 */
export function toOfficialState<T>(
  ours: ReadonlyMap<string, T>,
  options: { officialClass: OfficialBlipClass; copy: (v: T) => T },
): Map<string, T> {
  const cls = options.officialClass;
  const out = new Map<string, T>();
  for (const [key, value] of ours) {
    if (cls === 'BLIP_Pretrain' && key === 'queues.idx_queue') continue;
    const official = cls === 'BLIP_Retrieval' && key === 'queues.queue_ptr' ? 'ptr_queue' : ourToOfficialKey(key);
    out.set(official, value);
    if (cls === 'BLIP_Pretrain' && key.startsWith('text_encoder.')) {
      const dup = `text_decoder.bert.${key.slice('text_encoder.'.length)}`;
      if (sharedEncoderKey(dup) !== null) out.set(dup, options.copy(value));
    }
  }
  const bias = out.get(DECODER_BIAS);
  if (bias !== undefined) out.set(DECODER_BIAS_DUPLICATE, options.copy(bias));
  return out;
}
