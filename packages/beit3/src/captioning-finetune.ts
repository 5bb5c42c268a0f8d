// Captioning fine-tuning of Beit3ForCaptioning on a caption dataset, as microsoft/unilm `beit3/` trains it
// (`CaptioningDataset._masking_on_text_tokens` + `CaptioningHandler.train_batch` + `utils.BertCaptioningLoss`):
// random text positions of each caption are masked (80% the mask id, 10% kept, 10% a random id), the model
// reads image + masked caption under the captioning `uni_mask` (image rows see the image, text rows the image
// and the text up to themselves) and predicts the original tokens at the masked positions with the
// label-smoothed KL loss. From scratch or from an MDM checkpoint's backbone (and its `mlm_head`, which the
// official loader would copy by name), then the official beam search on a test split, scored by CIDEr-D and
// BLEU-4. This is what the MDM ablation (docs/beit3.md) runs for its captioning arms.
import { statSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { type BertTokenizer, ciderD, corpusBleu, DataReport, Rng, VlError } from '@vl/core';
import {
  createDataLoader,
  type ImageTextExample,
  loadBertTokenizer,
  loadExamples,
  readDataset,
  type StepRecord,
  Trainer,
} from '@vl/core/node';
import { saveBeit3 } from './checkpoint.js';
import { BEIT3_IMAGE_NORM, beit3Preset, type Beit3PresetName } from './config.js';
import { generateCaptions } from './generation.js';
import type { MaskedText } from './mdm.js';
import { loadBeit3Backbone } from './mdm-train.js';
import { Beit3ForCaptioning } from './model.js';
import { captioningTrainBatch } from './objectives.js';
import { prefixRecords } from './retrieval-finetune.js';

/** The documented COCO fine-tuning run (`get_started_for_captioning.md`): `--captioning_mask_prob 0.7`. */
export const BEIT3_CAPTIONING_MASK_PROB = 0.7;

export interface CaptionMaskingOptions {
  rng: Rng;
  /** `mask_prob`: the share of a caption's n tokens (bos and eos counted) that is masked. */
  prob: number;
  maskId: number;
  vocabSize: number;
  /**
   * Ids a random replacement never takes. The official draw is `randint(3, vocab − 1)`, i.e. every id but
   * XLM-R's bos 0, pad 1 and eos 2; with another tokenizer, pass its bos, pad and eos.
   */
  excludeIds: readonly number[];
}

/**
 * `CaptioningDataset._masking_on_text_tokens` per row: with n the row's tokens (bos and eos included, pads
 * not), `max(1, min(⌊n·p + ½⌋, n − 1))` distinct positions drawn uniformly from [1, n − 1] (so bos never, eos
 * possibly: the model learns where a caption ends), each → mask id (80%), kept (10%) or a random id (10%).
 * `masked` marks them all (`language_masked_pos`); `targets` are the original ids.
 */
export function maskCaptionRows(ids: Int32Array, attentionMask: Int32Array, seqLength: number, o: CaptionMaskingOptions): MaskedText {
  if (!(o.prob > 0 && o.prob <= 1)) {
    throw new VlError('INVALID_ARGUMENT', `captioning mask probability must be in (0, 1], got ${o.prob}`, { subject: 'maskCaptionRows' });
  }
  const inputIds = Int32Array.from(ids);
  const masked = new Uint8Array(ids.length);
  const excluded = new Set(o.excludeIds);
  const pool: number[] = [];
  for (let id = 0; id < o.vocabSize; id++) if (!excluded.has(id)) pool.push(id);
  for (let r = 0; r < ids.length / seqLength; r++) {
    let n = 0;
    while (n < seqLength && attentionMask[r * seqLength + n]) n++;
    if (n < 2) continue; // nothing but bos: no position in [1, n − 1]
    const count = Math.max(1, Math.min(Math.floor(n * o.prob + 0.5), n - 1));
    // Drawing distinct positions one at a time, uniformly among those left, is a uniform random subset: a shuffle.
    const positions = Array.from({ length: n - 1 }, (_, i) => r * seqLength + 1 + i);
    o.rng.shuffle(positions);
    for (const k of positions.slice(0, count)) {
      masked[k] = 1;
      const u = o.rng.uniform();
      if (u < 0.8) inputIds[k] = o.maskId;
      else if (u >= 0.9) inputIds[k] = pool[o.rng.int(pool.length)]!;
    }
  }
  return { inputIds, targets: Int32Array.from(ids), masked };
}

export interface Beit3CaptioningFinetuneOptions {
  train: string;
  test: string;
  vocab: string;
  out: string;
  /** An MDM output folder whose backbone (and `mlm_head`) starts the model; absent: from scratch (same seed). */
  init?: string;
  preset?: Beit3PresetName;
  imageSize?: number;
  /** Caption tokens in training and the generation length (`num_max_bpe_tokens`); default 24 on tiny, else 32. */
  textLength?: number;
  /** Use only the first N training records (a small labelled set). */
  maxTrainRecords?: number;
  batchSize?: number;
  /** Optimizer steps (default: `epochs` passes over the training records). */
  maxSteps?: number;
  epochs?: number;
  lr?: number;
  weightDecay?: number;
  seed?: number;
  /** `--captioning_mask_prob` (default 0.7, the documented COCO run). */
  maskProb?: number;
  /** `--label_smoothing`, `--drop_worst_ratio`, `--drop_worst_after` (defaults 0.1, 0.2, 12000). */
  labelSmoothing?: number;
  dropWorstRatio?: number;
  dropWorstAfter?: number;
  /** Beam search on the test images (default 3 beams, length penalty 0.6, as the captioning config). */
  numBeams?: number;
  lengthPenalty?: number;
  /** Caption only the first N test images. */
  maxTestRecords?: number;
  /** Trainer checkpoints every N steps under `out/ckpt` (default: at the end). */
  checkpointEvery?: number;
  /** Continue from the newest checkpoint in `out/ckpt` (default false: a fine-tuning run starts over). */
  resume?: boolean;
  onProgress?: (done: number, total: number, record: StepRecord) => void;
}

export interface Beit3CaptioningFinetuneResult {
  /** The step count reached (a resumed run counts the steps before it too). */
  steps: number;
  /** The checkpoint a `resume` run continued from, or null. */
  resumedFrom: string | null;
  seconds: number;
  /** Mean loss / masked-token accuracy over the first and the last 10% of the steps this run took (NaN if none). */
  firstLoss: number;
  lastLoss: number;
  firstAcc: number;
  lastAcc: number;
  /** What `init` contributed: tensors loaded, or 0 from scratch. */
  initTensors: number;
  images: number;
  cider: number;
  bleu4: number;
  /** Each image captioned with a reference caption of another image. */
  chance: { cider: number; bleu4: number };
  /** The captions scored against the next image's references: what they score without describing their image. */
  mismatched: { cider: number; bleu4: number };
  evalSeconds: number;
  captions: { image: string; caption: string; references: string[] }[];
}

interface Batch {
  pixels: Float32Array;
  ids: Int32Array;
  attention: Int32Array;
  b: number;
  l: number;
}

const transform = (size: number) => ({ size, mode: 'squash' as const, interpolation: 'bicubic' as const, norm: BEIT3_IMAGE_NORM });

async function* trainBatches(path: string, tok: BertTokenizer, o: { size: number; len: number; batchSize: number; seed: number }) {
  const { batches } = createDataLoader(
    { path },
    {
      batchSize: o.batchSize,
      tokenizer: tok,
      maxLength: o.len,
      padding: 'max_length',
      captions: 'random',
      transform: transform(o.size),
      shuffle: 100_000,
      seed: o.seed,
      dropLast: true,
    },
  );
  for await (const b of batches) {
    const out: Batch = {
      pixels: (await b.pixelValues.data()) as Float32Array,
      ids: (await b.inputIds.data()) as Int32Array,
      attention: (await b.attentionMask.data()) as Int32Array,
      b: b.keys.length,
      l: b.inputIds.shape[1],
    };
    b.dispose();
    yield out;
  }
}

/** The first `max` (default all) records of a caption JSONL with every reference caption, as the model reads the images. */
export async function readBeit3CaptionExamples(path: string, size: number, max?: number): Promise<ImageTextExample[]> {
  const report = new DataReport();
  const out: ImageTextExample[] = [];
  for await (const ex of loadExamples(readDataset({ format: 'jsonl', path }, report), { transform: transform(size), report })) {
    if (max !== undefined && out.length >= max) break;
    out.push(ex);
  }
  if (out.length === 0) throw new VlError('DATA_INVALID', 'no images to caption', { subject: path });
  const noRefs = out.find((e) => e.captions.length === 0);
  if (noRefs) throw new VlError('DATA_INVALID', `record ${noRefs.key} has no reference captions`, { subject: path });
  return out;
}

/**
 * Captions for every example (official beam search), CIDEr-D and BLEU-4 against its references, chance, and
 * the same captions against the next image's references (`mismatched`: a cyclic shift, so CIDEr-D's document
 * frequencies are unchanged). Captions that describe their own image score above `mismatched`; captions
 * that are only plausible text score about the same.
 */
export async function evaluateBeit3Captioning(
  model: Beit3ForCaptioning,
  tok: BertTokenizer,
  examples: readonly ImageTextExample[],
  o: { numBeams?: number; maxLength?: number; lengthPenalty?: number; batchSize?: number; chanceSeed?: number } = {},
): Promise<Pick<Beit3CaptioningFinetuneResult, 'images' | 'cider' | 'bleu4' | 'chance' | 'mismatched' | 'captions'>> {
  const size = model.dims.imageSize;
  const bs = o.batchSize ?? 40;
  const hyps: string[] = [];
  for (let s = 0; s < examples.length; s += bs) {
    const chunk = examples.slice(s, s + bs);
    const buf = new Float32Array(chunk.length * 3 * size * size);
    chunk.forEach((e, i) => buf.set(e.pixels, i * 3 * size * size));
    const pixels = tf.tensor4d(buf, [chunk.length, 3, size, size]);
    try {
      const g = await generateCaptions(model, pixels, { numBeams: o.numBeams, maxLength: o.maxLength, lengthPenalty: o.lengthPenalty });
      hyps.push(...g.tokens.map((t) => tok.decode(t)));
    } finally {
      pixels.dispose();
    }
  }
  const refs = examples.map((e) => e.captions);
  const rng = new Rng(o.chanceSeed ?? 0);
  const n = examples.length;
  const chanceHyps = examples.map((_, i) => {
    const j = n > 1 ? (i + 1 + rng.int(n - 1)) % n : i;
    const other = refs[j]!;
    return other[rng.int(other.length)]!;
  });
  const shifted = refs.map((_, i) => refs[(i + 1) % n]!);
  return {
    images: n,
    cider: ciderD(hyps, refs).score,
    bleu4: corpusBleu(hyps, refs).bleu[3]!,
    chance: { cider: ciderD(chanceHyps, refs).score, bleu4: corpusBleu(chanceHyps, refs).bleu[3]! },
    mismatched: { cider: ciderD(hyps, shifted).score, bleu4: corpusBleu(hyps, shifted).bleu[3]! },
    captions: examples.map((e, i) => ({ image: e.key, caption: hyps[i]!, references: e.captions })),
  };
}

export async function finetuneBeit3Captioning(o: Beit3CaptioningFinetuneOptions): Promise<Beit3CaptioningFinetuneResult> {
  const tok = await loadBertTokenizer(o.vocab);
  const seed = o.seed ?? 0;
  const preset = o.preset ?? 'tiny';
  const base = beit3Preset(preset, { task: 'captioning', vocabSize: tok.vocabSize, imageSize: o.imageSize });
  const tokens = { bos: tok.clsId, pad: tok.padId, eos: tok.sepId, unk: tok.unkId, mask: tok.maskId };
  const len = o.textLength ?? (preset === 'tiny' ? 24 : 32);
  // The saved model generates as it was trained: num_max_bpe_tokens is the caption length.
  const captionGeneration = { numMaxBpeTokens: len, numBeams: o.numBeams ?? 3, lengthPenalty: o.lengthPenalty ?? 0.6 };
  const model = new Beit3ForCaptioning({ ...base, tokens, captionGeneration }, new Rng(seed).fork('finetune-init'));
  let trainer: Trainer<Batch> | null = null;
  try {
    const initTensors = o.init ? (await loadBeit3Backbone(model, o.init, { heads: ['mlm_head.'] })).loaded : 0;
    model.train();
    const size = model.dims.imageSize;
    if (len + 2 > model.dims.maxSourcePositions) {
      throw new VlError(
        'CONFIG_INVALID',
        `text length ${len} needs ${len + 2} text positions, the model has ${model.dims.maxSourcePositions}`,
        {
          subject: 'beit3 captioning',
        },
      );
    }
    const batchSize = o.batchSize ?? 32;
    const train = await prefixRecords(o.train, o.maxTrainRecords);
    let n = 0;
    for await (const _ of readDataset({ path: train }, new DataReport())) n++;
    const stepsPerEpoch = Math.floor(n / batchSize);
    if (stepsPerEpoch < 1) throw new VlError('DATA_INVALID', `fewer than ${batchSize} training records`, { subject: train });
    const maxSteps = o.maxSteps ?? stepsPerEpoch * (o.epochs ?? 1);
    const lr = o.lr ?? 1e-3;
    const maskOptions = {
      prob: o.maskProb ?? BEIT3_CAPTIONING_MASK_PROB,
      maskId: tokens.mask,
      vocabSize: model.dims.vocabSize,
      excludeIds: [tokens.bos, tokens.pad, tokens.eos],
    };
    const lossOptions = {
      labelSmoothing: o.labelSmoothing ?? 0.1,
      dropWorstRatio: o.dropWorstRatio ?? 0.2,
      dropWorstAfter: o.dropWorstAfter ?? 12000,
    };
    await mkdir(o.out, { recursive: true });
    trainer = new Trainer<Batch>({
      model,
      forward: (b, ctx) => {
        const m = maskCaptionRows(b.ids, b.attention, b.l, { ...maskOptions, rng: ctx.rng.fork('caption-mask') });
        return tf.tidy(() => {
          const r = captioningTrainBatch(
            model,
            {
              pixels: tf.tensor4d(b.pixels, [b.b, 3, size, size]),
              textIds: tf.tensor2d(m.inputIds, [b.b, b.l], 'int32'),
              paddingMask: tf.tensor2d(
                b.attention.map((v) => 1 - v),
                [b.b, b.l],
                'int32',
              ),
              languageMaskedPos: tf.tensor2d(Int32Array.from(m.masked), [b.b, b.l], 'int32'),
              languageTokens: m.targets,
              rng: ctx.rng.fork('drop-path'),
            },
            { ...lossOptions, step: ctx.step },
          );
          return { loss: r.loss, losses: { caption: tf.clone(r.loss) as tf.Scalar }, metrics: { acc: r.acc } };
        });
      },
      stepsPerEpoch,
      // run_beit3_finetuning.py: AdamW, betas (0.9, 0.999), eps 1e-8, weight decay 0.05, cosine after warm-up.
      optimizer: { lr, betas: [0.9, 0.999], eps: 1e-8, weightDecay: o.weightDecay ?? 0.05 },
      schedule: { kind: 'cosine', lr, minLr: 0, totalSteps: maxSteps, warmupSteps: Math.floor(maxSteps / 10) },
      seed,
      checkpointDir: join(o.out, 'ckpt'),
      checkpointEvery: o.checkpointEvery ?? maxSteps,
      keepCheckpoints: 1,
      metricsPath: join(o.out, 'metrics.jsonl'),
      onProgress: (p) => o.onProgress?.(p.step, maxSteps, p.record),
    });
    const t0 = Date.now();
    const fit = await trainer.fit((epoch) => trainBatches(train, tok, { size, len, batchSize, seed: seed * 1000 + epoch }), {
      maxSteps,
      resume: o.resume ?? false,
    });
    const seconds = (Date.now() - t0) / 1000;
    const recs: StepRecord[] = fit.records;
    const tenth = Math.max(1, Math.floor(recs.length / 10));
    // NaN when a resumed run had no steps left to take.
    const mean = (rs: StepRecord[], f: (r: StepRecord) => number) => (rs.length ? rs.reduce((s, r) => s + f(r), 0) / rs.length : NaN);
    const loss = (r: StepRecord) => r.loss;
    const acc = (r: StepRecord) => r.metrics.acc ?? 0;
    await saveBeit3(model, join(o.out, 'model'));
    await copyFile(statSync(o.vocab).isDirectory() ? join(o.vocab, 'vocab.txt') : o.vocab, join(o.out, 'model', 'vocab.txt'));
    const t1 = Date.now();
    const examples = await readBeit3CaptionExamples(o.test, size, o.maxTestRecords);
    const evaluated = await evaluateBeit3Captioning(model, tok, examples, {
      numBeams: captionGeneration.numBeams,
      maxLength: len,
      lengthPenalty: captionGeneration.lengthPenalty,
    });
    return {
      steps: fit.steps,
      resumedFrom: fit.resumedFrom,
      seconds,
      firstLoss: mean(recs.slice(0, tenth), loss),
      lastLoss: mean(recs.slice(-tenth), loss),
      firstAcc: mean(recs.slice(0, tenth), acc),
      lastAcc: mean(recs.slice(-tenth), acc),
      initTensors,
      ...evaluated,
      evalSeconds: (Date.now() - t1) / 1000,
    };
  } finally {
    trainer?.dispose();
    model.dispose();
  }
}
