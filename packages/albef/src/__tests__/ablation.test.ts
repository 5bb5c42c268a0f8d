// ALBEF's `vl ablate` adapter on tiny random data: the variant's ITM weight and random-negative warm-up
// reach the training forward (read back from what each step's negative sampler chose and from the
// per-step losses), and a trained run leaves no tensors behind.
import * as tf from '@tensorflow/tfjs-core';
import { type AblationData, type AblationVariant, initRuntime } from '@vl/core';
import type { StepRecord } from '@vl/core/node';
import { tinyAblationData } from '@vl/testing/models';
import { beforeAll, describe, expect, it } from 'vitest';
import { albefAblation } from '../ablation.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

/** Random "scenes": 8 train images with 2 captions each, 4 eval images with 1 each, 16 px, captions of length 8. */
const tinyData = (): AblationData => tinyAblationData({ imageSize: 16, seqLength: 8, lengthSpread: 4 });

function variant(over: Partial<AblationVariant>): AblationVariant {
  return {
    name: 'test',
    objectives: {},
    negatives: 'hard',
    distill: false,
    queueSize: 8,
    useQueue: true,
    options: {},
    train: { steps: 4, batchSize: 4, lr: 1e-3, minLr: 1e-5, weightDecay: 0.02, warmupSteps: 1 },
    eval: { k: 2 },
    ...over,
  };
}

/** Trains a variant for 4 steps; the per-step records (what the negative sampler chose is `metrics.itmHardNegatives`). */
async function train(v: AblationVariant): Promise<StepRecord[]> {
  const records: StepRecord[] = [];
  const before = tf.memory().numTensors;
  const run = await albefAblation.train({ preset: 'tiny', initStd: 0.2 }, v, 0, tinyData(), (r) => records.push(r));
  const metrics = run.evaluate(v);
  expect(Number.isFinite(metrics.r_mean)).toBe(true);
  run.dispose();
  expect(tf.memory().numTensors).toBe(before);
  return records;
}

describe('ALBEF ablation adapter', () => {
  it('randomNegativesSteps: random ITM negatives for the first steps, mined ones after; default mines from step 0', async () => {
    const hardAfter = (records: StepRecord[]) => records.map((r) => r.metrics.itmHardNegatives);
    // StepRecord.step is 1-based: optimizer steps 0 and 1 are the warm-up.
    expect(hardAfter(await train(variant({ randomNegativesSteps: 2 })))).toEqual([0, 0, 1, 1]);
    expect(hardAfter(await train(variant({})))).toEqual([1, 1, 1, 1]);
    expect(hardAfter(await train(variant({ negatives: 'random' })))).toEqual([0, 0, 0, 0]);
  });

  it("the variant's ITM weight scales the ITM term of every step's total loss", async () => {
    for (const r of await train(variant({ objectives: { itm: { weight: 4 } } }))) {
      const { itc, itm, mlm } = r.losses;
      expect(r.loss).toBeCloseTo(itc! + 4 * itm! + mlm!, 4);
    }
  });
});
