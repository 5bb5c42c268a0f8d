// The Trainer on a toy ALBEF-shaped model: losses go down; a resumed run reproduces the
// uninterrupted run bit for bit; the NaN guard names step and loss; JSONL log, progress,
// atomic checkpoints; no tensor leaks per step.
import * as tf from '@tensorflow/tfjs-core';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isVlError, type VlError } from '../../errors.js';
import { Linear } from '../../nn/layers.js';
import { Module } from '../../nn/module.js';
import { combineLosses } from '../../objectives/losses.js';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { latestCheckpoint } from '../../node/train-checkpoint.js';
import { JsonlMetricsLog, type StepRecord } from '../../node/metrics-log.js';
import { Trainer, type TrainerOptions, type TrainProgress } from '../../node/trainer.js';
import { ToyAlbef, toyEpoch, toyPairs, type ToyBatch } from './toy.js';

let dir: string;
beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
  dir = await mkdtemp(join(tmpdir(), 'vl-trainer-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const pairs = toyPairs(1);
const BATCH = 8;
const data = toyEpoch(pairs, BATCH, 5);
const STEPS_PER_EPOCH = data(0).length; // 32 pairs / 8 = 4

function makeTrainer(model: ToyAlbef, extra: Partial<TrainerOptions<ToyBatch>> = {}): Trainer<ToyBatch> {
  return new Trainer<ToyBatch>({
    model,
    forward: (batch, ctx) => model.forward(batch, ctx),
    afterStep: () => model.afterStep(),
    stepsPerEpoch: STEPS_PER_EPOCH,
    optimizer: { lr: 3e-2, weightDecay: 0.02 },
    schedule: { kind: 'cosine', lr: 3e-2, minLr: 3e-3, totalSteps: 100, warmupSteps: 5, warmupInitLr: 1e-3 },
    seed: 123,
    ...extra,
  });
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('Trainer', () => {
  it('drives ITC, ITM and MLM down on the toy task', async () => {
    const model = new ToyAlbef(0);
    const trainer = makeTrainer(model);
    const { records } = await trainer.fit(data, { epochs: 25 });
    expect(records).toHaveLength(25 * STEPS_PER_EPOCH);
    const first = records.slice(0, STEPS_PER_EPOCH);
    const last = records.slice(-STEPS_PER_EPOCH);
    for (const name of ['itc', 'itm', 'mlm']) {
      const a = mean(first.map((r) => r.losses[name]!));
      const b = mean(last.map((r) => r.losses[name]!));
      expect(b, `${name}: ${a} → ${b}`).toBeLessThan(0.6 * a);
    }
    expect(mean(last.map((r) => r.metrics.itmAcc!))).toBeGreaterThan(0.8);
    // ALBEF's alpha ramp over the first epoch, and the temperature stays in its clamp range.
    expect(records[0]!.alpha).toBe(0);
    expect(records[STEPS_PER_EPOCH / 2]!.alpha).toBeCloseTo(0.2, 12);
    expect(records[STEPS_PER_EPOCH + 1]!.alpha).toBeCloseTo(0.4, 12);
    for (const r of records) expect(r.metrics.temp! >= 0.001 && r.metrics.temp! <= 0.5).toBe(true);
    trainer.dispose();
    model.dispose();
  });

  it('a run resumed from a checkpoint reproduces the uninterrupted losses bit for bit', async () => {
    const fullModel = new ToyAlbef(7);
    const full = makeTrainer(fullModel);
    const reference = (await full.fit(data, { maxSteps: 13 })).records; // crosses epoch boundaries (4 steps each)

    const ckptDir = join(dir, 'resume');
    const logPath = join(dir, 'resume.jsonl');
    const firstModel = new ToyAlbef(7);
    const first = makeTrainer(firstModel, { checkpointDir: ckptDir, checkpointEvery: 5, metricsPath: logPath });
    const part1 = (await first.fit(data, { maxSteps: 7 })).records; // checkpoints at 5 and (end) 7
    // Simulate a crash after step 7's checkpoint … rewind to step 5 by pointing latest at it.
    first.dispose();
    firstModel.dispose();
    const { writeJsonFile } = await import('../../node/json-file.js');
    await writeJsonFile(join(ckptDir, 'latest.json'), { checkpoint: 'step-00000005', step: 5 });

    // A fresh process: different init seed, so everything must come from the checkpoint.
    const secondModel = new ToyAlbef(99);
    const second = makeTrainer(secondModel, { checkpointDir: ckptDir, checkpointEvery: 5, metricsPath: logPath });
    const summary = await second.fit(data, { maxSteps: 13 });
    expect(summary.resumedFrom).toMatch(/step-00000005$/);
    const resumed = [...part1.slice(0, 5), ...summary.records];
    expect(resumed.map((r) => r.step)).toEqual(reference.map((r) => r.step));
    for (let i = 0; i < reference.length; i++) {
      expect(resumed[i]!.loss).toBe(reference[i]!.loss);
      expect(resumed[i]!.losses).toEqual(reference[i]!.losses);
      expect(resumed[i]!.gradNorm).toBe(reference[i]!.gradNorm);
    }
    // Final weights and queues identical too.
    const a = fullModel.stateDict();
    for (const [k, t] of secondModel.stateDict()) expect([...t.dataSync()], k).toEqual([...a.get(k)!.dataSync()]);
    // The log reads as one run: steps 1..13 once each (6 and 7 of the crashed run were dropped).
    const logged = await new JsonlMetricsLog(logPath).read();
    expect(logged.map((r) => r.step)).toEqual(Array.from({ length: 13 }, (_, i) => i + 1));
    expect(logged.map((r) => r.loss)).toEqual(reference.map((r) => r.loss));
    for (const t of [full, second]) t.dispose();
    fullModel.dispose();
    secondModel.dispose();
  });

  it('saves checkpoints atomically with everything a resume needs, and prunes old ones', async () => {
    const root = join(dir, 'ckpt');
    const model = new ToyAlbef(3);
    const progress: TrainProgress[] = [];
    const trainer = makeTrainer(model, {
      checkpointDir: root,
      checkpointEvery: 2,
      keepCheckpoints: 2,
      onProgress: (p) => progress.push(p),
      extraState: () => ({ run: 'toy' }),
    });
    await trainer.fit(data, { maxSteps: 5 });
    expect(progress.map((p) => p.step)).toEqual([1, 2, 3, 4, 5]);
    expect(progress[0]!.totalSteps).toBe(5);
    const names = (await readdir(root)).sort();
    expect(names).toEqual(['latest.json', 'step-00000004', 'step-00000005']); // no temporary folders left
    expect(await latestCheckpoint(root)).toMatch(/step-00000005$/);
    expect((await readdir(join(root, 'step-00000005'))).sort()).toEqual(['model.safetensors', 'optimizer.safetensors', 'trainer.json']);
    const { readSafetensorsFile } = await import('../../node/safetensors-file.js');
    const { readJsonFile } = await import('../../node/json-file.js');
    const saved = await readSafetensorsFile(join(root, 'step-00000005', 'model.safetensors'));
    expect(saved.tensors.get('queues.queue_ptr')!.fileDtype).toBe('I64');
    expect(saved.tensors.has('visual_encoder_m.dense.weight')).toBe(true);
    expect(saved.tensors.has('temp')).toBe(true);
    const state = await readJsonFile<{ step: number; batchInEpoch: number; rng: number[]; extra: unknown }>(
      join(root, 'step-00000005', 'trainer.json'),
    );
    expect(state.step).toBe(5);
    expect(state.batchInEpoch).toBe(5 % STEPS_PER_EPOCH);
    expect(state.rng).toHaveLength(4);
    expect(state.extra).toEqual({ run: 'toy' });
    trainer.dispose();
    model.dispose();
  });

  it('the NaN/Inf guard stops with the step and the loss that went bad, changing nothing', () => {
    class One extends Module {
      readonly fc = this.registerModule('fc', new Linear(1, 1, new Rng(0)));
    }
    const model = new One();
    let calls = 0;
    const trainer = new Trainer<number>({
      model,
      stepsPerEpoch: 10,
      forward: (x) => {
        calls++;
        const y = tf.tidy(() => tf.mean(model.fc.forward(tf.tensor2d([[x]])))) as tf.Scalar;
        const bad = tf.tidy(() => (calls === 3 ? tf.div(tf.log(tf.scalar(-1)), 1) : tf.mul(y, 0.5))) as tf.Scalar;
        return combineLosses({ itc: y, itm: bad });
      },
    });
    trainer.trainStep([1]);
    trainer.trainStep([1]);
    const before = [...model.fc.weight.dataSync()];
    try {
      trainer.trainStep([1]);
      expect.unreachable();
    } catch (err) {
      expect(isVlError(err, 'NON_FINITE_LOSS')).toBe(true);
      expect((err as VlError).subject).toBe('step 3 / itm');
      expect(String(err)).toMatch(/'itm' is NaN at step 3/);
    }
    expect([...model.fc.weight.dataSync()]).toEqual(before);
    expect(trainer.step).toBe(2);
    trainer.dispose();
    model.dispose();
  });

  it('a train step leaks no tensors (forward, ITM mining, queues, EMA, AdamW, clipping)', () => {
    const model = new ToyAlbef(4);
    const trainer = makeTrainer(model, { maxGradNorm: 1, accumulationSteps: 2 });
    const batches = data(0);
    trainer.trainStep(batches.slice(0, 2));
    const n = tf.memory().numTensors;
    const r: StepRecord = trainer.trainStep(batches.slice(2, 4));
    expect(tf.memory().numTensors).toBe(n);
    expect(r.gradNorm).toBeGreaterThan(0);
    trainer.dispose();
    model.dispose();
  });

  it('objectives switch off by config', () => {
    const model = new ToyAlbef(4, { itm: { enabled: false }, mlm: { weight: 2 } });
    const trainer = makeTrainer(model);
    const r = trainer.trainStep([data(0)[0]!]);
    expect(Object.keys(r.losses).sort()).toEqual(['itc', 'mlm']);
    expect(r.loss).toBeCloseTo(r.losses.itc! + 2 * r.losses.mlm!, 5);
    trainer.dispose();
    model.dispose();
  });
});
