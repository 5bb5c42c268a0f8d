// AdamW against hand-computed updates and its decay groups; schedules at key steps; global-norm
// clipping; accumulation of micro-batches equals one big batch.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { isVlError } from '../../errors.js';
import { LayerNorm, Linear } from '../../nn/layers.js';
import { Module } from '../../nn/module.js';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { combineLosses } from '../../objectives/losses.js';
import { clipByGlobalNorm, globalNorm, GradientAccumulator } from '../gradients.js';
import { AdamW } from '../optimizer.js';
import { makeSchedule } from '../schedule.js';
import { Trainer } from '../../node/trainer.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

describe('AdamW', () => {
  it('two steps match PyTorch AdamW computed by hand (decay on the matrix, not on the bias)', () => {
    const w = tf.variable(tf.tensor2d([[1, -2]]));
    const b = tf.variable(tf.tensor1d([0.5]));
    const opt = new AdamW(
      [
        ['fc.weight', w],
        ['fc.bias', b],
      ],
      { lr: 0.1, weightDecay: 0.01, betas: [0.9, 0.999], eps: 1e-8 },
    );
    expect(opt.decayedParameters()).toEqual(['fc.weight']);
    const g1 = [0.5, -1];
    const g2 = [-0.2, 0.3];
    const gb = [[2], [1]];
    // Hand computation in float64, PyTorch's order: decay, moments, bias-corrected step.
    const ref = (p0: number[], gs: number[][], wd: number) => {
      const p = [...p0];
      const m = p.map(() => 0);
      const v = p.map(() => 0);
      gs.forEach((g, t) => {
        const step = t + 1;
        for (let i = 0; i < p.length; i++) {
          p[i]! *= 1 - 0.1 * wd;
          m[i] = 0.9 * m[i]! + 0.1 * g[i]!;
          v[i] = 0.999 * v[i]! + 0.001 * g[i]! ** 2;
          const denom = Math.sqrt(v[i]!) / Math.sqrt(1 - 0.999 ** step) + 1e-8;
          p[i]! -= (0.1 / (1 - 0.9 ** step)) * (m[i]! / denom);
        }
      });
      return p;
    };
    for (const [gw, gbias] of [
      [g1, gb[0]!],
      [g2, gb[1]!],
    ] as const) {
      const grads = new Map<string, tf.Tensor>([
        ['fc.weight', tf.tensor2d([gw])],
        ['fc.bias', tf.tensor1d(gbias)],
      ]);
      opt.step(grads);
      tf.dispose([...grads.values()]);
    }
    const expectW = ref([1, -2], [g1, g2], 0.01);
    const expectB = ref([0.5], [gb[0]!, gb[1]!], 0);
    const gotW = w.dataSync();
    expect(gotW[0]).toBeCloseTo(expectW[0]!, 6);
    expect(gotW[1]).toBeCloseTo(expectW[1]!, 6);
    expect(b.dataSync()[0]).toBeCloseTo(expectB[0]!, 6);
    const state = opt.stateDict();
    expect(state.meta.steps).toEqual({ 'fc.weight': 2, 'fc.bias': 2 });
    expect([...state.tensors.keys()].sort()).toEqual([
      'exp_avg.fc.bias',
      'exp_avg.fc.weight',
      'exp_avg_sq.fc.bias',
      'exp_avg_sq.fc.weight',
    ]);
    opt.dispose();
    tf.dispose([w, b]);
  });

  it('exempts norms, biases and scalars by rank, and 2-D tensors by name pattern', () => {
    class M extends Module {
      constructor(rng: Rng) {
        super();
        this.registerModule('dense', new Linear(2, 2, rng));
        this.registerModule('LayerNorm', new LayerNorm(2));
        this.registerParameter('temp', tf.scalar(0.07));
        this.registerParameter('cls_token', tf.zeros([1, 1, 2]));
      }
    }
    const m = new M(new Rng(0));
    const opt = new AdamW(m.namedParameters(), { noDecay: ['cls_token'] });
    expect(opt.decayedParameters()).toEqual(['dense.weight']);
    m.dispose();
  });

  it('skips parameters without a gradient, like PyTorch', () => {
    const a = tf.variable(tf.tensor2d([[1]]));
    const c = tf.variable(tf.tensor2d([[1]]));
    const opt = new AdamW([
      ['a', a],
      ['c', c],
    ]);
    const g = tf.tensor2d([[1]]);
    opt.step(new Map([['a', g]]));
    expect(c.dataSync()[0]).toBe(1);
    expect(Object.keys(opt.stateDict().meta.steps)).toEqual(['a']);
    tf.dispose([a, c, g]);
    opt.dispose();
  });
});

describe('schedules', () => {
  it('cosine with warmup: linear ramp, peak, midpoint, floor', () => {
    const s = makeSchedule({ kind: 'cosine', lr: 1e-3, minLr: 1e-5, totalSteps: 110, warmupSteps: 10, warmupInitLr: 1e-6 });
    expect(s(0)).toBeCloseTo(1e-6, 12);
    expect(s(5)).toBeCloseTo(1e-6 + (1e-3 - 1e-6) / 2, 12);
    expect(s(10)).toBeCloseTo(1e-3, 12);
    expect(s(60)).toBeCloseTo(1e-5 + (1e-3 - 1e-5) / 2, 12);
    expect(s(110)).toBeCloseTo(1e-5, 12);
    expect(s(500)).toBeCloseTo(1e-5, 12);
  });

  it('step decay (BLIP step_lr_schedule) with floor, and constant', () => {
    const s = makeSchedule({ kind: 'step', lr: 1e-2, stepSize: 10, decayRate: 0.5, minLr: 1e-3, warmupSteps: 4 });
    expect(s(0)).toBe(0);
    expect(s(2)).toBeCloseTo(5e-3, 12);
    expect(s(4)).toBeCloseTo(1e-2, 12);
    expect(s(13)).toBeCloseTo(1e-2, 12);
    expect(s(14)).toBeCloseTo(5e-3, 12);
    expect(s(24)).toBeCloseTo(2.5e-3, 12);
    expect(s(1000)).toBeCloseTo(1e-3, 12);
    expect(makeSchedule({ kind: 'constant', lr: 3 })(77)).toBe(3);
  });
});

describe('clipping and accumulation', () => {
  it('clips to the global norm as clip_grad_norm_, and leaves small gradients alone', () => {
    const grads = new Map<string, tf.Tensor>([
      ['a', tf.tensor1d([3, 0])],
      ['b', tf.tensor2d([[0, 4]])],
    ]);
    expect(globalNorm(grads.values()).dataSync()[0]).toBeCloseTo(5, 6);
    const { grads: clipped, norm } = clipByGlobalNorm(grads, 1);
    expect(norm.dataSync()[0]).toBeCloseTo(5, 6);
    expect(globalNorm(clipped.values()).dataSync()[0]).toBeCloseTo(1, 5);
    expect(clipped.get('a')!.dataSync()[0]).toBeCloseTo(0.6, 5);
    const loose = clipByGlobalNorm(grads, 10);
    expect([...loose.grads.get('b')!.dataSync()]).toEqual([0, 4]);
  });

  it('accumulator returns the mean and leaks nothing', () => {
    const acc = new GradientAccumulator();
    const g1 = new Map([['w', tf.tensor1d([1, 2])]]);
    const g2 = new Map([['w', tf.tensor1d([3, 6])]]);
    acc.add(g1);
    const n = tf.memory().numTensors;
    acc.add(g2);
    expect(tf.memory().numTensors).toBe(n);
    const mean = acc.take();
    expect([...mean.get('w')!.dataSync()]).toEqual([2, 4]);
    expect(acc.count).toBe(0);
  });

  it('k micro-batches step exactly like one batch k times as large', () => {
    class Reg extends Module {
      readonly fc: Linear;
      constructor() {
        super();
        this.fc = this.registerModule('fc', new Linear(3, 2, new Rng(7)));
      }
    }
    const xs = [
      [1, 0, 2],
      [0.5, -1, 1],
      [2, 1, 0],
      [-1, 0.5, 0.5],
    ];
    const ys = [
      [1, 0],
      [0, 1],
      [1, 1],
      [0, 0],
    ];
    type Batch = { x: number[][]; y: number[][] };
    const forward = (m: Reg) => (batch: Batch) => {
      const loss = tf.tidy(() => tf.mean(tf.square(tf.sub(m.fc.forward(tf.tensor2d(batch.x)), tf.tensor2d(batch.y))))) as tf.Scalar;
      return combineLosses({ mse: loss });
    };
    const big = new Reg();
    const small = new Reg();
    const t1 = new Trainer<Batch>({ model: big, forward: forward(big), stepsPerEpoch: 1, optimizer: { lr: 0.05 }, maxGradNorm: 0.5 });
    const t2 = new Trainer<Batch>({
      model: small,
      forward: forward(small),
      stepsPerEpoch: 1,
      optimizer: { lr: 0.05 },
      maxGradNorm: 0.5,
      accumulationSteps: 2,
    });
    for (let s = 0; s < 3; s++) {
      const r1 = t1.trainStep([{ x: xs, y: ys }]);
      const r2 = t2.trainStep([
        { x: xs.slice(0, 2), y: ys.slice(0, 2) },
        { x: xs.slice(2), y: ys.slice(2) },
      ]);
      expect(r2.loss).toBeCloseTo(r1.loss, 5);
      expect(r2.gradNorm!).toBeCloseTo(r1.gradNorm!, 5);
    }
    const a = big.fc.weight.dataSync();
    const b = small.fc.weight.dataSync();
    for (let i = 0; i < a.length; i++) expect(b[i]).toBeCloseTo(a[i]!, 5);
    t1.dispose();
    t2.dispose();
  });
});

describe('AdamW heap guard', () => {
  it('refuses on wasm, before allocating, an optimizer whose states would not fit the heap', async () => {
    // A stand-in for a base-size model's weights: only size and rank are read before the check.
    const huge = { size: 400_000_000, rank: 2 } as unknown as tf.Variable;
    await initRuntime({ backend: 'wasm' });
    const before = tf.memory().numTensors;
    let err: unknown;
    try {
      new AdamW([['encoder.weight', huge]]);
    } catch (e) {
      err = e;
    }
    expect(isVlError(err, 'WASM_HEAP_LIMIT')).toBe(true);
    expect((err as Error).message).toMatch(/AdamW over 400,000,000 parameters/);
    expect((err as Error).message).toMatch(/tfjs-node/);
    expect(tf.memory().numTensors).toBe(before);
    await initRuntime({ backend: 'cpu' });
    expect(() => new AdamW([['encoder.weight', huge]])).not.toThrow();
  });
});
