// `vl train vlmo --task vqa|nlvr2`: fine-tunes VLMo's VQA or NLVR2 head (with the whole model, as the
// official fine-tuning does) on a JSONL set (`vl data synth --task vqa|nlvr2`), through core's Trainer.
// The model starts from `--init DIR` (a pretraining stage's output: the config's loss names become just
// the task's, so the pretraining heads are dropped and the task head is fresh, as VLMo.__init__ builds it
// after loading) or from a preset; `--init-std` re-draws a fresh model's weights (as the ablations'
// initStd, without which the tiny preset does not leave its plateau). Writes `ckpt/`, `metrics.jsonl` and
// `model/` (config.json, model.safetensors, the tokenizer and, for VQA, answers.json), which
// `vl eval vlmo --task vqa|nlvr2` reads.
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { basename, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { combineLosses, type ForwardResult, redrawWeights, Rng, VlError } from '@vl/core';
import { loadBertTokenizer, type StepRecord, Trainer } from '@vl/core/node';
import { VLMO_REDRAW_KEEP } from './ablation.js';
import { saveVlmo } from './checkpoint.js';
import { parseVlmoConfig, type VlmoConfig, type VlmoPresetName } from './config.js';
import { vlmoEncodeTexts } from './evaluate.js';
import { vlmoNlvr2Loss, vlmoVqaLoss } from './finetune.js';
import { Vlmo } from './model.js';
import {
  loadImagePlanes,
  readAnswerList,
  readNlvr2File,
  readVqaFile,
  type VlmoFinetuneTask,
  type VlmoNlvr2Example,
  type VlmoVqaExample,
  vqaTargets,
} from './task-data.js';
import { loadVlmoInit, vlmoBaseConfig, type VlmoInitReport } from './train.js';

export interface VlmoFinetuneOptions {
  task: VlmoFinetuneTask;
  /** Training JSONL (VQA questions or NLVR2 statements), images relative to it. */
  train: string;
  vocab: string;
  out: string;
  /** A pretrained VLMo folder (e.g. `vl train vlmo --stage 3`'s --out). */
  init?: string;
  /** Without `init`: the preset (default tiny) and its changes, as VlmoTrainOptions. */
  preset?: VlmoPresetName;
  imageSize?: number;
  maxTextLen?: number;
  architecture?: { vlmoConfig?: Record<string, unknown>; transformerKwargs?: Record<string, unknown> };
  /** Without `init`: re-draw every weight at this std (layer-scale gammas, temperatures and relative tables keep VLMo's init). */
  initStd?: number;
  /** VQA: the answer list (default: answers.json next to the training file). */
  answers?: string;
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

export interface VlmoFinetuneSummary {
  task: VlmoFinetuneTask;
  examples: number;
  steps: number;
  seconds: number;
  /** Mean loss (and accuracy) over the first and the last 10% of steps. */
  first: Record<string, number>;
  last: Record<string, number>;
  init: VlmoInitReport | null;
  resumedFrom: string | null;
  /** VQA: answers of the training set outside the answer list (no target). */
  unknownAnswers: number;
  out: { model: string; metrics: string; ckpt: string };
}

/** One batch: example indices into the loaded set. */
interface TaskBatch {
  rows: number[];
}

/** The task's config: `base`'s architecture with only the task's loss name (hence only its head). */
export function vlmoTaskConfig(base: VlmoConfig, task: VlmoFinetuneTask, answers?: number): VlmoConfig {
  const names = Object.fromEntries(Object.keys(base.vlmoConfig.lossNames).map((k) => [k, 0]));
  const section: Record<string, unknown> = { ...base.vlmoConfig, lossNames: { ...names, mim: 0, [task]: 1 } };
  if (task === 'vqa') section.vqav2LabelSize = answers;
  const { bertConfig: _derived, ...rest } = base;
  return parseVlmoConfig({ ...rest, vlmoConfig: section }, `${task} config`);
}

export interface VlmoTaskSet {
  task: VlmoFinetuneTask;
  size: number;
  /** Distinct images [K, 3, S, S]. */
  pixels: Float32Array;
  /** Per example: the image plane (VQA: one; NLVR2: left, right). */
  imageOf: number[][];
  texts: { inputIds: Int32Array; attentionMask: Int32Array; seqLength: number };
  /** VQA soft scores [N, A]; NLVR2 labels. */
  vqaTargets?: Float32Array;
  labels?: boolean[];
  answers?: string[];
  unknownAnswers: number;
  count: number;
}

/** Reads and prepares a VQA or NLVR2 file for `model` (texts padded to its max_text_len, images at its size). */
export async function loadVlmoTaskSet(
  model: Vlmo,
  tok: Awaited<ReturnType<typeof loadBertTokenizer>>,
  task: VlmoFinetuneTask,
  file: string,
  answers?: string[],
): Promise<VlmoTaskSet> {
  const size = model.dims.imageSize;
  if (task === 'vqa') {
    const ex: VlmoVqaExample[] = readVqaFile(file);
    const list = answers as string[];
    const { index, pixels } = await loadImagePlanes(
      ex.map((e) => e.image),
      size,
    );
    const { targets, unknown } = vqaTargets(ex, list);
    return {
      task,
      size,
      pixels,
      imageOf: ex.map((e) => [index.get(e.image)!]),
      texts: vlmoEncodeTexts(
        model,
        tok,
        ex.map((e) => e.question),
      ),
      vqaTargets: targets,
      answers: list,
      unknownAnswers: unknown,
      count: ex.length,
    };
  }
  const ex: VlmoNlvr2Example[] = readNlvr2File(file);
  const { index, pixels } = await loadImagePlanes(
    ex.flatMap((e) => e.images),
    size,
  );
  return {
    task,
    size,
    pixels,
    imageOf: ex.map((e) => e.images.map((p) => index.get(p)!)),
    texts: vlmoEncodeTexts(
      model,
      tok,
      ex.map((e) => e.sentence),
    ),
    labels: ex.map((e) => e.label),
    unknownAnswers: 0,
    count: ex.length,
  };
}

/** Tensors of rows `rows` of the set: pixels per image slot, ids, mask. */
export function vlmoTaskInputs(set: VlmoTaskSet, rows: readonly number[]): { pixels: tf.Tensor4D[]; ids: tf.Tensor2D; mask: tf.Tensor2D } {
  const plane = 3 * set.size * set.size;
  const slots = set.task === 'vqa' ? 1 : 2;
  const pixels = Array.from({ length: slots }, (_, s) => {
    const buf = new Float32Array(rows.length * plane);
    rows.forEach((r, k) => {
      const img = set.imageOf[r]![s]!;
      buf.set(set.pixels.subarray(img * plane, (img + 1) * plane), k * plane);
    });
    return tf.tensor4d(buf, [rows.length, 3, set.size, set.size]);
  });
  const L = set.texts.seqLength;
  const ids = new Int32Array(rows.length * L);
  const mask = new Int32Array(rows.length * L);
  rows.forEach((r, k) => {
    ids.set(set.texts.inputIds.subarray(r * L, (r + 1) * L), k * L);
    mask.set(set.texts.attentionMask.subarray(r * L, (r + 1) * L), k * L);
  });
  return { pixels, ids: tf.tensor2d(ids, [rows.length, L], 'int32'), mask: tf.tensor2d(mask, [rows.length, L], 'int32') };
}

/** The task's logits for rows of the set: VQA [B, A] over the pooled fusion output, NLVR2 [B, 2]. */
export function vlmoTaskLogits(model: Vlmo, set: VlmoTaskSet, rows: readonly number[], rng?: Rng): tf.Tensor2D {
  return tf.tidy(() => {
    const { pixels, ids, mask } = vlmoTaskInputs(set, rows);
    if (set.task === 'vqa') return model.vqaLogits(model.fuse(pixels[0]!, ids, mask, { rng }).clsFeats) as tf.Tensor2D;
    return model.nlvr2Logits(pixels[0]!, pixels[1]!, ids, mask, { rng }) as tf.Tensor2D;
  });
}

/** The task loss of a batch (and its accuracy, for the log). */
export function vlmoTaskForward(model: Vlmo, set: VlmoTaskSet, rows: readonly number[], rng?: Rng): ForwardResult {
  return tf.tidy(() => {
    const logits = vlmoTaskLogits(model, set, rows, rng);
    let loss: tf.Scalar;
    let accuracy: number;
    if (set.task === 'vqa') {
      const a = set.answers!.length;
      const t = new Float32Array(rows.length * a);
      rows.forEach((r, k) => t.set(set.vqaTargets!.subarray(r * a, (r + 1) * a), k * a));
      loss = vlmoVqaLoss(logits, tf.tensor2d(t, [rows.length, a]));
      const best = tf.argMax(logits, 1).dataSync();
      accuracy = rows.reduce((s, _r, k) => s + t[k * a + best[k]!]!, 0) / rows.length;
    } else {
      const labels = rows.map((r) => (set.labels![r] ? 1 : 0));
      loss = vlmoNlvr2Loss(logits, labels);
      const best = tf.argMax(logits, 1).dataSync();
      accuracy = labels.reduce((s: number, l, k) => s + (best[k] === l ? 1 : 0), 0) / rows.length;
    }
    // combineLosses returns the total as its own tensor (the Trainer keeps and frees `losses` apart from it).
    return combineLosses({ [set.task]: loss }, undefined, { [`${set.task}Accuracy`]: accuracy }) as unknown as tf.TensorContainer;
  }) as unknown as ForwardResult;
}

export async function finetuneVlmo(o: VlmoFinetuneOptions): Promise<VlmoFinetuneSummary> {
  if (o.task !== 'vqa' && o.task !== 'nlvr2') throw new VlError('INVALID_ARGUMENT', `task must be vqa or nlvr2, got ${String(o.task)}`);
  if (o.init && (o.architecture || o.initStd !== undefined)) {
    throw new VlError('INVALID_ARGUMENT', 'architecture overrides and --init-std apply to a fresh model, not to one started from --init', {
      subject: o.init,
    });
  }
  const tok = await loadBertTokenizer(o.vocab);
  const answers = o.task === 'vqa' ? readAnswerList(o.answers ?? o.train, o.answers !== undefined) : undefined;
  const seed = o.seed ?? 0;
  const config = vlmoTaskConfig(
    {
      ...(await vlmoBaseConfig(
        o,
        tok.vocabSize,
        'fine-tune with the vocabulary the model was pretrained with (a task set written by `vl data synth --task` extends the caption one)',
      )),
      tokens: { pad: tok.padId, unk: tok.unkId, cls: tok.clsId, sep: tok.sepId, mask: tok.maskId },
    },
    o.task,
    answers?.length,
  );
  const model = new Vlmo(config, new Rng(seed).fork('init'));
  let trainer: Trainer<TaskBatch> | null = null;
  try {
    if (o.initStd !== undefined) redrawWeights(model, o.initStd, new Rng(seed).fork('redraw'), { keep: VLMO_REDRAW_KEEP });
    const init = o.init ? await loadVlmoInit(model, o.init) : null;
    const set = await loadVlmoTaskSet(model, tok, o.task, o.train, answers);
    const batchSize = o.batchSize ?? 32;
    const stepsPerEpoch = Math.floor(set.count / batchSize);
    if (stepsPerEpoch < 1) throw new VlError('DATA_INVALID', `fewer than ${batchSize} training records`, { subject: o.train });
    const totalSteps = o.maxSteps ?? stepsPerEpoch * (o.epochs ?? 1);
    const lr = o.lr ?? 1e-3;
    await mkdir(o.out, { recursive: true });
    const paths = { model: join(o.out, 'model'), metrics: join(o.out, 'metrics.jsonl'), ckpt: join(o.out, 'ckpt') };
    trainer = new Trainer<TaskBatch>({
      model,
      forward: (batch, ctx) => vlmoTaskForward(model, set, batch.rows, ctx.rng),
      stepsPerEpoch,
      optimizer: { lr, betas: [0.9, 0.98], eps: 1e-8, weightDecay: o.weightDecay ?? 0.01 },
      schedule: { kind: 'cosine', lr, minLr: 0, totalSteps, warmupSteps: o.warmupSteps ?? Math.floor(totalSteps / 10) },
      seed,
      checkpointDir: paths.ckpt,
      checkpointEvery: o.checkpointEvery ?? 200,
      keepCheckpoints: 2,
      metricsPath: paths.metrics,
      onProgress: (p) => o.onProgress?.(p.step, totalSteps, p.record),
      extraState: () => ({ task: o.task, init: init?.from ?? null, train: o.train }),
    });
    const epochData = function* (epoch: number): Generator<TaskBatch> {
      const order = new Rng(seed).fork(`order-${epoch}`).shuffle(Array.from({ length: set.count }, (_, i) => i));
      for (let s = 0; s + batchSize <= order.length; s += batchSize) yield { rows: order.slice(s, s + batchSize) };
    };
    const t0 = Date.now();
    const fit = await trainer.fit(epochData, { maxSteps: totalSteps, resume: o.resume ?? true });
    const seconds = (Date.now() - t0) / 1000;
    await saveVlmo(model, paths.model);
    const vocabFile = statSync(o.vocab).isDirectory() ? join(o.vocab, 'vocab.txt') : o.vocab;
    await copyFile(vocabFile, join(paths.model, basename(vocabFile).endsWith('.json') ? 'tokenizer.json' : 'vocab.txt'));
    if (answers) await writeFile(join(paths.model, 'answers.json'), `${JSON.stringify(answers)}\n`);
    const records = fit.records;
    const tenth = Math.max(1, Math.floor(records.length / 10));
    const meanOf = (rs: StepRecord[]) => {
      const sums: Record<string, number> = {};
      for (const r of rs) {
        sums.loss = (sums.loss ?? 0) + r.loss / rs.length;
        for (const [k, v] of Object.entries(r.metrics ?? {})) if (k.endsWith('Accuracy')) sums[k] = (sums[k] ?? 0) + v / rs.length;
      }
      return sums;
    };
    return {
      task: o.task,
      examples: set.count,
      steps: fit.steps,
      seconds,
      first: meanOf(records.slice(0, tenth)),
      last: meanOf(records.slice(-tenth)),
      init,
      resumedFrom: fit.resumedFrom,
      unknownAnswers: set.unknownAnswers,
      out: paths,
    };
  } finally {
    trainer?.dispose();
    model.dispose();
  }
}
