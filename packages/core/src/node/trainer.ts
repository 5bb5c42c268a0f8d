// Trainer: the pretraining loop shared by every model — forward with gradients, NaN/Inf guard,
// accumulation, clipping, AdamW with a schedule, JSONL metrics, progress callback, and atomic
// checkpoints (model incl. momentum twins and queues, optimizer, RNG, step) that resume exactly.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import { distillAlpha } from '../distill/targets.js';
import type { Module } from '../nn/module.js';
import type { ForwardResult } from '../objectives/losses.js';
import { Rng } from '../runtime/rng.js';
import {
  CHECKPOINT_FORMAT,
  latestCheckpoint,
  loadCheckpoint,
  pruneCheckpoints,
  saveCheckpoint,
  type TrainerState,
} from './train-checkpoint.js';
import { clipByGlobalNorm, globalNorm, GradientAccumulator } from '../train/gradients.js';
import { JsonlMetricsLog, type StepRecord } from './metrics-log.js';
import { AdamW, type AdamWOptions } from '../train/optimizer.js';
import { makeSchedule, type LrSchedule, type ScheduleConfig } from '../train/schedule.js';

/** What the forward gets for each micro-batch. */
export interface TrainStepContext {
  /** 0-based index of the optimizer step being computed (= steps completed so far). */
  step: number;
  /** Index of this micro-batch within the accumulation group. */
  microStep: number;
  epoch: number;
  /** This micro-batch's generator (masking, negatives, dropout): derived from the saved Trainer RNG. */
  rng: Rng;
  /** Distillation weight for this step: alpha ramped over the first epoch (ALBEF). */
  alpha: number;
  lr: number;
}

export interface TrainProgress {
  step: number;
  totalSteps: number;
  epoch: number;
  record: StepRecord;
}

export interface TrainerOptions<B> {
  model: Module;
  /** One micro-batch forward in training mode, returning `{ loss, losses, metrics }`; runs inside the gradient tape. */
  forward: (batch: B, ctx: TrainStepContext) => ForwardResult;
  /** Optimizer steps per epoch: the ALBEF alpha ramp length, and the epoch count of `fit({ epochs })`. */
  stepsPerEpoch: number;
  optimizer?: AdamWOptions;
  /** Default: constant at optimizer.lr. */
  schedule?: ScheduleConfig | LrSchedule;
  /** Micro-batches per optimizer step (default 1). */
  accumulationSteps?: number;
  /** Global-norm clip (ALBEF/BLIP use none; CoCa/open_clip often 1.0). 0 or absent: no clipping. */
  maxGradNorm?: number;
  /** Distillation weight after the ramp (ALBEF 0.4). */
  alpha?: number;
  /** Seeds the Trainer RNG, from which every step's RNG is derived. */
  seed?: number;
  /** Folder for step-NNNNNNNN checkpoints and latest.json. */
  checkpointDir?: string;
  /** Save every N optimizer steps (and always at the end of `fit`). */
  checkpointEvery?: number;
  /** Keep only the newest N checkpoints. Default: keep all. */
  keepCheckpoints?: number;
  /** JSONL file, one record per optimizer step. */
  metricsPath?: string;
  /** Called after every optimizer step (the CLI draws its progress bar from this). */
  onProgress?: (progress: TrainProgress) => void;
  /**
   * Runs after each optimizer step, outside the gradient tape: momentum EMA updates and
   * temperature clamping go here (ALBEF does both at the start of the next forward, same thing).
   */
  afterStep?: (info: { step: number; epoch: number }) => void;
  /** JSON saved in trainer.json (config, data fingerprint) for the record. */
  extraState?: () => unknown;
}

export interface FitOptions {
  epochs?: number;
  maxSteps?: number;
  /** Continue from the newest checkpoint in checkpointDir when there is one (default true). */
  resume?: boolean;
}

export interface FitSummary {
  steps: number;
  epoch: number;
  records: StepRecord[];
  resumedFrom: string | null;
}

/** Produces an epoch's micro-batches; must give the same sequence for the same epoch (resume skips by count). */
export type EpochData<B> = (epoch: number) => Iterable<B> | AsyncIterable<B>;

export class Trainer<B> {
  readonly model: Module;
  readonly optimizer: AdamW;
  readonly schedule: LrSchedule;
  /** Optimizer steps completed. */
  step = 0;
  epoch = 0;
  /** Micro-batches of the current epoch already consumed. */
  batchInEpoch = 0;
  private rng: Rng;
  private readonly options: TrainerOptions<B>;
  private readonly accumulation: number;
  private readonly vars: tf.Variable[];
  private readonly paramNameOfVar = new Map<string, string>();
  private readonly log: JsonlMetricsLog | null;
  private lastSavedStep = -1;

  constructor(options: TrainerOptions<B>) {
    this.options = options;
    this.model = options.model;
    this.accumulation = options.accumulationSteps ?? 1;
    if (!Number.isInteger(this.accumulation) || this.accumulation < 1) {
      throw new VlError('CONFIG_INVALID', `accumulationSteps must be a positive integer, got ${this.accumulation}`, { subject: 'Trainer' });
    }
    const named = this.model.namedParameters().filter(([, p]) => p.trainable);
    this.vars = named.map(([, p]) => p);
    for (const [name, p] of named) this.paramNameOfVar.set(p.name, name);
    this.optimizer = new AdamW(named, options.optimizer);
    const s = options.schedule ?? { kind: 'constant', lr: this.optimizer.lr };
    this.schedule = typeof s === 'function' ? s : makeSchedule(s);
    this.rng = new Rng(options.seed ?? 0);
    this.log = options.metricsPath ? new JsonlMetricsLog(options.metricsPath) : null;
  }

  /** The distillation weight and learning rate the next step will use. */
  get alpha(): number {
    return distillAlpha(this.step, this.options.stepsPerEpoch, this.options.alpha ?? 0.4);
  }

  get lr(): number {
    return this.schedule(this.step);
  }

  /**
   * One optimizer step over `microBatches` (normally `accumulationSteps` of them): forward and
   * gradients per micro-batch, mean gradient, clip, AdamW, `afterStep`. Throws NON_FINITE_LOSS
   * if any loss or the gradient norm is NaN/Inf, before the optimizer touches a weight; step,
   * RNG and optimizer state are left as they were. What the forward itself wrote before the
   * failure (queue entries) stays: resume from the last checkpoint for a clean state.
   */
  trainStep(microBatches: readonly B[]): StepRecord {
    if (microBatches.length === 0)
      throw new VlError('INVALID_ARGUMENT', 'trainStep needs at least one micro-batch', { subject: 'Trainer' });
    const started = Date.now();
    this.model.train();
    const rngBefore = this.rng.state(); // restored if the step fails, so a retry draws the same numbers
    const stepRng = this.rng.fork('train-step');
    this.rng.nextUint32(); // advance so the next step forks a different stream
    const lr = this.lr;
    const alpha = this.alpha;
    const accumulator = new GradientAccumulator();
    const sums: Record<string, number> = {};
    const metricSums: Record<string, number> = {};
    let lossSum = 0;
    try {
      microBatches.forEach((batch, k) => {
        const ctx: TrainStepContext = { step: this.step, microStep: k, epoch: this.epoch, rng: stepRng.fork(`micro-${k}`), alpha, lr };
        const { grads, total, losses, metrics } = this.forwardBackward(batch, ctx);
        accumulator.add(grads);
        for (const g of grads.values()) g.dispose();
        lossSum += total;
        for (const [n, v] of Object.entries(losses)) sums[n] = (sums[n] ?? 0) + v;
        for (const [n, v] of Object.entries(metrics)) metricSums[n] = (metricSums[n] ?? 0) + v;
      });
    } catch (err) {
      accumulator.reset();
      this.rng = Rng.fromState(rngBefore);
      throw err;
    }
    let grads = accumulator.take();
    let normValue: number;
    try {
      if (this.options.maxGradNorm && this.options.maxGradNorm > 0) {
        const clipped = clipByGlobalNorm(grads, this.options.maxGradNorm);
        for (const g of grads.values()) g.dispose();
        grads = clipped.grads;
        normValue = clipped.norm.dataSync()[0]!;
        clipped.norm.dispose();
      } else {
        const norm = globalNorm(grads.values());
        normValue = norm.dataSync()[0]!;
        norm.dispose();
      }
      if (!Number.isFinite(normValue)) {
        this.rng = Rng.fromState(rngBefore);
        this.nonFinite('grad_norm', normValue);
      }
      this.optimizer.step(grads, lr);
    } finally {
      for (const g of grads.values()) g.dispose();
    }
    this.step += 1;
    this.batchInEpoch += microBatches.length;
    this.options.afterStep?.({ step: this.step, epoch: this.epoch });
    const n = microBatches.length;
    const mean = (o: Record<string, number>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, v / n]));
    return {
      step: this.step,
      epoch: this.epoch,
      lr,
      alpha,
      loss: lossSum / n,
      losses: mean(sums),
      metrics: mean(metricSums),
      gradNorm: normValue,
      ms: Date.now() - started,
    };
  }

  private forwardBackward(
    batch: B,
    ctx: TrainStepContext,
  ): { grads: Map<string, tf.Tensor>; total: number; losses: Record<string, number>; metrics: Record<string, number> } {
    const kept: Record<string, tf.Tensor> = {};
    let metrics: Record<string, number> = {};
    const { value, grads } = tf.variableGrads(() => {
      const out = this.options.forward(batch, ctx);
      for (const [name, t] of Object.entries(out.losses)) kept[name] = tf.keep(t);
      metrics = out.metrics;
      return out.loss;
    }, this.vars);
    const losses: Record<string, number> = {};
    for (const [name, t] of Object.entries(kept)) {
      losses[name] = t.dataSync()[0]!;
      t.dispose();
    }
    const total = value.dataSync()[0]!;
    value.dispose();
    const named = new Map<string, tf.Tensor>();
    for (const [varName, g] of Object.entries(grads)) named.set(this.paramNameOfVar.get(varName) ?? varName, g);
    // The guard: name the objective that went bad, before anything is applied.
    const bad =
      Object.entries(losses).find(([, v]) => !Number.isFinite(v)) ?? (Number.isFinite(total) ? undefined : (['loss', total] as const));
    if (bad) {
      for (const g of named.values()) g.dispose();
      this.nonFinite(bad[0], bad[1]);
    }
    return { grads: named, total, losses, metrics };
  }

  private nonFinite(name: string, value: number): never {
    throw new VlError('NON_FINITE_LOSS', `'${name}' is ${value} at step ${this.step + 1} (epoch ${this.epoch})`, {
      subject: `step ${this.step + 1} / ${name}`,
      hint: 'lower the learning rate, enable gradient clipping (maxGradNorm), or resume from the last checkpoint',
    });
  }

  /**
   * Runs epochs of `data` until `epochs` or `maxSteps`, logging, reporting progress and
   * checkpointing. With `resume` (default) it first continues from the newest checkpoint.
   */
  async fit(data: EpochData<B>, options: FitOptions = {}): Promise<FitSummary> {
    if (options.epochs === undefined && options.maxSteps === undefined) {
      throw new VlError('INVALID_ARGUMENT', 'fit needs epochs or maxSteps', { subject: 'Trainer.fit' });
    }
    const resumedFrom = options.resume === false || !this.options.checkpointDir ? null : await this.resume();
    const totalSteps = options.maxSteps ?? (options.epochs as number) * this.options.stepsPerEpoch;
    const maxEpochs = options.epochs ?? Infinity;
    const records: StepRecord[] = [];
    const after = async (record: StepRecord) => {
      records.push(record);
      await this.log?.append(record);
      this.options.onProgress?.({ step: this.step, totalSteps, epoch: this.epoch, record });
      const every = this.options.checkpointEvery;
      if (every && this.step % every === 0) await this.save();
    };
    let stopped = false;
    while (!stopped && this.epoch < maxEpochs && this.step < totalSteps) {
      let index = 0;
      let group: B[] = [];
      for await (const batch of data(this.epoch)) {
        if (index++ < this.batchInEpoch) continue; // consumed before the checkpoint we resumed from
        group.push(batch);
        if (group.length < this.accumulation) continue;
        await after(this.trainStep(group));
        group = [];
        if (this.step >= totalSteps) {
          stopped = true;
          break;
        }
      }
      if (stopped) break;
      if (group.length > 0) await after(this.trainStep(group)); // short last group of the epoch
      this.epoch += 1;
      this.batchInEpoch = 0;
    }
    if (this.options.checkpointDir && this.lastSavedStep !== this.step) await this.save();
    return { steps: this.step, epoch: this.epoch, records, resumedFrom };
  }

  /** Saves a checkpoint of the current state; returns its folder. */
  async save(): Promise<string> {
    const root = this.options.checkpointDir;
    if (!root) throw new VlError('CONFIG_INVALID', 'no checkpointDir configured', { subject: 'Trainer.save' });
    const opt = this.optimizer.stateDict();
    const state: TrainerState = {
      format: CHECKPOINT_FORMAT,
      step: this.step,
      epoch: this.epoch,
      batchInEpoch: this.batchInEpoch,
      rng: this.rng.state(),
      optimizer: opt.meta,
      extra: this.options.extraState?.(),
      savedAt: new Date().toISOString(),
    };
    const dir = await saveCheckpoint(root, { model: this.model, optimizerTensors: opt.tensors, state });
    if (this.options.keepCheckpoints) await pruneCheckpoints(root, this.options.keepCheckpoints);
    this.lastSavedStep = this.step;
    return dir;
  }

  /**
   * Loads the newest checkpoint under checkpointDir (or `dir`): weights and buffers (momentum
   * twins, queues, pointers), optimizer moments, RNG, step and data position; trims the metrics
   * log to that step. Returns the folder, or null when there is nothing to resume.
   */
  async resume(dir?: string): Promise<string | null> {
    const from = dir ?? (this.options.checkpointDir ? await latestCheckpoint(this.options.checkpointDir) : null);
    if (!from) return null;
    const ckpt = await loadCheckpoint(from);
    this.model.loadStateDict(ckpt.model, { source: from });
    this.optimizer.loadStateDict({ tensors: ckpt.optimizer, meta: ckpt.state.optimizer });
    this.step = ckpt.state.step;
    this.epoch = ckpt.state.epoch;
    this.batchInEpoch = ckpt.state.batchInEpoch;
    this.rng = Rng.fromState(ckpt.state.rng);
    this.lastSavedStep = this.step;
    await this.log?.truncateAfter(this.step);
    return from;
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}
