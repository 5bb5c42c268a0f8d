// The pretraining forward and a Trainer step on the wasm backend (core's kernels, @vl/accel when
// installed): the same losses as on cpu for the same seed, and no tensor leaks per step.
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, Rng } from '@vl/core';
import { Trainer } from '@vl/core/node';
import { describe, expect, it } from 'vitest';
import { blipPreset } from '../config.js';
import { BlipForPretraining, type PretrainBatch } from '../pretraining.js';

function batch(): PretrainBatch {
  const b = 4;
  const t = 6;
  const rng = new Rng(2);
  return {
    pixels: Float32Array.from({ length: b * 3 * 32 * 32 }, () => rng.normal()),
    imageSize: 32,
    inputIds: Int32Array.from({ length: b * t }, (_, i) => (i % t === 0 ? 4 : i % t === t - 1 ? 3 : 10 + ((i * 7) % 50))),
    attentionMask: new Int32Array(b * t).fill(1),
    batchSize: b,
    seqLength: t,
  };
}

async function firstLosses(backend: 'cpu' | 'wasm'): Promise<Record<string, number>> {
  await initRuntime({ backend });
  const m = new BlipForPretraining(blipPreset('tiny'), { queueSize: 8 }, new Rng(0), 98);
  const out = m.forward(batch(), { rng: new Rng(1), alpha: 0.4 });
  const losses = Object.fromEntries(Object.entries(out.losses).map(([k, v]) => [k, v.dataSync()[0] as number]));
  tf.dispose([out.loss, ...Object.values(out.losses)]);
  m.dispose();
  return losses;
}

describe('BlipForPretraining on wasm', () => {
  it('gives the cpu losses for the same seed and trains without leaks', async () => {
    const cpu = await firstLosses('cpu');
    const wasm = await firstLosses('wasm');
    for (const k of ['itc', 'itm', 'lm']) expect(Math.abs((wasm[k] as number) - (cpu[k] as number)), k).toBeLessThan(1e-3);
    const m = new BlipForPretraining(blipPreset('tiny'), { queueSize: 8 }, new Rng(0), 98);
    const trainer = new Trainer<PretrainBatch>({
      model: m,
      forward: (b, ctx) => m.forward(b, ctx),
      afterStep: () => m.afterStep(),
      stepsPerEpoch: 2,
      optimizer: { lr: 1e-3 },
    });
    const data = batch();
    trainer.trainStep([data]);
    const before = tf.memory().numTensors;
    const r = trainer.trainStep([data]);
    expect(tf.memory().numTensors).toBe(before);
    expect(Number.isFinite(r.loss)).toBe(true);
    trainer.optimizer.dispose();
    m.dispose();
  });
});
