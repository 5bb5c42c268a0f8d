// Training only some parameters (stagewise pretraining, VLMo stage 2): parameters frozen by name
// pattern (Module.freeze) stay bit-identical through Trainer steps with weight decay and get no
// optimizer state; rows of a trained table that the loss never reads move by exactly 0 when the table
// is exempt from decay (Adam's update of a zero gradient is 0), and drift when it is decayed.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { Embedding, Linear } from '../../nn/layers.js';
import { Module } from '../../nn/module.js';
import { combineLosses, type ForwardResult } from '../../objectives/losses.js';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { Trainer } from '../../node/trainer.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

/** Two "experts" over a shared table: the loss reads table rows 0–1 only and both linears. */
class TwoExperts extends Module {
  readonly table: Embedding;
  readonly a: Linear;
  readonly b: Linear;
  constructor(seed: number) {
    super();
    const rng = new Rng(seed);
    this.table = this.registerModule('table', new Embedding(4, 3, rng));
    this.a = this.registerModule('expert_a', new Linear(3, 3, rng));
    this.b = this.registerModule('expert_b', new Linear(3, 1, rng));
  }
  forward(x: tf.Tensor): ForwardResult {
    const fit = tf.tidy(() => {
      const rows = tf.gather(this.table.weight, tf.tensor1d([0, 1, 0], 'int32')); // [3, 3]
      const y = this.b.forward(tf.relu(this.a.forward(tf.add(x, rows))));
      return tf.mean(tf.square(tf.sub(y, 1))) as tf.Scalar;
    });
    return combineLosses({ fit });
  }
}

function snapshot(m: Module): Map<string, Float32Array> {
  return new Map([...m.stateDict()].map(([k, t]) => [k, t.dataSync().slice() as Float32Array]));
}

const same = (x: Float32Array, y: Float32Array) => x.length === y.length && x.every((v, i) => Object.is(v, y[i]));

async function train(m: TwoExperts, noDecay: string[]) {
  const x = tf.tensor2d([0.1, -0.2, 0.3, 0.5, 0.4, -0.1, -0.3, 0.2, 0.6], [3, 3]);
  const trainer = new Trainer<tf.Tensor>({
    model: m,
    forward: (batch) => m.forward(batch),
    stepsPerEpoch: 1,
    optimizer: { lr: 0.05, weightDecay: 0.1, noDecay },
  });
  const { records } = await trainer.fit(() => [x], { maxSteps: 4 });
  const state = trainer.optimizer.stateDict();
  const moments = [...state.tensors.keys()];
  trainer.dispose();
  x.dispose();
  return { records, moments };
}

describe('training only some parameters', () => {
  it('frozen parameters stay bit-identical and have no optimizer state; unread table rows move by 0 without decay', async () => {
    const m = new TwoExperts(3);
    expect(m.freeze('expert_a.*')).toEqual(['expert_a.weight', 'expert_a.bias']);
    const before = snapshot(m);
    const { records, moments } = await train(m, ['table.weight']);
    const after = snapshot(m);
    expect(records.at(-1)!.loss).toBeLessThan(records[0]!.loss);
    for (const k of ['expert_a.weight', 'expert_a.bias']) expect(same(after.get(k)!, before.get(k)!), k).toBe(true);
    expect(moments.some((k) => k.includes('expert_a'))).toBe(false);
    expect(same(after.get('expert_b.weight')!, before.get('expert_b.weight')!)).toBe(false);
    const rows = (t: Float32Array, from: number, to: number) => t.slice(from * 3, to * 3);
    expect(same(rows(after.get('table.weight')!, 2, 4), rows(before.get('table.weight')!, 2, 4))).toBe(true);
    expect(same(rows(after.get('table.weight')!, 0, 2), rows(before.get('table.weight')!, 0, 2))).toBe(false);
    m.dispose();
  });

  it('with weight decay on the table, its unread rows drift (hence the noDecay exemption)', async () => {
    const m = new TwoExperts(3);
    const before = snapshot(m).get('table.weight')!;
    await train(m, []);
    const after = m.table.weight.dataSync();
    // p ← p·(1 − lr·λ) per step, for 4 steps, with no Adam update on rows 2–3.
    for (let i = 6; i < 12; i++) expect(after[i]).toBeCloseTo(before[i]! * (1 - 0.05 * 0.1) ** 4, 6);
    m.dispose();
  });
});
