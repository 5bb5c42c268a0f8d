// BEiT-3 (Wang et al. 2022), microsoft/unilm `beit3/` on torchscale v0.2.0, composed from @vl/core: the
// backbone `BEiT3` (torchscale/model/BEiT3.py — text and vision embeddings, the Multiway `Encoder` with
// Sub-LN layers whose every part has an A (vision) and a B (language) expert, joint attention over the
// concatenated sequence) and the five fine-tuned models of `modeling_finetune.py`: retrieval, captioning,
// VQA, image classification and NLVR2.
//
// Parameter names are the official module tree's, so a released state dict loads key for key:
//   beit3.text_embed.weight [V, D], beit3.vision_embed.proj.{weight [D, C, P, P], bias}, beit3.vision_embed.{cls,mask}_token [1, 1, D],
//   beit3.encoder.embed_positions.A.weight [Nv + 2, D], beit3.encoder.embed_positions.B.weight [max_source_positions, D],
//   beit3.encoder.layers.N.* (BEIT3_LAYER_PRESET: self_attn.{q,k,v,out}_proj.{A,B}, self_attn.inner_attn_ln.{A,B},
//   self_attn_layer_norm.{A,B}, ffn.{A,B}.{fc1,ffn_layernorm,fc2}, final_layer_norm.{A,B}),
//   beit3.encoder.layer_norm.{A,B}.* (normalize_output only), then the task heads (see each class).
import * as tf from '@tensorflow/tfjs-core';
import {
  dropPathSchedule,
  Embedding,
  expertPath,
  FLOAT32_MIN,
  gelu,
  type KVCache,
  l2Normalize,
  LayerNorm,
  Linear,
  Module,
  type ModuleList,
  Multiway,
  MultiwayLayer,
  type MultiwayLayerConfig,
  normal,
  PatchEmbedding,
  PathModule,
  prefixCausalAllowed,
  Rng,
  type Route,
  TORCHSCALE_EXPERTS,
  TORCHSCALE_LAYER_NAMES,
  truncNormal,
  VlError,
} from '@vl/core';
import { type Beit3Config, type Beit3Dims, beit3Dims, type Beit3Task } from './config.js';

/** torchscale `EncoderLayer` with multiway=True, subln=True: separate q/k/v with biases, Sub-LN, eps 1e-5, A/B experts everywhere. */
export const BEIT3_LAYER_PRESET = {
  qkvLayout: 'separate',
  qkvBias: 'full',
  subLn: true,
  layerNormEps: 1e-5,
  names: TORCHSCALE_LAYER_NAMES,
  experts: TORCHSCALE_EXPERTS,
  multiwayParts: ['norm1', 'attention', 'norm2', 'mlp'],
} as const satisfies Partial<MultiwayLayerConfig>;

/** The expert names routes use: torchscale's A is the vision expert, B the language one. */
export const VISION = 'image';
export const LANGUAGE = 'text';

/** Added to a blocked score of `attn_mask` (`masked_fill(attn_mask.bool(), -1e8)` in EncoderLayer). */
export const ATTN_MASK_VALUE = -1e8;
/** Fairseq's learned positions start at row 2 (rows 0 and 1 of both tables are never read). */
export const POSITION_OFFSET = 2;

const TEXT_EXPERT = TORCHSCALE_EXPERTS.experts.find((e) => e.name === LANGUAGE)!;
const VISION_EXPERT = TORCHSCALE_EXPERTS.experts.find((e) => e.name === VISION)!;

/** tf.tidy for results that hold nulls or numbers. */
function tidy<T>(fn: () => T): T {
  return tf.tidy(fn as () => tf.TensorContainer) as T;
}

/** torchscale `VisionEmbedding` with a mask token and a prepended class token. */
export class VisionEmbedding extends PathModule {
  readonly proj: PatchEmbedding;
  readonly clsToken: tf.Variable;
  readonly maskToken: tf.Variable;

  constructor(
    readonly dims: Beit3Dims,
    rng: Rng,
  ) {
    super();
    const d = dims.hiddenSize;
    this.proj = this.registerModule('proj', new PatchEmbedding(dims.inChans, dims.patchSize, d, rng));
    this.clsToken = this.registerParameter('cls_token', tf.zeros([1, 1, d]));
    this.maskToken = this.registerParameter('mask_token', tf.zeros([1, 1, d]));
  }

  /**
   * pixels [B, C, S, S] → [B, Nv, D]: patches in row-major order, those marked in `maskedPosition`
   * [B, Nv − 1] (1 = masked) replaced by `mask_token` (x·(1 − w) + mask·w), then the class token first.
   */
  forward(pixels: tf.Tensor, maskedPosition?: tf.Tensor | null): tf.Tensor {
    const { imageSize, inChans, numVisionTokens } = this.dims;
    const [, c, h, w] = pixels.shape;
    if (pixels.rank !== 4 || c !== inChans || h !== imageSize || w !== imageSize) {
      throw new VlError('SHAPE_MISMATCH', `images must be [B, ${inChans}, ${imageSize}, ${imageSize}], got [${pixels.shape}]`, {
        subject: 'BEiT-3 vision_embed',
        hint: `resize images to ${imageSize}×${imageSize}, or load the checkpoint with a config of that image size (the position table is interpolated on load, as the official loader does)`,
      });
    }
    const b = pixels.shape[0] as number;
    if (maskedPosition && (maskedPosition.rank !== 2 || maskedPosition.shape[0] !== b || maskedPosition.shape[1] !== numVisionTokens - 1)) {
      throw new VlError('SHAPE_MISMATCH', `vision_masked_position must be [${b}, ${numVisionTokens - 1}], got [${maskedPosition.shape}]`, {
        subject: 'BEiT-3 vision_embed',
      });
    }
    return tf.tidy(() => {
      const d = this.dims.hiddenSize;
      let x = this.proj.forward(pixels).patches; // [B, N, D]
      if (maskedPosition) {
        const w = tf.expandDims(tf.cast(maskedPosition, 'float32'), -1); // [B, N, 1]
        x = tf.add(tf.mul(x, tf.sub(1, w)), tf.mul(this.maskToken, w));
      }
      return tf.concat([tf.broadcastTo(this.clsToken, [b, 1, d]), x], 1); // [B, Nv, D]
    });
  }
}

/** One call of the backbone, with `BEiT3.forward`'s arguments. */
export interface Beit3Inputs {
  /** `textual_tokens` [B, T] int. */
  textTokens?: tf.Tensor | null;
  /** `visual_tokens`: pixels [B, C, S, S], normalised as the task's transform does. */
  pixels?: tf.Tensor | null;
  /** `text_padding_position` [B, T]: 1 at pads (the opposite of a HF attention mask). */
  textPaddingPosition?: tf.Tensor | null;
  /** `attn_mask` [Lq, Lk]: 1 where a query may not see a key (−1e8 is added there). */
  attnMask?: tf.Tensor | null;
  /** `vision_masked_position` [B, Nv − 1]: 1 where a patch becomes `mask_token`. */
  visionMaskedPosition?: tf.Tensor | null;
  /** Rows of `embed_positions.B` for the text tokens (incremental decoding); default 2, 3, …. */
  positions?: readonly number[] | null;
  /** Incremental decoding: each layer's self-attention keys/values (the official `incremental_state`). */
  cache?: KVCache | null;
  rng?: Rng;
  /** Also return the input of every layer and the last layer's output (fairseq's `encoder_states`). */
  outputHiddenStates?: boolean;
}

export interface Beit3Output {
  /** [B, L, D]: the last layer, after `encoder.layer_norm` when the config has it. */
  encoderOut: tf.Tensor;
  /** −1: image only (all A); 0: text only (all B); Nv: image then text. */
  multiwaySplitPosition: number;
  /** [embeddings (layer 0's input), layer 0's output, …] when asked for. */
  hiddenStates?: tf.Tensor[];
}

/** torchscale `BEiT3`: the shared backbone of every task (`beit3.*`). */
export class Beit3 extends PathModule {
  readonly dims: Beit3Dims;
  readonly textEmbed: Embedding;
  readonly visionEmbed: VisionEmbedding;
  readonly visionPositions: Embedding;
  readonly textPositions: Embedding;
  readonly layers: ModuleList<MultiwayLayer>;
  readonly layerNorm: Multiway<LayerNorm> | null;

  constructor(config: Beit3Config, rng: Rng) {
    super();
    const dims = beit3Dims(config);
    this.dims = dims;
    const d = dims.hiddenSize;
    // TextEmbedding: normal(0, D^-0.5); PositionalEmbedding: nn.Embedding's normal(0, 1).
    this.textEmbed = this.placeModule('text_embed', new Embedding(dims.vocabSize, d, rng, { init: (s, r) => normal(s, r, d ** -0.5) }));
    this.visionEmbed = this.placeModule('vision_embed', new VisionEmbedding(dims, rng));
    const positions = (rows: number) => new Embedding(rows, d, rng, { init: (s, r) => normal(s, r, 1) });
    this.visionPositions = this.placeModule(
      expertPath('encoder.embed_positions', TORCHSCALE_EXPERTS, VISION_EXPERT),
      positions(dims.numVisionTokens + POSITION_OFFSET),
    );
    this.textPositions = this.placeModule(
      expertPath('encoder.embed_positions', TORCHSCALE_EXPERTS, TEXT_EXPERT),
      positions(dims.maxSourcePositions),
    );
    this.layers = this.placeModuleList(
      'encoder.layers',
      dropPathSchedule(dims.dropPathRate, dims.depth).map(
        (dropPath) =>
          new MultiwayLayer(
            {
              ...BEIT3_LAYER_PRESET,
              hiddenSize: d,
              numHeads: dims.numHeads,
              intermediateSize: dims.ffnSize,
              layerNormEps: dims.layerNormEps,
              attentionDropout: dims.attentionDropout,
              dropPath,
            },
            rng,
          ),
      ),
    );
    this.layerNorm = dims.normalizeOutput
      ? Multiway.place(this, 'encoder.layer_norm', TORCHSCALE_EXPERTS, () => new LayerNorm(d, dims.layerNormEps))
      : null;
  }

  /** The route of a sequence with this split position (torchscale's `multiway_split_position`). */
  static route(split: number, length: number): Route {
    if (split === -1) return VISION;
    if (split === 0) return LANGUAGE;
    return [
      { expert: VISION, length: split },
      { expert: LANGUAGE, length: length - split },
    ];
  }

  /** Rows `positions` (default 2 … n + 1) of a position table, [1, n, D]. */
  private positionRows(table: Embedding, n: number, positions?: readonly number[] | null): tf.Tensor {
    const rows = positions ?? Array.from({ length: n }, (_, i) => i + POSITION_OFFSET);
    const limit = table.numEmbeddings;
    const bad = rows.find((r) => !Number.isInteger(r) || r < 0 || r >= limit);
    if (rows.length !== n || bad !== undefined) {
      const text = table === this.textPositions;
      throw new VlError(
        'SHAPE_MISMATCH',
        text
          ? `a text of ${n} tokens needs position rows up to ${Math.max(...rows)}, but embed_positions.B has ${limit} (at most ${limit - POSITION_OFFSET} tokens)`
          : `${n} vision tokens need ${n + POSITION_OFFSET} position rows, embed_positions.A has ${limit}`,
        { subject: 'BEiT-3 embed_positions', hint: text ? `truncate texts to ${limit - POSITION_OFFSET} tokens` : undefined },
      );
    }
    return tf.tidy(() => tf.expandDims(table.forward(tf.tensor1d(rows as number[], 'int32')), 0));
  }

  /** `BEiT3.forward` + `Encoder.forward`. Every tensor returned is new; the inputs are not disposed. */
  forward(inputs: Beit3Inputs): Beit3Output {
    const { textTokens, pixels, cache } = inputs;
    if (!textTokens && !pixels) {
      throw new VlError('INVALID_ARGUMENT', 'BEiT-3 needs text tokens, an image, or both', { subject: 'Beit3.forward' });
    }
    const textPad = inputs.textPaddingPosition ?? null;
    if (textTokens) {
      if (textTokens.rank !== 2)
        throw new VlError('SHAPE_MISMATCH', `text tokens must be [B, T], got [${textTokens.shape}]`, { subject: 'Beit3.forward' });
      if (textPad && textPad.shape.join() !== textTokens.shape.join()) {
        throw new VlError('SHAPE_MISMATCH', `padding mask [${textPad.shape}] does not match the text [${textTokens.shape}]`, {
          subject: 'Beit3.forward',
          hint: 'text_padding_position is [B, T] with 1 at pads',
        });
      }
    }
    if (textTokens && pixels && textTokens.shape[0] !== pixels.shape[0]) {
      throw new VlError('SHAPE_MISMATCH', `${textTokens.shape[0]} texts but ${pixels.shape[0]} images`, { subject: 'Beit3.forward' });
    }
    return tidy(() => {
      const parts: tf.Tensor[] = [];
      let vision: tf.Tensor | null = null;
      if (pixels) {
        vision = this.visionEmbed.forward(pixels, inputs.visionMaskedPosition); // [B, Nv, D]
        parts.push(tf.add(this.scale(vision), this.positionRows(this.visionPositions, vision.shape[1] as number)));
      }
      if (textTokens) {
        const t = textTokens.shape[1] as number;
        const text = this.textEmbed.forward(textTokens); // [B, T, D]
        parts.push(tf.add(this.scale(text), this.positionRows(this.textPositions, t, inputs.positions)));
      }
      const split = !textTokens ? -1 : !vision ? 0 : (vision.shape[1] as number);
      let x = parts.length === 1 ? parts[0]! : tf.concat(parts, 1); // [B, L, D]
      const [b, l] = x.shape as [number, number, number];
      // Encoder.forward: pads are zeroed after the positions are added (x · (1 − padding_mask)).
      let keyPad: tf.Tensor | null = null; // [B, L], 1 at pads
      if (textPad) {
        const pad = tf.cast(textPad, 'float32');
        keyPad = vision ? tf.concat([tf.zeros([b, vision.shape[1] as number]), pad], 1) : pad;
        x = tf.mul(x, tf.expandDims(tf.sub(1, keyPad), -1));
      }
      const route = Beit3.route(split, l);
      // Additive mask: attn_mask's blocked entries −1e8, then padded keys (not while decoding incrementally) at the float32 minimum.
      let mask: tf.Tensor | null = null;
      if (inputs.attnMask) {
        const [q, k] = inputs.attnMask.shape as [number, number];
        mask = tf.reshape(tf.mul(tf.cast(inputs.attnMask, 'float32'), ATTN_MASK_VALUE), [1, 1, q, k]);
      }
      if (keyPad && !cache) {
        const pad = tf.reshape(tf.mul(keyPad, FLOAT32_MIN), [b, 1, 1, l]);
        mask = mask ? tf.add(mask, pad) : pad;
      }
      const hidden: tf.Tensor[] = inputs.outputHiddenStates ? [x] : [];
      let h = x;
      for (let i = 0; i < this.layers.length; i++) {
        h = this.layers.at(i).forward(h, { mask, route, cache: cache?.layer(i).self ?? null, rng: inputs.rng }).hidden;
        if (inputs.outputHiddenStates) hidden.push(h);
      }
      if (this.layerNorm) h = this.layerNorm.forward(h, route, (n, p) => n.forward(p));
      return inputs.outputHiddenStates
        ? { encoderOut: h, multiwaySplitPosition: split, hiddenStates: hidden }
        : { encoderOut: h, multiwaySplitPosition: split };
    });
  }

  private scale(x: tf.Tensor): tf.Tensor {
    return this.dims.embedScale === 1 ? x : tf.mul(x, this.dims.embedScale);
  }
}

/** Linear init of `BEiT3Wrapper._init_weights`: trunc_normal(std 0.02) in ±0.02, bias 0. */
const wrapperInit = (shape: number[], rng: Rng) => truncNormal(shape, rng, 0.02);

function headLinear(inF: number, outF: number, rng: Rng, options: { bias?: boolean; scale?: number } = {}): Linear {
  const scale = options.scale ?? 1;
  return new Linear(inF, outF, rng, {
    bias: options.bias,
    init: (s, r) => (scale === 1 ? wrapperInit(s, r) : tf.tidy(() => tf.mul(wrapperInit(s, r), scale))),
  });
}

/** `BEiT3Wrapper`: the backbone under `beit3`, and a task head. */
export abstract class Beit3Wrapper extends PathModule {
  readonly config: Beit3Config;
  readonly dims: Beit3Dims;
  readonly beit3: Beit3;
  abstract readonly task: Beit3Task;
  /** What loading changed (an interpolated position table). */
  loadNotes: string[] = [];

  constructor(config: Beit3Config, rng: Rng) {
    super();
    this.config = config;
    this.beit3 = this.registerModule('beit3', new Beit3(config, rng));
    this.dims = this.beit3.dims;
  }

  /** `get_num_layers`. */
  get numLayers(): number {
    return this.dims.depth;
  }
}

// ---------------------------------------------------------------- retrieval

export interface Beit3RetrievalImage {
  /** Image-only pass (all A), with the final norm [B, Nv, D]. */
  encoderOut: tf.Tensor;
  /** `vision_head(x[:, 0])` [B, D]. */
  headOut: tf.Tensor;
  /** F.normalize(headOut) [B, D]. */
  cls: tf.Tensor;
}

export interface Beit3RetrievalText {
  encoderOut: tf.Tensor;
  headOut: tf.Tensor;
  cls: tf.Tensor;
}

export interface Beit3ClipOutput {
  loss: tf.Scalar;
  logitsPerImage: tf.Tensor;
  logitsPerText: tf.Tensor;
}

/**
 * `BEiT3ForRetrieval`: image and text encoded in separate passes, each CLS through its head
 * (`vision_head`, `language_head`: Linear(D, D) without bias) and L2-normalised; `logit_scale` [] is
 * stored as a log (log(1/0.07) at init) and not clamped.
 */
export class Beit3ForRetrieval extends Beit3Wrapper {
  readonly task = 'retrieval' as const;
  readonly languageHead: Linear;
  readonly visionHead: Linear;
  readonly logitScale: tf.Variable;

  constructor(config: Beit3Config, rng: Rng = new Rng(0)) {
    super(config, rng);
    const d = this.dims.hiddenSize;
    this.languageHead = this.registerModule('language_head', headLinear(d, d, rng, { bias: false }));
    this.visionHead = this.registerModule('vision_head', headLinear(d, d, rng, { bias: false }));
    this.logitScale = this.registerParameter('logit_scale', tf.scalar(Math.log(1 / 0.07)));
  }

  encodeImage(pixels: tf.Tensor, options: { rng?: Rng } = {}): Beit3RetrievalImage {
    return tidy(() => {
      const { encoderOut } = this.beit3.forward({ pixels, rng: options.rng });
      const headOut = this.visionHead.forward(firstRow(encoderOut));
      return { encoderOut, headOut, cls: l2Normalize(headOut) };
    });
  }

  /** `padding` [B, T]: 1 at pads. */
  encodeText(ids: tf.Tensor, padding: tf.Tensor | null, options: { rng?: Rng } = {}): Beit3RetrievalText {
    return tidy(() => {
      const { encoderOut } = this.beit3.forward({ textTokens: ids, textPaddingPosition: padding, rng: options.rng });
      const headOut = this.languageHead.forward(firstRow(encoderOut));
      return { encoderOut, headOut, cls: l2Normalize(headOut) };
    });
  }

  /** Evaluation scores (`RetrievalHandler`): image × text [B_i, B_t], no scale. */
  similarity(visionCls: tf.Tensor, languageCls: tf.Tensor): tf.Tensor {
    return tf.matMul(visionCls, languageCls, false, true);
  }

  /** `utils.ClipLoss` (world size 1) with exp(logit_scale). */
  clipLoss(visionCls: tf.Tensor, languageCls: tf.Tensor): Beit3ClipOutput {
    return tidy(() => {
      const scale = tf.exp(this.logitScale);
      const logitsPerImage = tf.mul(scale, tf.matMul(visionCls, languageCls, false, true));
      const logitsPerText = tf.mul(scale, tf.matMul(languageCls, visionCls, false, true));
      const loss = tf.div(tf.add(diagonalCrossEntropy(logitsPerImage), diagonalCrossEntropy(logitsPerText)), 2) as tf.Scalar;
      return { loss, logitsPerImage, logitsPerText };
    });
  }

  /** The training forward: both passes and the CLIP loss. */
  forward(
    pixels: tf.Tensor,
    ids: tf.Tensor,
    padding: tf.Tensor | null,
    options: { rng?: Rng } = {},
  ): Beit3ClipOutput & { visionCls: tf.Tensor; languageCls: tf.Tensor } {
    return tidy(() => {
      const visionCls = this.encodeImage(pixels, options).cls;
      const languageCls = this.encodeText(ids, padding, options).cls;
      return { ...this.clipLoss(visionCls, languageCls), visionCls, languageCls };
    });
  }
}

// ---------------------------------------------------------------- captioning

export interface Beit3CaptioningInputs {
  pixels: tf.Tensor;
  /** [B, T]: the caption with some positions replaced (the mask id, a random id or unchanged). */
  textIds: tf.Tensor;
  /** [B, T]: 1 at pads. */
  paddingMask?: tf.Tensor | null;
  /** [B, T]: 1 at the positions to predict; absent: logits at every text position [B, T, V]. */
  languageMaskedPos?: tf.Tensor | null;
  rng?: Rng;
}

export interface Beit3CaptioningOutput {
  /** `mlm_head` at the masked positions in row-major order [N, V] (or every position [B, T, V]). */
  logits: tf.Tensor;
  /** The joint pass [B, Nv + T, D]. */
  encoderOut: tf.Tensor;
  multiwaySplitPosition: number;
}

/**
 * `BEiT3ForCaptioning`: a joint pass whose text attends to the image and causally to itself (`uni_mask`),
 * and `mlm_head` (Linear(D, V) with bias, not tied to `text_embed`) predicting the token at each masked
 * position. Generation is the official beam search (generation.ts).
 */
export class Beit3ForCaptioning extends Beit3Wrapper {
  readonly task = 'captioning' as const;
  readonly mlmHead: Linear;

  constructor(config: Beit3Config, rng: Rng = new Rng(0)) {
    super(config, rng);
    this.mlmHead = this.registerModule('mlm_head', headLinear(this.dims.hiddenSize, this.dims.vocabSize, rng));
  }

  /** `uni_mask` for Nv image tokens and `textLength` text tokens [Nv + T, Nv + T]: 1 = blocked. */
  uniMask(textLength: number): tf.Tensor2D {
    return tf.tidy(() => tf.sub(1, prefixCausalAllowed(this.dims.numVisionTokens, textLength)) as tf.Tensor2D);
  }

  /** The teacher-forced forward (`forward(image, text_ids, padding_mask, language_masked_pos)`). */
  forward(inputs: Beit3CaptioningInputs): Beit3CaptioningOutput {
    const { pixels, textIds } = inputs;
    return tidy(() => {
      const t = textIds.shape[1] as number;
      const out = this.beit3.forward({
        pixels,
        textTokens: textIds,
        textPaddingPosition: inputs.paddingMask,
        attnMask: this.uniMask(t),
        rng: inputs.rng,
      });
      const [b, l, d] = out.encoderOut.shape as [number, number, number];
      const nv = out.multiwaySplitPosition;
      const text = tf.slice(out.encoderOut, [0, nv, 0], [b, l - nv, d]); // [B, T, D]
      let feats = text;
      if (inputs.languageMaskedPos) {
        const pos = inputs.languageMaskedPos.dataSync();
        const rows: number[] = [];
        for (let i = 0; i < pos.length; i++) if (pos[i]) rows.push(i);
        feats = tf.gather(tf.reshape(text, [b * t, d]), tf.tensor1d(rows, 'int32')); // [N, D]
      }
      return { logits: this.mlmHead.forward(feats), encoderOut: out.encoderOut, multiwaySplitPosition: nv };
    });
  }

  /**
   * One decoding step of `CaptioningHandler.eval_batch` with the official incremental state: the first
   * step (`pixels` given) runs the image and `ids` [R, 2] = [bos, mask]; later steps run only `ids`
   * [R, 2] = [last word, mask] at text rows `curLen`, `curLen + 1` against `cache`. Returns the
   * logits at the mask (index 1) [R, V].
   */
  decodeStep(ids: tf.Tensor, curLen: number, cache: KVCache, pixels: tf.Tensor | null): tf.Tensor {
    return tidy(() => {
      const nv = this.dims.numVisionTokens;
      const n = ids.shape[1] as number;
      const full = tf.sub(1, prefixCausalAllowed(nv, curLen)); // uni_mask for image + curLen text tokens
      const out = pixels
        ? this.beit3.forward({ pixels, textTokens: ids, attnMask: full, cache })
        : this.beit3.forward({
            textTokens: ids,
            attnMask: tf.slice(full, [nv + curLen - n, 0], [n, nv + curLen]),
            positions: Array.from({ length: n }, (_, i) => curLen + i),
            cache,
          });
      const [r, l, d] = out.encoderOut.shape as [number, number, number];
      const last = tf.reshape(tf.slice(out.encoderOut, [0, l - n + 1, 0], [r, 1, d]), [r, d]); // the mask, text index 1 of the step
      return this.mlmHead.forward(last);
    });
  }
}

// ---------------------------------------------------------------- VQA

/** `Pooler`: tanh(dense(norm(x[:, 0]))). */
export class Pooler extends Module {
  readonly norm: LayerNorm;
  readonly dense: Linear;
  constructor(dim: number, rng: Rng) {
    super();
    this.norm = this.registerModule('norm', new LayerNorm(dim, 1e-5));
    this.dense = this.registerModule('dense', headLinear(dim, dim, rng));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.tanh(this.dense.forward(this.norm.forward(firstRow(x)))));
  }
}

export interface Beit3ClassifierOutput {
  logits: tf.Tensor;
  encoderOut: tf.Tensor;
  multiwaySplitPosition: number;
}

/**
 * `BEiT3ForVisualQuestionAnswering`: a joint pass without the final norm, the pooler on the **vision**
 * CLS (row 0), then `head` = Linear(D, 2D) `head.0`, LayerNorm `head.1`, GELU, Linear(2D, C) `head.3`.
 */
export class Beit3ForVisualQuestionAnswering extends Beit3Wrapper {
  readonly task = 'vqa' as const;
  readonly pooler: Pooler;
  readonly headIn: Linear;
  readonly headNorm: LayerNorm;
  readonly headOut: Linear;

  constructor(config: Beit3Config, rng: Rng = new Rng(0)) {
    super(config, rng);
    const d = this.dims.hiddenSize;
    const c = this.dims.numClasses ?? 0;
    this.pooler = this.registerModule('pooler', new Pooler(d, rng));
    this.headIn = this.placeModule('head.0', headLinear(d, 2 * d, rng));
    this.headNorm = this.placeModule('head.1', new LayerNorm(2 * d, 1e-5));
    this.headOut = this.placeModule('head.3', headLinear(2 * d, c, rng));
  }

  /** `padding` [B, T]: 1 at pads. */
  forward(
    pixels: tf.Tensor,
    question: tf.Tensor,
    padding: tf.Tensor | null,
    options: { rng?: Rng } = {},
  ): Beit3ClassifierOutput & { pooled: tf.Tensor } {
    return tidy(() => {
      const out = this.beit3.forward({ pixels, textTokens: question, textPaddingPosition: padding, rng: options.rng });
      const pooled = this.pooler.forward(out.encoderOut);
      const logits = this.headOut.forward(gelu(this.headNorm.forward(this.headIn.forward(pooled))));
      return { logits, pooled, encoderOut: out.encoderOut, multiwaySplitPosition: out.multiwaySplitPosition };
    });
  }
}

// ---------------------------------------------------------------- image classification

/**
 * `BEiT3ForImageClassification`: image only without the final norm, `fc_norm` of the mean over the
 * patch tokens (CLS excluded), then `head` (weights ×0.001 at init).
 */
export class Beit3ForImageClassification extends Beit3Wrapper {
  readonly task = 'classification' as const;
  readonly fcNorm: LayerNorm;
  readonly head: Linear;

  constructor(config: Beit3Config, rng: Rng = new Rng(0)) {
    super(config, rng);
    const d = this.dims.hiddenSize;
    this.fcNorm = this.registerModule('fc_norm', new LayerNorm(d, 1e-5));
    this.head = this.registerModule('head', headLinear(d, this.dims.numClasses ?? 0, rng, { scale: 0.001 }));
  }

  forward(pixels: tf.Tensor, options: { rng?: Rng } = {}): Beit3ClassifierOutput & { fcNormOut: tf.Tensor } {
    return tidy(() => {
      const out = this.beit3.forward({ pixels, rng: options.rng });
      const [b, l, d] = out.encoderOut.shape as [number, number, number];
      const patches = tf.slice(out.encoderOut, [0, 1, 0], [b, l - 1, d]);
      const fcNormOut = this.fcNorm.forward(tf.mean(patches, 1));
      return {
        logits: this.head.forward(fcNormOut),
        fcNormOut,
        encoderOut: out.encoderOut,
        multiwaySplitPosition: out.multiwaySplitPosition,
      };
    });
  }
}

// ---------------------------------------------------------------- NLVR2

/** `TwoLayerMLP`: LN(in) → Linear(in, hidden) → LN(hidden) → GELU → Linear(hidden, out). */
export class TwoLayerMlp extends Module {
  readonly norm1: LayerNorm;
  readonly dense1: Linear;
  readonly norm2: LayerNorm;
  readonly dense2: Linear;
  constructor(inF: number, hidden: number, out: number, rng: Rng) {
    super();
    this.norm1 = this.registerModule('norm1', new LayerNorm(inF, 1e-5));
    this.dense1 = this.registerModule('dense1', headLinear(inF, hidden, rng, { scale: 0.001 }));
    this.norm2 = this.registerModule('norm2', new LayerNorm(hidden, 1e-5));
    this.dense2 = this.registerModule('dense2', headLinear(hidden, out, rng, { scale: 0.001 }));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.dense2.forward(gelu(this.norm2.forward(this.dense1.forward(this.norm1.forward(x))))));
  }
}

/**
 * `BEiT3ForVisualReasoning`: one joint pass on [image_a; image_b] with the text twice; per row the vision
 * CLS and the text bos, the two halves side by side [vis_a, txt_a, vis_b, txt_b] [B, 4D], then `head`.
 */
export class Beit3ForVisualReasoning extends Beit3Wrapper {
  readonly task = 'nlvr2' as const;
  readonly head: TwoLayerMlp;

  constructor(config: Beit3Config, rng: Rng = new Rng(0)) {
    super(config, rng);
    const d = this.dims.hiddenSize;
    this.head = this.registerModule('head', new TwoLayerMlp(4 * d, 2 * d, this.dims.numClasses ?? 2, rng));
  }

  forward(
    imageA: tf.Tensor,
    imageB: tf.Tensor,
    text: tf.Tensor,
    padding: tf.Tensor | null,
    options: { rng?: Rng } = {},
  ): Beit3ClassifierOutput & { headInput: tf.Tensor } {
    return tidy(() => {
      const b = text.shape[0] as number;
      const out = this.beit3.forward({
        pixels: tf.concat([imageA, imageB], 0),
        textTokens: tf.concat([text, text], 0),
        textPaddingPosition: padding ? tf.concat([padding, padding], 0) : null,
        rng: options.rng,
      });
      const x = out.encoderOut;
      const [rows, , d] = x.shape as [number, number, number];
      const split = out.multiwaySplitPosition;
      const visionCls = tf.reshape(tf.slice(x, [0, 0, 0], [rows, 1, d]), [rows, d]);
      const languageCls = tf.reshape(tf.slice(x, [0, split, 0], [rows, 1, d]), [rows, d]);
      const clsRep = tf.concat([visionCls, languageCls], -1); // [2B, 2D]
      const [a, c] = tf.split(clsRep, [b, b], 0);
      const headInput = tf.concat([a!, c!], -1); // [B, 4D]
      return { logits: this.head.forward(headInput), headInput, encoderOut: x, multiwaySplitPosition: split };
    });
  }
}

// ---------------------------------------------------------------- helpers

export type Beit3Model =
  Beit3ForRetrieval | Beit3ForCaptioning | Beit3ForVisualQuestionAnswering | Beit3ForImageClassification | Beit3ForVisualReasoning;

/** The task class the config's factory names, freshly initialised. */
export function buildBeit3(config: Beit3Config, rng: Rng = new Rng(0)): Beit3Model {
  switch (beit3Dims(config).task) {
    case 'retrieval':
      return new Beit3ForRetrieval(config, rng);
    case 'captioning':
      return new Beit3ForCaptioning(config, rng);
    case 'vqa':
      return new Beit3ForVisualQuestionAnswering(config, rng);
    case 'classification':
      return new Beit3ForImageClassification(config, rng);
    case 'nlvr2':
      return new Beit3ForVisualReasoning(config, rng);
  }
}

/** x[:, 0] [B, D]. */
function firstRow(x: tf.Tensor): tf.Tensor {
  const [b, , d] = x.shape as [number, number, number];
  return tf.reshape(tf.slice(x, [0, 0, 0], [b, 1, d]), [b, d]);
}

/** F.cross_entropy(logits, arange(B)) (mean). */
function diagonalCrossEntropy(logits: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const b = logits.shape[0] as number;
    const logp = tf.logSoftmax(logits, -1);
    const eye = tf.oneHot(tf.range(0, b, 1, 'int32'), logits.shape[1] as number);
    return tf.neg(tf.div(tf.sum(tf.mul(logp, eye)), b));
  });
}
