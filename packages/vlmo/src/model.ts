// VLMo (Bao et al. 2022), the pretraining module of microsoft/unilm `vlmo/vlmo/modules/vlmo_module.py`
// (`VLMo`), composed from @vl/core: a Multiway transformer (`multiway_transformer.py`) whose blocks share
// self-attention and route each token to a V-FFN, L-FFN or — from `vlffn_start_layer_index` on — VL-FFN,
// BERT text embeddings, two token-type tables, the relative position table (base/large path) or
// absolute positions (base_plus path), the pooler and the ITC (plain and VL-FFN), ITM and MLM heads.
// Three modes: image only and text only (dual encoder, retrieval) and fusion (ITM, MLM).
//
// Parameter names are the official module tree's, so the state dict loads key for key:
//   relative_position_bias_table [numRel + 2·M + 2, depth·heads]    (base/large path only)
//   text_embeddings.{word,position,token_type}_embeddings.weight, text_embeddings.LayerNorm.*,
//   text_embeddings.position_ids (I64), token_type_embeddings.weight [2, D],
//   transformer.cls_token [1, 1, D], transformer.pos_embed [1, P, D] (base_plus), transformer.patch_embed.proj.*,
//   transformer.blocks.N.* (VLMO_LAYER_PRESET: gamma_1/2, norm1, attn.{qkv,q_bias,v_bias,proj}, norm2_{text,imag[,vl]},
//   mlp_{text,imag[,vl]}.fc{1,2}), transformer.norm.*, pooler.dense.*, mlm_score.{transform.*,decoder.weight,bias},
//   itm_score.fc.*, itc_{text,image,vl_text,vl_image}_proj.fc.weight, logit_scale [], logit_vl_scale [].
import * as tf from '@tensorflow/tfjs-core';
import {
  BertEmbeddings,
  BertLMPredictionHead,
  BertPooler,
  dropPathSchedule,
  Embedding,
  FLOAT32_MIN,
  firstToken,
  gelu,
  l2Normalize,
  LayerNorm,
  Linear,
  Module,
  type ModuleList,
  MultiwayLayer,
  type MultiwayLayerConfig,
  paddingMask,
  PatchEmbedding,
  PathModule,
  recordingGradients,
  Rng,
  type Route,
  TIMM_VIT_LAYER_NAMES,
  truncNormal,
  VLMO_EXPERTS,
  VLMO_FUSION_EXPERTS,
  VlError,
} from '@vl/core';
import { type VlmoConfig, type VlmoDims, vlmoDims } from './config.js';
import {
  allNumRelativeDistance,
  fusionRelativePositionIndex,
  imageRelativePositionIndex,
  type RelativeIndex,
  relativePositionBias,
  textRelativePositionIndex,
} from './relative-position.js';

/**
 * VLMo's `Block`: fused qkv whose bias is cat(q_bias, 0, v_bias), layer scale γ (0.1; base_plus passes
 * `layerScaleInit: null`), LayerNorm eps 1e-6, one FFN and its norm per expert (`mlp_imag`, `norm2_text`, …).
 * Layers from `vlffn_start_layer_index` on use `experts: VLMO_FUSION_EXPERTS` (adds `mlp_vl`, `norm2_vl`).
 */
export const VLMO_LAYER_PRESET = {
  qkvLayout: 'fused',
  qkvBias: 'qv',
  layerScaleInit: 0.1,
  layerNormEps: 1e-6,
  names: TIMM_VIT_LAYER_NAMES,
  experts: VLMO_EXPERTS,
  multiwayParts: ['norm2', 'mlp'],
} as const satisfies Partial<MultiwayLayerConfig>;

/**
 * The blocks of the separate-attention ablation (`transformer_kwargs.shared_attention: false`, not a
 * released architecture): q, k, v and the output projection become Multiway experts like the FFNs, as
 * BEiT-3's are, named in VLMo's suffix style (`attn.q_imag.weight`, `attn.k_text.weight`, `attn.proj_vl.bias`).
 * q and v keep their biases and k has none, as `cat(q_bias, 0, v_bias)` gives the shared attention. The
 * pre-norm `norm1` stays shared, so the variants differ in the attention parameters only.
 */
export const VLMO_SEPARATE_ATTENTION_LAYER = {
  qkvLayout: 'separate',
  names: { ...TIMM_VIT_LAYER_NAMES, attention: { query: 'q', key: 'k', value: 'v', out: 'proj' } },
  multiwayParts: ['attention', 'norm2', 'mlp'],
} as const satisfies Partial<MultiwayLayerConfig>;

/** LayerNorm eps of `transformer.norm`, `norm1` and `norm2_*` (partial(nn.LayerNorm, eps=1e-6)). */
const NORM_EPS = 1e-6;

/**
 * `MultiWayTransformer`: patch embedding, class token, [pos_embed], the Multiway blocks, final norm; and,
 * for stage-1 masked image modelling only, BEiT's `mask_token` and `lm_head` (the names a BEiT checkpoint
 * gets under the official `convert_to_textpt_ckpt`, which prefixes every BEiT key with `transformer.`).
 */
export class MultiwayTransformer extends PathModule {
  readonly patchEmbed: PatchEmbedding;
  readonly clsToken: tf.Variable;
  readonly posEmbed: tf.Variable | null;
  readonly blocks: ModuleList<MultiwayLayer>;
  readonly norm: LayerNorm;
  /** [1, 1, D]: replaces masked patch embeddings (BEiT `mask_token`); null without MIM. */
  readonly maskToken: tf.Variable | null;
  /** Linear(D, visual vocabulary) on the normed patch states (BEiT `lm_head`); null without MIM. */
  readonly lmHead: Linear | null;

  constructor(
    readonly dims: VlmoDims,
    rng: Rng,
  ) {
    super();
    const d = dims.hiddenSize;
    this.clsToken = this.placeParameter('cls_token', truncNormal([1, 1, d], rng, 0.02));
    this.posEmbed = dims.absolutePosition ? this.placeParameter('pos_embed', truncNormal([1, dims.numImageTokens, d], rng, 0.02)) : null;
    this.patchEmbed = this.placeModule('patch_embed.proj', new PatchEmbedding(dims.inChans, dims.patchSize, d, rng));
    const rates = dropPathSchedule(dims.dropPathRate, dims.depth);
    this.blocks = this.placeModuleList(
      'blocks',
      rates.map(
        (dropPath, i) =>
          new MultiwayLayer(
            {
              ...VLMO_LAYER_PRESET,
              ...(dims.sharedAttention ? {} : VLMO_SEPARATE_ATTENTION_LAYER),
              hiddenSize: d,
              numHeads: dims.numHeads,
              intermediateSize: dims.intermediateSize,
              layerScaleInit: dims.layerScaleInit,
              experts: i >= dims.vlffnStart ? VLMO_FUSION_EXPERTS : VLMO_EXPERTS,
              dropPath,
            },
            rng,
          ),
      ),
    );
    this.norm = this.placeModule('norm', new LayerNorm(d, NORM_EPS));
    const mim = dims.visualVocabSize;
    this.maskToken = mim === null ? null : this.placeParameter('mask_token', truncNormal([1, 1, d], rng, 0.02));
    this.lmHead = mim === null ? null : this.placeModule('lm_head', new Linear(d, mim, rng));
  }

  /**
   * `visual_embed`: pixels [B, C, S, S] → [cls; patches] (+ pos_embed) [B, P, D]. With `patchMask`
   * [B, g²] (1 = masked, MIM only) masked patch embeddings are replaced by `mask_token` first, as BEiT does.
   */
  visualEmbed(pixels: tf.Tensor, patchMask?: tf.Tensor): tf.Tensor {
    const { imageSize, inChans } = this.dims;
    const [, c, h, w] = pixels.shape;
    if (pixels.rank !== 4 || c !== inChans || h !== imageSize || w !== imageSize) {
      throw new VlError('SHAPE_MISMATCH', `images must be [B, ${inChans}, ${imageSize}, ${imageSize}], got [${pixels.shape}]`, {
        subject: 'VLMo visual_embed',
        hint: `resize images to ${imageSize}×${imageSize} (the relative position table and pos_embed are sized for it)`,
      });
    }
    return tf.tidy(() => {
      let { patches } = this.patchEmbed.forward(pixels); // [B, g², D]
      const b = patches.shape[0] as number;
      if (patchMask) {
        const token = this.need(this.maskToken);
        const n = this.dims.grid * this.dims.grid;
        if (patchMask.rank !== 2 || patchMask.shape[0] !== b || patchMask.shape[1] !== n) {
          throw new VlError('SHAPE_MISMATCH', `patch mask must be [${b}, ${n}], got [${patchMask.shape}]`, {
            subject: 'VLMo visual_embed',
          });
        }
        const w = tf.expandDims(tf.cast(patchMask, 'float32'), 2); // [B, g², 1]
        patches = tf.add(tf.mul(patches, tf.sub(1, w)), tf.mul(token, w));
      }
      const cls = tf.broadcastTo(this.clsToken, [b, 1, this.dims.hiddenSize]); // [B, 1, D]
      const x = tf.concat([cls, patches], 1); // [B, P, D]
      return this.posEmbed ? tf.add(x, this.posEmbed) : x;
    });
  }

  private need<T>(part: T | null): T {
    if (part === null) {
      throw new VlError('TASK_UNSUPPORTED', 'this VLMo has no mask_token / lm_head (masked image modelling)', {
        subject: 'VLMo',
        hint: 'they exist when vlmo_config.loss_names.mim > 0 (the stage-1 config, `vl train vlmo --stage 1`)',
      });
    }
    return part;
  }
}

/** `heads.ITCHead`: Linear(D, D) without bias, as `fc`. */
export class ItcHead extends Module {
  readonly fc: Linear;
  constructor(hidden: number, rng: Rng) {
    super();
    this.fc = this.registerModule('fc', new Linear(hidden, hidden, rng, { bias: false }));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return this.fc.forward(x);
  }
}

/** `heads.ITMHead`: Linear(D, 2) as `fc`; column 1 means "match". */
export class ItmHead extends Module {
  readonly fc: Linear;
  constructor(hidden: number, rng: Rng) {
    super();
    this.fc = this.registerModule('fc', new Linear(hidden, 2, rng));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return this.fc.forward(x);
  }
}

/**
 * The VQA and NLVR2 classifiers: `nn.Sequential(Linear(in, 2D), LayerNorm(2D), GELU(), Linear(2D, out))`,
 * whose state-dict keys are the Sequential's indices `0`, `1` and `3` (GELU, index 2, has no weights).
 * The LayerNorm has PyTorch's default eps 1e-5.
 */
export class VlmoClassifier extends Module {
  readonly fc1: Linear;
  readonly norm: LayerNorm;
  readonly fc2: Linear;
  constructor(inFeatures: number, hidden: number, outFeatures: number, rng: Rng) {
    super();
    this.fc1 = this.registerModule('0', new Linear(inFeatures, 2 * hidden, rng));
    this.norm = this.registerModule('1', new LayerNorm(2 * hidden, 1e-5));
    this.fc2 = this.registerModule('3', new Linear(2 * hidden, outFeatures, rng));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.fc2.forward(gelu(this.norm.forward(this.fc1.forward(x)))));
  }
}

/** tf.tidy for results that hold nulls (heads a config lacks); tidy walks them like any container. */
function tidy<T>(fn: () => T): T {
  return tf.tidy(fn as () => tf.TensorContainer) as T;
}

/** Which FFN experts a pass uses: one modality in every layer, or the fused route. */
export type VlmoMode = 'image' | 'text' | 'vl';

export interface VlmoForwardOptions {
  /** Dropout and drop-path draws in training mode. */
  rng?: Rng;
}

export interface VlmoImageOptions extends VlmoForwardOptions {
  /** Row of `token_type_embeddings` added to image tokens; 1 (NLVR2's second image uses 2). */
  tokenTypeIdx?: number;
}

export interface VlmoTextOptions extends VlmoForwardOptions {
  /**
   * A text longer than max_text_len is an error unless this is set; then each row keeps its first
   * max_text_len − 1 tokens and ends with [SEP], as a tokenizer truncating to max_text_len would.
   */
  truncate?: boolean;
}

/** One modality through every layer with its own FFN (`infer_image` / `infer_text`). */
export interface VlmoUnimodalOutput {
  /** `transformer.norm` of the last layer [B, N, D] (`image_feats` / `text_feats`). */
  feats: tf.Tensor;
  /** Row 0 of the last layer before the norm [B, D] (`raw_cls_feats`). */
  rawClsFeats: tf.Tensor;
  /** The ITC feature: `itc_*_proj` of the normed row 0, unit length [B, D]; null without ITC heads. */
  clsFeats: tf.Tensor | null;
  /**
   * The VL-FFN ITC feature: the state after layer vlffn_start − 1 re-run through the VL-FFN layers,
   * normed, `itc_vl_*_proj`, unit length [B, D]; null without those heads or when not asked for.
   */
  clsVlffnFeats: tf.Tensor | null;
}

/** Text and image through the fused route (`infer`). */
export interface VlmoFusionOutput {
  /** [B, max_text_len, D] */
  textFeats: tf.Tensor;
  /** [B, P, D] */
  imageFeats: tf.Tensor;
  /** Row 0 (the text [CLS]) after the final norm [B, D]. */
  rawClsFeats: tf.Tensor;
  /** The pooler output tanh(dense(row 0)) [B, D], which ITM, VQA and NLVR2 read. */
  clsFeats: tf.Tensor;
}

/** Token ids and their padding mask, padded or truncated to a fixed length. */
export interface FittedText {
  ids: tf.Tensor;
  mask: tf.Tensor;
}

export class Vlmo extends Module {
  readonly config: VlmoConfig;
  readonly dims: VlmoDims;
  readonly transformer: MultiwayTransformer;
  readonly relativePositionBiasTable: tf.Variable | null;
  /** Inference-time relative biases per sequence kind and text length, with the table data they came from. */
  private readonly relativeBiasCache = new Map<string, { dataId: object; bias: tf.Tensor[] }>();
  readonly text_embeddings: BertEmbeddings;
  readonly token_type_embeddings: Embedding;
  readonly pooler: BertPooler;
  readonly mlm_score: BertLMPredictionHead | null;
  readonly itm_score: ItmHead | null;
  readonly itc_text_proj: ItcHead | null;
  readonly itc_image_proj: ItcHead | null;
  readonly itc_vl_text_proj: ItcHead | null;
  readonly itc_vl_image_proj: ItcHead | null;
  readonly logitScale: tf.Variable | null;
  readonly logitVlScale: tf.Variable | null;
  /** VQA fine-tuning head over the pooled fusion output [B, D] → [B, answers]; null unless loss_names.vqa > 0. */
  readonly vqa_classifier: VlmoClassifier | null;
  /** NLVR2 head over two pooled fusion outputs concatenated [B, 2D] → [B, 2]; null unless loss_names.nlvr2 > 0. */
  readonly nlvr2_classifier: VlmoClassifier | null;
  /** What loading changed or skipped (legacy buffers of released files, truncated position rows). */
  loadNotes: string[] = [];
  private readonly indexCache = new Map<string, RelativeIndex>();

  constructor(config: VlmoConfig, rng: Rng = new Rng(0)) {
    super();
    this.config = config;
    const dims = vlmoDims(config);
    this.dims = dims;
    const d = dims.hiddenSize;
    this.transformer = this.registerModule('transformer', new MultiwayTransformer(dims, rng));
    this.relativePositionBiasTable = dims.relativePosition
      ? this.registerParameter(
          'relative_position_bias_table',
          tf.zeros([allNumRelativeDistance(dims.grid, dims.maxTextLenOfInitckpt), dims.depth * dims.numHeads]),
        )
      : null;
    const bert = config.bertConfig;
    this.text_embeddings = this.registerModule(
      'text_embeddings',
      new BertEmbeddings(
        {
          vocabSize: bert.vocabSize,
          hiddenSize: d,
          maxPositionEmbeddings: bert.maxPositionEmbeddings,
          typeVocabSize: bert.typeVocabSize,
          layerNormEps: bert.layerNormEps,
          hiddenDropoutProb: bert.hiddenDropoutProb,
          positionEmbeddingType: bert.positionEmbeddingType,
        },
        rng,
      ),
    );
    this.token_type_embeddings = this.registerModule('token_type_embeddings', new Embedding(dims.numTokenTypes, d, rng));
    this.pooler = this.registerModule('pooler', new BertPooler(d, rng));
    const { heads } = dims;
    this.mlm_score = heads.mlm
      ? this.registerModule(
          'mlm_score',
          new BertLMPredictionHead({ hiddenSize: d, vocabSize: dims.vocabSize, hiddenAct: 'gelu', layerNormEps: bert.layerNormEps }, rng),
        )
      : null;
    this.itm_score = heads.itm ? this.registerModule('itm_score', new ItmHead(d, rng)) : null;
    this.itc_text_proj = heads.itc ? this.registerModule('itc_text_proj', new ItcHead(d, rng)) : null;
    this.itc_image_proj = heads.itc ? this.registerModule('itc_image_proj', new ItcHead(d, rng)) : null;
    this.itc_vl_text_proj = heads.itcVl ? this.registerModule('itc_vl_text_proj', new ItcHead(d, rng)) : null;
    this.itc_vl_image_proj = heads.itcVl ? this.registerModule('itc_vl_image_proj', new ItcHead(d, rng)) : null;
    const initScale = Math.log(1 / 0.07);
    this.logitScale = heads.itc ? this.registerParameter('logit_scale', tf.scalar(initScale)) : null;
    this.logitVlScale = heads.itcVl ? this.registerParameter('logit_vl_scale', tf.scalar(initScale)) : null;
    // Built after the pretrained weights load in VLMo.__init__; NLVR2 also gives the second image its own
    // token type, row 2, initialised from the image row 1.
    this.vqa_classifier =
      dims.vqaLabels === null ? null : this.registerModule('vqa_classifier', new VlmoClassifier(d, d, dims.vqaLabels, rng));
    this.nlvr2_classifier = dims.nlvr2 ? this.registerModule('nlvr2_classifier', new VlmoClassifier(2 * d, d, 2, rng)) : null;
    if (dims.numTokenTypes === 3) this.copyImageTokenType();
  }

  /** token_type_embeddings row 2 ← row 1, as VLMo.__init__ does when it widens the table for NLVR2. */
  copyImageTokenType(): void {
    const w = this.token_type_embeddings.weight;
    w.assign(tf.tidy(() => tf.concat([tf.slice(w, [0, 0], [2, -1]), tf.slice(w, [1, 0], [1, -1])], 0)));
  }

  // ---------------------------------------------------------------- inputs

  /** `text_embeddings(ids)` [B, T, D]: LayerNorm(word + token_type[0] (+ positions on the absolute path)). */
  embedTextTokens(ids: tf.Tensor, options: VlmoForwardOptions = {}): tf.Tensor {
    return this.text_embeddings.forward({ inputIds: ids, rng: options.rng });
  }

  /** `transformer.visual_embed(image)[0]` [B, P, D]: [cls; patches] (+ pos_embed), no token type. */
  embedImageTokens(pixels: tf.Tensor): tf.Tensor {
    return this.transformer.visualEmbed(pixels);
  }

  /**
   * Checks text against max_text_len. Longer: an error that says to truncate, or the truncation itself
   * with `truncate`. With `pad` (fusion), shorter texts are padded with [PAD] / mask 0 up to
   * max_text_len, as VLMo's datasets pad every text (its fused layers split experts at that position).
   */
  fitText(ids: tf.Tensor, mask: tf.Tensor, options: { truncate?: boolean; pad?: boolean; mode?: string } = {}): FittedText {
    const max = this.dims.maxTextLen;
    if (ids.rank !== 2 || mask.rank !== 2 || ids.shape.join() !== mask.shape.join()) {
      throw new VlError('SHAPE_MISMATCH', `text ids and mask must both be [B, T], got [${ids.shape}] and [${mask.shape}]`, {
        subject: 'VLMo text',
      });
    }
    const [b, t] = ids.shape as [number, number];
    if (t > max && !options.truncate) {
      throw new VlError(
        'SHAPE_MISMATCH',
        `the text has ${t} tokens but max_text_len is ${max}${options.mode ? ` (${options.mode} mode)` : ''}`,
        {
          subject: 'VLMo text',
          hint: `truncate texts to ${max} tokens (tokenizer truncation, or { truncate: true }); VLMo's position tables end there`,
        },
      );
    }
    if (t > max) {
      const idData = ids.dataSync();
      const maskData = mask.dataSync();
      const outIds = new Int32Array(b * max);
      const outMask = new Int32Array(b * max);
      for (let r = 0; r < b; r++) {
        let real = 0;
        for (let j = 0; j < t; j++) real += maskData[r * t + j]! > 0 ? 1 : 0;
        for (let j = 0; j < max; j++) {
          outIds[r * max + j] = idData[r * t + j]!;
          outMask[r * max + j] = maskData[r * t + j]!;
        }
        if (real > max) outIds[r * max + max - 1] = this.config.tokens.sep;
      }
      return { ids: tf.tensor2d(outIds, [b, max], 'int32'), mask: tf.tensor2d(outMask, [b, max], 'int32') };
    }
    if (t < max && options.pad) {
      return tidy(() => ({
        ids: tf.pad(
          tf.cast(ids, 'int32'),
          [
            [0, 0],
            [0, max - t],
          ],
          this.config.tokens.pad,
        ),
        mask: tf.pad(tf.cast(mask, 'int32'), [
          [0, 0],
          [0, max - t],
        ]),
      }));
    }
    return { ids: tf.clone(ids), mask: tf.clone(mask) };
  }

  // ---------------------------------------------------------------- the stack

  private relativeIndex(kind: 'image' | 'text' | 'vl', textLength: number): RelativeIndex {
    const key = `${kind}:${textLength}`;
    let index = this.indexCache.get(key);
    if (!index) {
      const { grid, maxTextLenOfInitckpt: m } = this.dims;
      index =
        kind === 'image'
          ? imageRelativePositionIndex(grid)
          : kind === 'text'
            ? textRelativePositionIndex(textLength, grid, m)
            : fusionRelativePositionIndex(textLength, grid, m);
      this.indexCache.set(key, index);
    }
    return index;
  }

  /** The relative position indices this model uses (`relative_position_index`, `text_…`, `text_imag_…`), for inspection. */
  relativePositionIndices(): { image: RelativeIndex; text: RelativeIndex; fusion: RelativeIndex } | null {
    if (!this.dims.relativePosition) return null;
    const t = this.dims.maxTextLen;
    return { image: this.relativeIndex('image', t), text: this.relativeIndex('text', t), fusion: this.relativeIndex('vl', t) };
  }

  /** Per-layer additive attention masks: the relative bias of this sequence kind plus padded keys at −∞ (float32 min). */
  private layerMasks(kind: 'image' | 'text' | 'vl', n: number, textLength: number, keyMask: tf.Tensor | null): (tf.Tensor | null)[] {
    const pad = keyMask ? paddingMask(keyMask, FLOAT32_MIN) : null; // [B, 1, 1, N]
    if (!this.relativePositionBiasTable) return Array.from({ length: this.dims.depth }, () => pad);
    const index = this.relativeIndex(kind, textLength);
    if (index.size !== n) throw new Error(`internal: relative index of ${index.size} for ${n} tokens`);
    const bias = this.cachedRelativeBias(this.relativePositionBiasTable, kind, textLength, index);
    return bias.map((b) => (pad ? tf.add(b, pad) : b));
  }

  /**
   * The per-layer relative biases of one sequence kind. For inference they are kept across calls (the gather
   * over N² positions and the per-layer split cost about as much as the attention itself at 224 px); they are
   * rebuilt when the table's data changes (a load or an optimiser step assigns new data), and never cached
   * while training or under a gradient tape, where the gradient must reach the table.
   */
  private cachedRelativeBias(table: tf.Variable, kind: 'image' | 'text' | 'vl', textLength: number, index: RelativeIndex): tf.Tensor[] {
    const { depth, numHeads } = this.dims;
    if (this.training || recordingGradients()) return relativePositionBias(table, index, depth, numHeads);
    const key = `${kind}:${textLength}`;
    const dataId = (table as unknown as { dataId: object }).dataId;
    const hit = this.relativeBiasCache.get(key);
    if (hit && hit.dataId === dataId && hit.bias.every((b) => !b.isDisposed)) return hit.bias;
    if (hit) tf.dispose(hit.bias);
    const bias = relativePositionBias(table, index, depth, numHeads).map((b) => tf.keep(b));
    this.relativeBiasCache.set(key, { dataId, bias });
    return bias;
  }

  override dispose(): void {
    for (const { bias } of this.relativeBiasCache.values()) tf.dispose(bias);
    this.relativeBiasCache.clear();
    super.dispose();
  }

  /** The route of layer `l` for a pass: one modality, or 'vl' (text | image split below the VL-FFN layers). */
  private route(l: number, mode: VlmoMode, textLength: number, imageLength: number): Route {
    if (mode !== 'vl' || l >= this.dims.vlffnStart) return mode;
    return [
      { expert: 'text', length: textLength },
      { expert: 'image', length: imageLength },
    ];
  }

  /** Layers [from, to) on x with the given masks and mode. */
  private runLayers(
    x: tf.Tensor,
    from: number,
    to: number,
    masks: (tf.Tensor | null)[],
    mode: VlmoMode,
    lengths: [number, number],
    rng: Rng | undefined,
    keep?: (l: number, h: tf.Tensor) => void,
  ): tf.Tensor {
    let h = x;
    for (let l = from; l < to; l++) {
      h = this.transformer.blocks.at(l).forward(h, { mask: masks[l], route: this.route(l, mode, ...lengths), rng }).hidden;
      keep?.(l, h);
    }
    return h;
  }

  /** One modality through every layer, then the VL-FFN branch from the state after layer vlffn_start − 1. */
  private unimodal(
    embeds: tf.Tensor,
    kind: 'image' | 'text',
    keyMask: tf.Tensor | null,
    proj: ItcHead | null,
    projVl: ItcHead | null,
    vlffn: boolean,
    rng: Rng | undefined,
  ): VlmoUnimodalOutput {
    return tidy(() => {
      const { depth, vlffnStart } = this.dims;
      const n = embeds.shape[1] as number;
      const masks = this.layerMasks(kind, n, n, keyMask);
      // The official code reads all_hidden_states[vlffn_start − 1]: Python's index −1 (start 0) is the last layer.
      const branchFrom = vlffnStart === 0 ? depth - 1 : vlffnStart - 1;
      let branch: tf.Tensor = embeds;
      const last = this.runLayers(embeds, 0, depth, masks, kind, [0, 0], rng, (l, h) => {
        if (l === branchFrom) branch = h;
      });
      const feats = this.transformer.norm.forward(last);
      const clsFeats = proj ? l2Normalize(proj.forward(firstToken(feats)), 0) : null;
      let clsVlffnFeats: tf.Tensor | null = null;
      if (vlffn && projVl) {
        const v = this.runLayers(branch, vlffnStart, depth, masks, 'vl', [0, 0], rng);
        clsVlffnFeats = l2Normalize(projVl.forward(firstToken(this.transformer.norm.forward(v))), 0);
      }
      return { feats, rawClsFeats: firstToken(last), clsFeats, clsVlffnFeats };
    });
  }

  // ---------------------------------------------------------------- the three modes

  /**
   * Image only (`infer_image`; `vlffn: false` is `infer_image_ft`): V-FFN in every layer. pixels
   * [B, C, S, S], normalised as VLMo's transforms do (x·2 − 1).
   */
  encodeImage(pixels: tf.Tensor, options: VlmoImageOptions & { vlffn?: boolean } = {}): VlmoUnimodalOutput {
    return tidy(() => {
      const embeds = this.imageEmbeds(pixels, options.tokenTypeIdx ?? 1);
      return this.unimodal(embeds, 'image', null, this.itc_image_proj, this.itc_vl_image_proj, options.vlffn ?? true, options.rng);
    });
  }

  /**
   * Text only (`infer_text`; `vlffn: false` is `infer_text_ft`/`infer_text_mlm`): L-FFN in every layer.
   * ids, mask [B, T] with T ≤ max_text_len (padded keys are masked; a shorter text needs no padding here).
   */
  encodeText(ids: tf.Tensor, mask: tf.Tensor, options: VlmoTextOptions & { vlffn?: boolean } = {}): VlmoUnimodalOutput {
    return tidy(() => {
      const text = this.fitText(ids, mask, { truncate: options.truncate, mode: 'text' });
      const embeds = this.textEmbeds(text.ids, options.rng);
      return this.unimodal(embeds, 'text', text.mask, this.itc_text_proj, this.itc_vl_text_proj, options.vlffn ?? true, options.rng);
    });
  }

  /**
   * Fusion (`infer`): [text; image] through shared attention, text/image FFNs below vlffn_start and the
   * VL-FFN from there on. Texts are padded to exactly max_text_len (the expert split sits there);
   * longer ones are an error unless `truncate`.
   */
  fuse(pixels: tf.Tensor, ids: tf.Tensor, mask: tf.Tensor, options: VlmoImageOptions & VlmoTextOptions = {}): VlmoFusionOutput {
    return tidy(() => {
      const text = this.fitText(ids, mask, { truncate: options.truncate, pad: true, mode: 'fusion' });
      const t = this.dims.maxTextLen;
      const textEmbeds = this.textEmbeds(text.ids, options.rng);
      const imageEmbeds = this.imageEmbeds(pixels, options.tokenTypeIdx ?? 1);
      const [b, p] = imageEmbeds.shape as [number, number, number];
      if (textEmbeds.shape[0] !== b) {
        throw new VlError('SHAPE_MISMATCH', `${textEmbeds.shape[0]} texts but ${b} images`, {
          subject: 'VLMo fuse',
          hint: 'pair one text with one image',
        });
      }
      const x = tf.concat([textEmbeds, imageEmbeds], 1); // [B, T + P, D]
      const keyMask = tf.concat([tf.cast(text.mask, 'float32'), tf.ones([b, p])], 1); // [B, T + P]; image keys are never masked
      const masks = this.layerMasks('vl', t + p, t, keyMask);
      const h = this.transformer.norm.forward(this.runLayers(x, 0, this.dims.depth, masks, 'vl', [t, p], options.rng));
      const d = this.dims.hiddenSize;
      return {
        textFeats: tf.slice(h, [0, 0, 0], [b, t, d]),
        imageFeats: tf.slice(h, [0, t, 0], [b, p, d]),
        rawClsFeats: firstToken(h),
        clsFeats: this.pooler.forward(h),
      };
    });
  }

  // ---------------------------------------------------------------- heads

  /** `itm_score(cls_feats)` [B, 2]; column 1 is "match". */
  itmLogits(clsFeats: tf.Tensor): tf.Tensor {
    return this.need(this.itm_score, 'itm_score', 'itm').forward(clsFeats);
  }

  /** `mlm_score(text_feats)` [B, T, V]. */
  mlmLogits(textFeats: tf.Tensor): tf.Tensor {
    return this.need(this.mlm_score, 'mlm_score', 'mlm or textmlm').forward(textFeats);
  }

  /**
   * Stage-1 masked image modelling (BEiT's forward, on VLMo's image-only route): masked patches replaced
   * by `mask_token`, token type 1 added, V-FFN in every layer, `transformer.norm`, then `lm_head` on the
   * patch rows. pixels [B, C, S, S], patchMask [B, g²] (1 = masked) → logits [B, g², visual vocabulary].
   */
  mimLogits(pixels: tf.Tensor, patchMask: tf.Tensor, options: VlmoForwardOptions = {}): tf.Tensor {
    const head = this.need(this.transformer.lmHead, 'transformer.lm_head', 'mim');
    return tf.tidy(() => {
      const embeds = tf.add(this.transformer.visualEmbed(pixels, patchMask), this.typeRow(1)); // [B, P, D]
      const [b, p, d] = embeds.shape as [number, number, number];
      const masks = this.layerMasks('image', p, p, null);
      const h = this.transformer.norm.forward(this.runLayers(embeds, 0, this.dims.depth, masks, 'image', [0, 0], options.rng));
      return head.forward(tf.slice(h, [0, 1, 0], [b, p - 1, d])); // [B, g², V]
    });
  }

  /** `vqa_classifier(cls_feats)` [B, answers]: VQA scores over the pooled fusion output (`compute_vqa`). */
  vqaLogits(clsFeats: tf.Tensor): tf.Tensor {
    return this.need(this.vqa_classifier, 'vqa_classifier', 'vqa').forward(clsFeats);
  }

  /**
   * NLVR2 (`compute_nlvr2`): the text fused with each image, the first with token type 1 and the second
   * with token type 2, pooled outputs concatenated [B, 2D], then `nlvr2_classifier` → [B, 2].
   */
  nlvr2Logits(
    pixels1: tf.Tensor,
    pixels2: tf.Tensor,
    ids: tf.Tensor,
    mask: tf.Tensor,
    options: VlmoForwardOptions & { truncate?: boolean } = {},
  ): tf.Tensor {
    const head = this.need(this.nlvr2_classifier, 'nlvr2_classifier', 'nlvr2');
    return tf.tidy(() => {
      const a = this.fuse(pixels1, ids, mask, { ...options, tokenTypeIdx: 1, rng: options.rng?.fork('image-1') }).clsFeats;
      const b = this.fuse(pixels2, ids, mask, { ...options, tokenTypeIdx: 2, rng: options.rng?.fork('image-2') }).clsFeats;
      return head.forward(tf.concat([a, b], 1));
    });
  }

  /** exp(logit_scale) (or exp(logit_vl_scale) with `vl`): the ITC temperature's inverse, a scalar. */
  itcScale(vl = false): tf.Scalar {
    const s = vl ? this.need(this.logitVlScale, 'logit_vl_scale', 'itc') : this.need(this.logitScale, 'logit_scale', 'itc or irtr');
    return tf.tidy(() => tf.exp(s) as tf.Scalar);
  }

  /** ITC logits, rows = images: exp(scale) · image [B, D] @ textᵀ [D, B'] → [B, B']. */
  itcLogits(imageFeats: tf.Tensor, textFeats: tf.Tensor, vl = false): tf.Tensor {
    return tf.tidy(() => tf.mul(this.itcScale(vl), tf.matMul(imageFeats, textFeats, false, true)));
  }

  // ---------------------------------------------------------------- helpers

  private textEmbeds(ids: tf.Tensor, rng: Rng | undefined): tf.Tensor {
    return tf.tidy(() => {
      const e = this.text_embeddings.forward({ inputIds: ids, rng }); // [B, T, D]
      return tf.add(e, this.typeRow(0));
    });
  }

  private imageEmbeds(pixels: tf.Tensor, tokenTypeIdx: number): tf.Tensor {
    if (!Number.isInteger(tokenTypeIdx) || tokenTypeIdx < 0 || tokenTypeIdx >= this.token_type_embeddings.numEmbeddings) {
      throw new VlError(
        'INVALID_ARGUMENT',
        `image token type ${tokenTypeIdx} is outside [0, ${this.token_type_embeddings.numEmbeddings})`,
        {
          subject: 'VLMo',
        },
      );
    }
    return tf.tidy(() => tf.add(this.transformer.visualEmbed(pixels), this.typeRow(tokenTypeIdx)));
  }

  /** token_type_embeddings row i as [1, 1, D]. */
  private typeRow(i: number): tf.Tensor {
    return tf.tidy(() =>
      tf.reshape(tf.slice(this.token_type_embeddings.weight, [i, 0], [1, this.dims.hiddenSize]), [1, 1, this.dims.hiddenSize]),
    );
  }

  private need<T>(head: T | null, name: string, loss: string): T {
    if (head === null) {
      throw new VlError('TASK_UNSUPPORTED', `this VLMo has no ${name}`, {
        subject: 'VLMo',
        hint: `the head exists when vlmo_config.loss_names.${loss.split(' ')[0]} > 0 (as VLMo.__init__ builds it)`,
      });
    }
    return head;
  }
}
