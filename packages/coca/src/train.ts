// `vl train clip|coca`: contrastive (CLIP) or contrastive + captioning (CoCa) training from scratch on a
// caption dataset (JSONL + images, e.g. `vl data synth`) through core's loader and Trainer, as
// open_clip_train sets it up: AdamW (β 0.9/0.98, eps 1e-6, weight decay 0.2 off norms, biases, embeddings
// and logit_scale), cosine schedule with warmup, and `logit_scale` clamped to [0, log 100] after every
// step. CoCa's two losses come from ONE forward (CoCaLoss). Captions are WordPiece-tokenised (core's
// BertTokenizer) and laid out as open_clip's `[sot, w…, eot, 0…]` with sot/eot appended to the vocabulary.
// Writes a resumable run: `ckpt/`, `metrics.jsonl`, `model/` (config.json + model.safetensors + vocab.txt).
import { copyFile, mkdir } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  type BertTokenizer,
  DataReport,
  type ForwardResult,
  IMAGE_NORMS,
  objectiveEnabled,
  type ObjectivesConfig,
  VlError,
} from '@vl/core';
import { createDataLoader, loadBertTokenizer, readDataset, type StepRecord, Trainer } from '@vl/core/node';
import { saveOpenClip } from './checkpoint.js';
import { clipPreset, cocaPreset, type OpenClipConfig, type OpenClipPresetName } from './config.js';
import { clipLoss, cocaLoss } from './loss.js';
import { Clip, CoCa } from './model.js';
import { bertToOpenClipIds } from './text.js';

export interface OpenClipTrainOptions {
  model: 'clip' | 'coca';
  train: string;
  /** BERT vocab.txt (or a folder holding it). */
  vocab: string;
  out: string;
  preset?: OpenClipPresetName;
  imageSize?: number;
  /** Changes to the preset's model_cfg (camelCase), applied before validation. */
  modelCfg?: Record<string, unknown>;
  /** `contrastive` (both), `caption` (CoCa); weight 0 switches one off. */
  objectives?: ObjectivesConfig;
  batchSize?: number;
  epochs?: number;
  maxSteps?: number;
  lr?: number;
  warmupSteps?: number;
  weightDecay?: number;
  seed?: number;
  checkpointEvery?: number;
  resume?: boolean;
  onProgress?: (done: number, total: number, record: StepRecord) => void;
}

export interface OpenClipTrainSummary {
  steps: number;
  seconds: number;
  first: Record<string, number>;
  last: Record<string, number>;
  resumedFrom: string | null;
  logitScale: number;
  out: { model: string; metrics: string; ckpt: string };
}

/** Batches as host arrays (the Trainer may replay them). */
interface Batch {
  pixels: Float32Array;
  batchSize: number;
  imageSize: number;
  ids: Int32Array;
  length: number;
}

/** WordPiece rows ([CLS] w… [SEP] [PAD]…) → open_clip rows of the model's context length. */
export function openClipRowsFromBert(
  ids: Int32Array,
  rows: number,
  width: number,
  tok: BertTokenizer,
  vocabSize: number,
  context: number,
): number[][] {
  const special = new Set([tok.clsId, tok.sepId, tok.padId]);
  return Array.from({ length: rows }, (_, r) => {
    const words = Array.from(ids.subarray(r * width, (r + 1) * width)).filter((id) => !special.has(id));
    return bertToOpenClipIds(words, vocabSize, context);
  });
}

/** The preset sized for the tokenizer: vocabulary = WordPiece + sot + eot. */
export function trainConfig(o: OpenClipTrainOptions, tok: BertTokenizer): OpenClipConfig {
  const make = o.model === 'coca' ? cocaPreset : clipPreset;
  const base = make(o.preset ?? 'tiny', { vocabSize: tok.vocabSize + 2, imageSize: o.imageSize });
  if (!o.modelCfg) return base;
  const merged = structuredClone(base);
  for (const [k, v] of Object.entries(o.modelCfg)) {
    const cur = (merged.modelCfg as Record<string, unknown>)[k];
    (merged.modelCfg as Record<string, unknown>)[k] = cur && typeof cur === 'object' && v && typeof v === 'object' ? { ...cur, ...v } : v;
  }
  return merged;
}

function lossForward(model: Clip | CoCa, objectives: ObjectivesConfig | undefined): (b: Batch) => ForwardResult {
  const weight = (name: string, dflt: number) => (objectiveEnabled(objectives, name) ? (objectives?.[name]?.weight ?? dflt) : 0);
  const contrastiveW = weight('contrastive', 1);
  const captionW = model instanceof CoCa ? weight('caption', 2) : 0;
  if (contrastiveW === 0 && captionW === 0) {
    throw new VlError('INVALID_ARGUMENT', 'every objective is switched off', {
      subject: 'objectives',
      hint: 'keep contrastive or caption > 0',
    });
  }
  return (b) => {
    const pixels = tf.tensor4d(b.pixels, [b.batchSize, 3, b.imageSize, b.imageSize]);
    const ids = tf.tensor2d(b.ids, [b.batchSize, b.length], 'int32');
    if (model instanceof CoCa) {
      const f = model.forward(pixels, ids);
      const l = cocaLoss(
        { ...f, labels: f.labels as tf.Tensor },
        { clipLossWeight: contrastiveW, captionLossWeight: captionW, padId: model.padId },
      );
      // Unweighted per-objective values for the log.
      const losses: Record<string, tf.Scalar> = {};
      if (contrastiveW) losses.contrastive = tf.div(l.contrastive, contrastiveW) as tf.Scalar;
      if (captionW) losses.caption = tf.div(l.caption, captionW) as tf.Scalar;
      return { loss: l.total, losses, metrics: { logitScale: f.logitScale.dataSync()[0] as number } };
    }
    const f = model.forward(pixels, ids);
    const c = clipLoss(f.imageFeatures, f.textFeatures, f.logitScale);
    return {
      loss: tf.mul(c, contrastiveW) as tf.Scalar,
      losses: { contrastive: c },
      metrics: { logitScale: f.logitScale.dataSync()[0] as number },
    };
  };
}

async function countRecords(train: string): Promise<number> {
  let n = 0;
  for await (const _ of readDataset({ path: train }, new DataReport())) n++;
  return n;
}

/** Parameters open_clip_train exempts from weight decay: gains, biases, embeddings, logit_scale (ndim < 2 or named so). */
function noDecay(model: Clip | CoCa): string[] {
  return [...model.namedParameters()]
    .filter(([name, p]) => p.rank < 2 || name.includes('embedding') || name.endsWith('cls_emb') || name.endsWith('logit_scale'))
    .map(([name]) => name);
}

export async function trainOpenClip(o: OpenClipTrainOptions): Promise<OpenClipTrainSummary> {
  const tok = await loadBertTokenizer(o.vocab);
  const config = trainConfig(o, tok);
  const seed = o.seed ?? 0;
  const model = o.model === 'coca' ? new CoCa(config, { seed }) : new Clip(config, { seed });
  let trainer: Trainer<Batch> | null = null;
  try {
    const batchSize = o.batchSize ?? 32;
    const records = await countRecords(o.train);
    const stepsPerEpoch = Math.floor(records / batchSize);
    if (stepsPerEpoch < 1) throw new VlError('DATA_INVALID', `fewer than ${batchSize} training records`, { subject: o.train });
    const totalSteps = o.maxSteps ?? stepsPerEpoch * (o.epochs ?? 1);
    const lr = o.lr ?? 5e-4;
    await mkdir(o.out, { recursive: true });
    const paths = { model: join(o.out, 'model'), metrics: join(o.out, 'metrics.jsonl'), ckpt: join(o.out, 'ckpt') };
    const forward = lossForward(model, o.objectives);
    const m = config.modelCfg;
    const size = m.visionCfg.imageSize;
    const context = m.textCfg.contextLength;
    trainer = new Trainer<Batch>({
      model,
      forward: (b) => forward(b),
      stepsPerEpoch,
      optimizer: { lr, betas: [0.9, 0.98], eps: 1e-6, weightDecay: o.weightDecay ?? 0.2, noDecay: noDecay(model) },
      schedule: { kind: 'cosine', lr, minLr: 0, totalSteps, warmupSteps: o.warmupSteps ?? Math.floor(totalSteps / 10) },
      maxGradNorm: 1,
      seed,
      checkpointDir: paths.ckpt,
      checkpointEvery: o.checkpointEvery ?? 200,
      keepCheckpoints: 2,
      metricsPath: paths.metrics,
      onProgress: (p) => o.onProgress?.(p.step, totalSteps, p.record),
      afterStep: () => model.clampLogitScale(),
      extraState: () => ({ model: o.model, train: o.train }),
    });
    const epochData = async function* (epoch: number): AsyncGenerator<Batch> {
      const { batches } = createDataLoader(
        { path: o.train },
        {
          batchSize,
          tokenizer: tok,
          maxLength: 4 * context,
          padding: 'longest',
          captions: 'random',
          // open_clip's eval transform (resize + centre crop) with OpenAI's statistics; the scenes name
          // positions, so no flip or crop augmentation.
          transform: { size, mode: 'squash', interpolation: 'bicubic', norm: IMAGE_NORMS.clip },
          shuffle: 100_000,
          seed: seed * 1000 + epoch,
          dropLast: true,
        },
      );
      for await (const b of batches) {
        const ids = (await b.inputIds.data()) as Int32Array;
        const rows = openClipRowsFromBert(ids, b.keys.length, b.inputIds.shape[1], tok, m.textCfg.vocabSize, context);
        const batch: Batch = {
          pixels: (await b.pixelValues.data()) as Float32Array,
          batchSize: b.keys.length,
          imageSize: size,
          ids: Int32Array.from(rows.flat()),
          length: context,
        };
        b.dispose();
        yield batch;
      }
    };
    const t0 = Date.now();
    const fit = await trainer.fit(epochData, { maxSteps: totalSteps, resume: o.resume ?? true });
    const seconds = (Date.now() - t0) / 1000;
    await saveOpenClip(model, paths.model);
    const vocabFile = statSync(o.vocab).isDirectory() ? join(o.vocab, 'vocab.txt') : o.vocab;
    await copyFile(vocabFile, join(paths.model, 'vocab.txt'));
    const tenth = Math.max(1, Math.floor(fit.records.length / 10));
    const meanOf = (rs: StepRecord[]) => {
      const sums: Record<string, number> = {};
      for (const r of rs) for (const [k, v] of Object.entries(r.losses)) sums[k] = (sums[k] ?? 0) + v / rs.length;
      return sums;
    };
    return {
      steps: fit.steps,
      seconds,
      first: meanOf(fit.records.slice(0, tenth)),
      last: meanOf(fit.records.slice(-tenth)),
      resumedFrom: fit.resumedFrom,
      logitScale: Math.exp(model.logitScale.dataSync()[0] as number),
      out: paths,
    };
  } finally {
    trainer?.dispose();
    model.dispose();
  }
}
