// MomentumEncoder EMA arithmetic and state, FeatureQueue FIFO with wrap-around, distillation
// targets and the alpha ramp, stop-gradient, MLM distillation loss by hand.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { isVlError } from '../../errors.js';
import { Linear, Mlp } from '../../nn/layers.js';
import { Module } from '../../nn/module.js';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { IGNORE_INDEX } from '../../objectives/losses.js';
import { MomentumEncoder } from '../momentum.js';
import { FeatureQueue } from '../queue.js';
import { distillAlpha, itcMomentumTargets, mixTargets, mlmDistillLoss, stopGradient } from '../targets.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

class Pair extends Module {
  readonly proj: Linear;
  readonly proj_m: Linear;
  readonly queue: FeatureQueue;
  constructor(rng: Rng) {
    super();
    this.proj = this.registerModule('proj', new Linear(3, 2, rng));
    this.proj_m = this.registerModule('proj_m', new Linear(3, 2, rng));
    this.queue = this.registerModule('queues', new FeatureQueue({ size: 4, fields: { image_queue: { dim: 2 } }, rng }));
  }
}

describe('MomentumEncoder', () => {
  it('copies at init, freezes the twin, and steps twin ← m·twin + (1−m)·online', () => {
    const model = new Pair(new Rng(0));
    const ema = new MomentumEncoder([[model.proj, model.proj_m]], { momentum: 0.9 });
    expect(ema.numPairs).toBe(2);
    expect([...model.proj_m.weight.dataSync()]).toEqual([...model.proj.weight.dataSync()]);
    expect(model.proj_m.weight.trainable).toBe(false);
    expect(model.trainableParameters()).toHaveLength(2);
    const before = [...model.proj_m.weight.dataSync()];
    model.proj.weight.assign(tf.onesLike(model.proj.weight));
    ema.update();
    const after = model.proj_m.weight.dataSync();
    before.forEach((b, i) => expect(after[i]).toBeCloseTo(0.9 * b + 0.1, 6));
    // The EMA state is ordinary parameters of the model: in its state dict under the twin's name.
    expect([...model.stateDict().keys()]).toEqual([
      'proj.weight',
      'proj.bias',
      'proj_m.weight',
      'proj_m.bias',
      'queues.image_queue',
      'queues.queue_ptr',
    ]);
    model.dispose();
  });

  it('refuses a twin with a different structure, listing the differences', () => {
    const rng = new Rng(1);
    try {
      new MomentumEncoder([[new Mlp(3, 4, 2, rng), new Mlp(3, 5, 2, rng)]]);
      expect.unreachable();
    } catch (err) {
      expect(isVlError(err, 'STATE_DICT_MISMATCH')).toBe(true);
      expect(String(err)).toMatch(/fc1\.weight/);
    }
  });

  it('update leaks no tensors', () => {
    const model = new Pair(new Rng(0));
    const ema = new MomentumEncoder([[model.proj, model.proj_m]]);
    ema.update();
    const n = tf.memory().numTensors;
    ema.update();
    expect(tf.memory().numTensors).toBe(n);
    model.dispose();
  });
});

describe('FeatureQueue', () => {
  it('starts with unit random columns and an int64 pointer, as ALBEF', () => {
    const q = new FeatureQueue({
      size: 6,
      fields: { image_queue: { dim: 3 }, idx_queue: { dim: 1, init: -100, dtype: 'int32' } },
      rng: new Rng(2),
    });
    const norms = tf.tidy(() => tf.norm(q.get('image_queue'), 'euclidean', 0).dataSync());
    for (const n of norms) expect(n).toBeCloseTo(1, 5);
    expect([...q.get('idx_queue').dataSync()]).toEqual([-100, -100, -100, -100, -100, -100]);
    expect(q.storedDtypes().get('queue_ptr')).toBe('I64');
    expect(q.pointer).toBe(0);
    q.dispose();
  });

  it('enqueues columns at the pointer and wraps around when the batch does not divide the size', () => {
    const q = new FeatureQueue({ size: 5, fields: { f: { dim: 2, init: 'zeros' }, ids: { dim: 1, init: -1, dtype: 'int32' } } });
    const batch = (start: number, n: number) => ({
      f: tf.tensor2d(Array.from({ length: n }, (_, k) => [start + k, -(start + k)])),
      ids: tf.tensor1d(
        Array.from({ length: n }, (_, k) => start + k),
        'int32',
      ),
    });
    const push = (start: number, n: number) => {
      const b = batch(start, n);
      q.enqueue(b);
      tf.dispose(Object.values(b));
    };
    push(1, 2); // slots 0,1
    expect(q.pointer).toBe(2);
    expect((q.get('f').arraySync() as number[][])[0]).toEqual([1, 2, 0, 0, 0]);
    push(3, 2); // slots 2,3
    push(5, 2); // slot 4, then wraps to slot 0
    expect(q.pointer).toBe(1);
    expect((q.get('f').arraySync() as number[][])[0]).toEqual([6, 2, 3, 4, 5]);
    expect((q.get('f').arraySync() as number[][])[1]).toEqual([-6, -2, -3, -4, -5]);
    expect([...q.get('ids').dataSync()]).toEqual([6, 2, 3, 4, 5]);
    push(10, 7); // bigger than the queue: its newest 5 items, FIFO positions continue from pointer 1
    expect(q.pointer).toBe(3);
    // items 10..16 written at 1,2,3,4,0,1,2 → slot 0: 14, 1: 15, 2: 16, 3: 12, 4: 13
    expect([...q.get('ids').dataSync()]).toEqual([14, 15, 16, 12, 13]);
    const n = tf.memory().numTensors;
    push(20, 3);
    expect(tf.memory().numTensors).toBe(n);
    q.dispose();
  });

  it('with a size divisible by the batch it is exactly ALBEF: slices in order, pointer mod size', () => {
    const q = new FeatureQueue({ size: 4, fields: { f: { dim: 1, init: 'zeros' } } });
    for (let s = 0; s < 3; s++) {
      const t = tf.tensor2d([[s * 2 + 1], [s * 2 + 2]]);
      q.enqueue({ f: t });
      t.dispose();
    }
    expect([...q.get('f').dataSync()]).toEqual([5, 6, 3, 4]);
    expect(q.pointer).toBe(2);
    q.dispose();
  });

  it('round-trips through the state dict, pointer included', () => {
    const a = new FeatureQueue({ size: 3, fields: { f: { dim: 1, init: 'zeros' } } });
    const t = tf.tensor2d([[7], [8]]);
    a.enqueue({ f: t });
    const b = new FeatureQueue({ size: 3, fields: { f: { dim: 1, init: 'zeros' } } });
    b.loadStateDict(a.stateDict());
    expect(b.pointer).toBe(2);
    expect([...b.get('f').dataSync()]).toEqual([7, 8, 0]);
    tf.dispose([t]);
    a.dispose();
    b.dispose();
  });
});

describe('distillation targets', () => {
  it('alpha ramps linearly over the first epoch, then stays', () => {
    expect(distillAlpha(0, 100)).toBe(0);
    expect(distillAlpha(50, 100)).toBeCloseTo(0.2, 12);
    expect(distillAlpha(100, 100)).toBeCloseTo(0.4, 12);
    expect(distillAlpha(1000, 100, 0.3)).toBeCloseTo(0.3, 12);
  });

  it('stopGradient passes values and blocks gradients; mixTargets weights by alpha', () => {
    const g = tf.grad((x: tf.Tensor) => tf.sum(tf.add(tf.mul(stopGradient(x), x), x)))(tf.tensor1d([2, 3]));
    expect([...g.dataSync()]).toEqual([3, 4]); // d/dx (c·x + x) with c = x held constant
    const mixed = mixTargets(tf.tensor1d([1, 0]), tf.tensor1d([0, 1]), 0.4).dataSync();
    expect(mixed[0]).toBeCloseTo(0.4, 6);
    expect(mixed[1]).toBeCloseTo(0.6, 6);
  });

  it('itcMomentumTargets are row softmaxes of feat_m · featAll / temp', () => {
    const featM = tf.tensor2d([
      [1, 0],
      [0, 1],
    ]);
    const all = tf.tensor2d([
      [1, 0, 0.6],
      [0, 1, 0.8],
    ]);
    const { i2t } = itcMomentumTargets(featM, featM, all, all, 0.5);
    const row = [2, 0, 1.2];
    const z = row.reduce((s, v) => s + Math.exp(v), 0);
    const got = i2t.dataSync();
    row.forEach((v, j) => expect(got[j]).toBeCloseTo(Math.exp(v) / z, 6));
  });

  it('MLM distillation: (1−α)·CE + α·soft CE over masked positions only', () => {
    const logits = [
      [1, 0, 2],
      [0, 0, 0],
      [0.5, -1, 1],
    ];
    const logitsM = [
      [0, 1, 1],
      [5, 5, 5],
      [2, 0, 0],
    ];
    const labels = [2, IGNORE_INDEX, 0];
    const ls = (r: number[]) => {
      const lse = Math.log(r.reduce((s, v) => s + Math.exp(v), 0));
      return r.map((v) => v - lse);
    };
    const sm = (r: number[]) => ls(r).map(Math.exp);
    const ce = (-ls(logits[0]!)[2]! - ls(logits[2]!)[0]!) / 2;
    const soft = (r: number) => -ls(logits[r]!).reduce((s, v, j) => s + v * sm(logitsM[r]!)[j]!, 0);
    const expected = 0.6 * ce + 0.4 * ((soft(0) + soft(2)) / 2);
    expect(mlmDistillLoss(tf.tensor2d(logits), tf.tensor2d(logitsM), labels, 0.4).dataSync()[0]).toBeCloseTo(expected, 5);
  });
});
