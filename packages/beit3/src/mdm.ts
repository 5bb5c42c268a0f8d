// BEiT-3's pretraining, masked data modeling (Wang et al. 2022, §2.2), which microsoft/unilm never released:
// one shared Multiway backbone (`beit3.*`, the same module as every fine-tuned model) reads mixed batches
// of monomodal images (BEiT's block-wise masking of 40% of the patches; targets = a visual tokenizer's
// tokens), monomodal texts (15% of the tokens masked) and image-text pairs (50% of the text tokens and 40%
// of the patches masked), and two heads predict the originals at the masked positions only: `mlm_head`
// (text tokens, named as the captioning model's) and `mim_head` (visual tokens). The input side is the
// released one: a masked patch becomes `vision_embed.mask_token`, a masked text token the mask id.
import * as tf from '@tensorflow/tfjs-core';
import {
  BlockMaskingGenerator,
  combineLosses,
  crossEntropy,
  type ForwardResult,
  Linear,
  logitsAccuracy,
  type ObjectivesConfig,
  PathModule,
  Rng,
  truncNormal,
  type VisualTokenizer,
  VlError,
} from '@vl/core';
import { type Beit3Config, type Beit3Dims } from './config.js';
import { Beit3 } from './model.js';

/** The `mdm` section of an MDM model's config.json (snake_case there): what the heads predict. */
export interface Beit3MdmSection {
  /** Codes of the visual tokenizer the MIM head predicts. */
  visualVocabSize: number;
}

export type Beit3MdmConfig = Beit3Config & { mdm: Beit3MdmSection };

/** The three kinds of data in a mixed batch, and the objective each trains. */
export const MDM_OBJECTIVES = {
  mim: 'monomodal images: block-wise masked patches → visual tokens',
  mlm: 'monomodal texts: masked tokens → text tokens',
  mvlm: 'image-text pairs: masked text tokens and masked patches, both predicted (the two losses summed)',
} as const;
export type MdmObjective = keyof typeof MDM_OBJECTIVES;

/** The paper's masking rates (§2.2) and how a batch is shared among the three kinds. */
export interface MdmMaskingOptions {
  /** Share of patches masked, block-wise (monomodal images and pairs): 0.4. */
  imageMaskRatio?: number;
  /** Smallest block in patches; default min(16, ⌈masked / 4⌉) (BEiT: 16 of 75 at 14×14). */
  minBlockPatches?: number;
  /** Share of the words of a monomodal text masked: 0.15. */
  textMaskProb?: number;
  /** Share of the words of a pair's text masked: 0.5. */
  pairTextMaskProb?: number;
  /** Relative shares of a batch's rows per kind (default 1 : 1 : 1); a kind whose objective is off gets none. */
  mix?: Partial<Record<MdmObjective, number>>;
}

export const MDM_DEFAULTS = { imageMaskRatio: 0.4, textMaskProb: 0.15, pairTextMaskProb: 0.5 } as const;

const headInit = (s: number[], r: Rng) => truncNormal(s, r, 0.02);

/** The backbone and the two prediction heads. */
export class Beit3ForMaskedDataModeling extends PathModule {
  readonly config: Beit3MdmConfig;
  readonly dims: Beit3Dims;
  readonly beit3: Beit3;
  readonly mlmHead: Linear;
  readonly mimHead: Linear;

  constructor(config: Beit3MdmConfig, rng: Rng = new Rng(0)) {
    super();
    const v = config.mdm?.visualVocabSize;
    if (!Number.isInteger(v) || v < 2) {
      throw new VlError('CONFIG_INVALID', `mdm.visual_vocab_size must be an integer ≥ 2, got ${String(v)}`, {
        subject: 'Beit3ForMaskedDataModeling',
        hint: "set it to the visual tokenizer's vocabulary",
      });
    }
    this.config = config;
    this.beit3 = this.registerModule('beit3', new Beit3(config, rng));
    this.dims = this.beit3.dims;
    const d = this.dims.hiddenSize;
    this.mlmHead = this.registerModule('mlm_head', new Linear(d, this.dims.vocabSize, rng, { init: headInit }));
    this.mimHead = this.registerModule('mim_head', new Linear(d, v, rng, { init: headInit }));
  }
}

/** One batch on the host: B images and one caption each (BERT-style ids, 1 = token in the attention mask). */
export interface Beit3MdmBatch {
  /** [B, 3, S, S], normalised as BEIT3_IMAGE_NORM. */
  pixels: Float32Array;
  imageSize: number;
  batchSize: number;
  /** [B, L]: bos … eos then pads. */
  inputIds: Int32Array;
  /** [B, L]: 1 = token, 0 = pad. */
  attentionMask: Int32Array;
  seqLength: number;
}

/** Masked text rows: what the model reads, the originals (targets) and which positions count. */
export interface MaskedText {
  inputIds: Int32Array;
  targets: Int32Array;
  /** 1 where the loss is taken. */
  masked: Uint8Array;
}

export interface TextMaskingOptions {
  rng: Rng;
  prob: number;
  maskId: number;
  /** Random replacements are drawn from [firstRandomId, vocabSize) minus `specialIds`. */
  vocabSize: number;
  specialIds: readonly number[];
}

/**
 * Per row, the released code's rule (`_masking_on_text_tokens`) on the words between bos and eos:
 * `max(1, min(⌊m·p + ½⌋, m))` distinct word positions of the m, each → mask id (80%), a random
 * non-special id (10%) or kept (10%), all predicted. bos, eos and pads are never masked.
 */
export function maskTextRows(ids: Int32Array, attentionMask: Int32Array, seqLength: number, o: TextMaskingOptions): MaskedText {
  const inputIds = Int32Array.from(ids);
  const masked = new Uint8Array(ids.length);
  const special = new Set(o.specialIds);
  const pool: number[] = [];
  for (let id = 0; id < o.vocabSize; id++) if (!special.has(id)) pool.push(id);
  for (let r = 0; r < ids.length / seqLength; r++) {
    let n = 0;
    while (n < seqLength && attentionMask[r * seqLength + n]) n++;
    const words = Array.from({ length: Math.max(0, n - 2) }, (_, i) => r * seqLength + 1 + i); // without bos and eos
    if (!words.length) continue;
    const count = Math.max(1, Math.min(Math.floor(words.length * o.prob + 0.5), words.length));
    o.rng.shuffle(words);
    for (const k of words.slice(0, count)) {
      masked[k] = 1;
      const u = o.rng.uniform();
      if (u < 0.8) inputIds[k] = o.maskId;
      else if (u < 0.9) inputIds[k] = pool[o.rng.int(pool.length)]!;
    }
  }
  return { inputIds, targets: Int32Array.from(ids), masked };
}

/** BEiT's generator sized for a grid: round(ratio · N) patches in blocks of ≥ min(16, ⌈masked / 4⌉). */
export function mdmMaskingGenerator(grid: number, ratio: number, minBlockPatches?: number): BlockMaskingGenerator {
  const n = grid * grid;
  const masked = Math.max(1, Math.round(ratio * n));
  return new BlockMaskingGenerator({
    inputSize: [grid, grid],
    numMaskingPatches: masked,
    minNumPatches: minBlockPatches ?? Math.min(16, Math.ceil(masked / 4)),
  });
}

/** One kind's rows of a batch and their masks. */
interface KindRows {
  rows: number[];
  /** [n·N] (images, pairs). */
  patchMask?: Uint8Array;
  /** (texts, pairs). */
  text?: MaskedText;
}

/** Which rows of a batch are which kind, and every mask: all the step's random draws, on the host. */
export interface MdmPlan {
  image?: KindRows;
  text?: KindRows;
  pair?: KindRows;
}

function objectiveOn(objectives: ObjectivesConfig | undefined, name: string): boolean {
  const o = objectives?.[name];
  return (o?.enabled ?? true) && (o?.weight ?? 1) !== 0;
}

function pick<T extends Int32Array | Float32Array>(data: T, rows: readonly number[], width: number): T {
  const out = new (data.constructor as new (n: number) => T)(rows.length * width);
  rows.forEach((r, i) => out.set(data.subarray(r * width, (r + 1) * width), i * width));
  return out;
}

/** The forward of masked data modeling over mixed batches, for core's Trainer. */
export class Beit3MdmPretrainer {
  readonly masking: BlockMaskingGenerator;
  readonly options: Required<Omit<MdmMaskingOptions, 'minBlockPatches' | 'mix'>> & {
    mix: Record<MdmObjective, number>;
    objectives: ObjectivesConfig;
  };

  constructor(
    readonly model: Beit3ForMaskedDataModeling,
    readonly tokenizer: VisualTokenizer,
    options: MdmMaskingOptions & { objectives?: ObjectivesConfig } = {},
  ) {
    const dims = model.dims;
    if (tokenizer.vocabSize !== model.config.mdm.visualVocabSize) {
      throw new VlError(
        'CONFIG_INVALID',
        `the visual tokenizer has ${tokenizer.vocabSize} codes but mim_head predicts ${model.config.mdm.visualVocabSize}`,
        { subject: 'Beit3MdmPretrainer', hint: 'build the model with mdm.visualVocabSize = the tokenizer vocabulary' },
      );
    }
    const tokPatch = (tokenizer as { patchSize?: number }).patchSize;
    if (tokPatch !== undefined && tokPatch !== dims.patchSize) {
      throw new VlError('CONFIG_INVALID', `the visual tokenizer has ${tokPatch} px patches but the model ${dims.patchSize} px`, {
        subject: 'Beit3MdmPretrainer',
        hint: 'one visual token per patch: train the tokenizer with the model patch size',
      });
    }
    const mix: Record<MdmObjective, number> = { mim: 1, mlm: 1, mvlm: 1, ...options.mix };
    for (const k of Object.keys(mix) as MdmObjective[]) {
      if (!(mix[k] >= 0) || !(k in MDM_OBJECTIVES))
        throw new VlError('CONFIG_INVALID', `mdm.mix.${k} must be a share ≥ 0 of mim, mlm, mvlm`, { subject: 'mdm' });
      if (!objectiveOn(options.objectives, k)) mix[k] = 0;
    }
    if (mix.mim + mix.mlm + mix.mvlm === 0) {
      throw new VlError('CONFIG_INVALID', 'every kind of data is off (mix shares or objective weights all 0)', { subject: 'mdm' });
    }
    this.options = {
      imageMaskRatio: options.imageMaskRatio ?? MDM_DEFAULTS.imageMaskRatio,
      textMaskProb: options.textMaskProb ?? MDM_DEFAULTS.textMaskProb,
      pairTextMaskProb: options.pairTextMaskProb ?? MDM_DEFAULTS.pairTextMaskProb,
      objectives: options.objectives ?? {},
      mix,
    };
    this.masking = mdmMaskingGenerator(dims.grid, this.options.imageMaskRatio, options.minBlockPatches);
  }

  /** Rows per kind for a batch of B: shares of the mix, rounded; pairs take the remainder when on. */
  rowCounts(b: number): Record<MdmObjective, number> {
    const { mix } = this.options;
    const total = mix.mim + mix.mlm + mix.mvlm;
    const counts = { mim: Math.round((b * mix.mim) / total), mlm: Math.round((b * mix.mlm) / total), mvlm: 0 };
    if (mix.mvlm > 0) counts.mvlm = b - counts.mim - counts.mlm;
    else if (mix.mlm > 0) counts.mlm = b - counts.mim;
    else counts.mim = b;
    return counts;
  }

  /** Every random choice of a step: rows in batch order go image, text, pair (the loader has shuffled them). */
  plan(batch: Beit3MdmBatch, rng: Rng): MdmPlan {
    const counts = this.rowCounts(batch.batchSize);
    const t = this.model.config.tokens;
    const textOptions = (prob: number, label: string) => ({
      rng: rng.fork(label),
      prob,
      maskId: t.mask,
      vocabSize: this.model.dims.vocabSize,
      specialIds: [t.bos, t.pad, t.eos, t.unk, t.mask],
    });
    const plan: MdmPlan = {};
    let at = 0;
    const take = (n: number) => Array.from({ length: n }, () => at++);
    const L = batch.seqLength;
    if (counts.mim) {
      const rows = take(counts.mim);
      plan.image = { rows, patchMask: this.masking.generateBatch(rows.length, rng.fork('image-mask')) };
    }
    if (counts.mlm) {
      const rows = take(counts.mlm);
      const text = maskTextRows(
        pick(batch.inputIds, rows, L),
        pick(batch.attentionMask, rows, L),
        L,
        textOptions(this.options.textMaskProb, 'text-mask'),
      );
      plan.text = { rows, text };
    }
    if (counts.mvlm) {
      const rows = take(counts.mvlm);
      plan.pair = {
        rows,
        patchMask: this.masking.generateBatch(rows.length, rng.fork('pair-image-mask')),
        text: maskTextRows(
          pick(batch.inputIds, rows, L),
          pick(batch.attentionMask, rows, L),
          L,
          textOptions(this.options.pairTextMaskProb, 'pair-text-mask'),
        ),
      };
    }
    return plan;
  }

  /** The visual tokens of every image of the batch [B·N] (the MIM targets; no gradient). */
  visualTokens(batch: Beit3MdmBatch): Int32Array {
    const s = batch.imageSize;
    return tf.tidy(() => this.tokenizer.tokenize(tf.tensor4d(batch.pixels, [batch.batchSize, 3, s, s])).dataSync() as Int32Array);
  }

  forward(batch: Beit3MdmBatch, rng: Rng): ForwardResult {
    return this.losses(batch, this.plan(batch, rng), this.visualTokens(batch), rng.fork('drop-path'));
  }

  /** The losses of a planned batch; `visualTokens` [B·N] are the targets (only masked patches are read). */
  losses(batch: Beit3MdmBatch, plan: MdmPlan, visualTokens: Int32Array, rng: Rng): ForwardResult {
    const model = this.model;
    const { numVisionTokens: nv } = model.dims;
    const np = nv - 1;
    const s = batch.imageSize;
    const L = batch.seqLength;
    const per = 3 * s * s;
    return tf.tidy(() => {
      const parts: Partial<Record<MdmObjective, tf.Scalar>> = {};
      const metrics: Record<string, number> = {};
      const pixelsOf = (rows: number[]) => tf.tensor4d(pick(batch.pixels, rows, per), [rows.length, 3, s, s]);
      const paddingOf = (rows: number[]) => {
        const am = pick(batch.attentionMask, rows, L);
        return tf.tensor2d(
          am.map((v) => 1 - v),
          [rows.length, L],
          'int32',
        );
      };
      /** CE at masked positions: rows `offset + i` of each sample's [len, D] output, targets where masked. */
      const maskedLoss = (
        out: tf.Tensor,
        head: Linear,
        mask: Uint8Array,
        targets: ArrayLike<number>,
        len: number,
        offset: number,
        name: string,
      ) => {
        const [n, total, d] = out.shape as [number, number, number];
        const index: number[] = [];
        const labels: number[] = [];
        for (let r = 0; r < n; r++) {
          for (let i = 0; i < len; i++) {
            if (!mask[r * len + i]) continue;
            index.push(r * total + offset + i);
            labels.push(targets[r * len + i]!);
          }
        }
        if (!index.length) return null;
        const logits = head.forward(tf.gather(tf.reshape(out, [n * total, d]), tf.tensor1d(index, 'int32'))); // [M, V]
        metrics[`${name}Accuracy`] = logitsAccuracy(logits, labels);
        return crossEntropy(logits, labels) as tf.Scalar;
      };
      const tokensOf = (rows: number[]) => pick(visualTokens, rows, np);
      if (plan.image) {
        const { rows, patchMask } = plan.image;
        const out = model.beit3.forward({
          pixels: pixelsOf(rows),
          visionMaskedPosition: tf.tensor2d(patchMask!, [rows.length, np], 'int32'),
          rng: rng.fork('image'),
        }).encoderOut; // [n, Nv, D], image only (all A)
        const loss = maskedLoss(out, model.mimHead, patchMask!, tokensOf(rows), np, 1, 'mim');
        if (loss) parts.mim = loss;
      }
      if (plan.text) {
        const { rows, text } = plan.text;
        const out = model.beit3.forward({
          textTokens: tf.tensor2d(text!.inputIds, [rows.length, L], 'int32'),
          textPaddingPosition: paddingOf(rows),
          rng: rng.fork('text'),
        }).encoderOut; // [n, L, D], text only (all B)
        const loss = maskedLoss(out, model.mlmHead, text!.masked, text!.targets, L, 0, 'mlm');
        if (loss) parts.mlm = loss;
      }
      if (plan.pair) {
        const { rows, patchMask, text } = plan.pair;
        const out = model.beit3.forward({
          pixels: pixelsOf(rows),
          visionMaskedPosition: tf.tensor2d(patchMask!, [rows.length, np], 'int32'),
          textTokens: tf.tensor2d(text!.inputIds, [rows.length, L], 'int32'),
          textPaddingPosition: paddingOf(rows),
          rng: rng.fork('pair'),
        }).encoderOut; // [n, Nv + L, D]: image (A) then text (B), joint attention
        const t = maskedLoss(out, model.mlmHead, text!.masked, text!.targets, L, nv, 'mvlmText');
        const v = maskedLoss(out, model.mimHead, patchMask!, tokensOf(rows), np, 1, 'mvlmImage');
        const both = [t, v].filter((x): x is tf.Scalar => x !== null);
        if (both.length) parts.mvlm = both.length === 2 ? (tf.add(both[0]!, both[1]!) as tf.Scalar) : both[0]!;
      }
      return combineLosses(parts, this.options.objectives, metrics) as unknown as tf.TensorContainer;
    }) as unknown as ForwardResult;
  }
}
