// VLMo's `vl ablate` adapter on tiny data: options and modelConfig checked before training, stagewise runs
// go through every stage with its own objectives (freezing per stage is tested in stages.test.ts), the
// curve runs across stages, evaluation returns the runner's metrics, and nothing leaks.
import * as tf from '@tensorflow/tfjs-core';
import { type AblationData, type AblationVariant, initRuntime } from '@vl/core';
import { tinyAblationData } from '@vl/testing/models';
import { beforeAll, describe, expect, it } from 'vitest';
import { vlmoAblation, vlmoAblationConfig, vlmoAblationOptions, vlmoPairBatches } from '../ablation.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

/** Random "scenes": 8 train images with 2 captions each, 4 eval images with 1 each, 32 px, captions of length 9. */
const tinyData = (): AblationData => tinyAblationData({ imageSize: 32, seqLength: 9, lengthSpread: 5 });

function variant(options: Record<string, unknown>, steps = 2): AblationVariant {
  return {
    name: 'v',
    objectives: {},
    negatives: 'hard',
    distill: false,
    queueSize: undefined,
    useQueue: false,
    options,
    train: { steps, batchSize: 4, lr: 1e-3, minLr: 1e-5, weightDecay: 0.01, warmupSteps: 1 },
    eval: { k: 2 },
  };
}

describe('VLMo ablation options and model config', () => {
  it('defaults to image-text pretraining only; stagewise lists the stages, ending with 3', () => {
    expect(vlmoAblationOptions({})).toEqual({ stages: [3], stageSteps: {} });
    expect(vlmoAblationOptions({ stages: [1, 2, 3], stageSteps: { 1: 5 } })).toEqual({ stages: [1, 2, 3], stageSteps: { 1: 5 } });
    expect(() => vlmoAblationOptions({ stages: [2, 1, 3] })).toThrow(/increasing list/);
    expect(() => vlmoAblationOptions({ stages: [1, 2] })).toThrow(/ending with 3/);
    expect(() => vlmoAblationOptions({ stages: [3], stageSteps: { 3: 5 } })).toThrow(/stages 1 and 2/);
    expect(() => vlmoAblationOptions({ stage: [3] })).toThrow(/unknown VLMo option\(s\) stage/);
  });

  it('sizes the preset for the data and changes single fields of its sections', () => {
    const data = tinyData();
    const config = vlmoAblationConfig({ preset: 'tiny', transformerKwargs: { vlffnStartLayerIndex: 4 } }, data);
    expect(config.transformerKwargs.vlffnStartLayerIndex).toBe(4);
    expect(config.transformerKwargs.depth).toBe(4);
    expect([config.vlmoConfig.vocabSize, config.vlmoConfig.maxTextLen, config.vlmoConfig.imageSize]).toEqual([50, 9, 32]);
    expect(() => vlmoAblationConfig({ preset: 'huge' }, data)).toThrow(/'huge' is not a VLMo preset/);
    expect(() => vlmoAblationConfig({ preset: 'tiny', albefConfig: {} }, data)).toThrow(/unknown modelConfig section 'albefConfig'/);
    expect(() => vlmoAblationConfig({ preset: 'tiny', transformerKwargs: { depth: 'x' } }, data)).toThrow();
  });

  it('pair batches cover each caption once per epoch, with its own image', () => {
    const data = tinyData();
    const batches = [...vlmoPairBatches(data.train, 4, 0, 'e0')];
    expect(batches.length).toBe(4);
    const seen = batches.flatMap((b) => Array.from({ length: 4 }, (_, k) => Array.from(b.inputIds.subarray(k * 9, k * 9 + 9)).join()));
    expect(new Set(seen).size).toBe(16);
  });
});

describe('VLMo ablation runs', () => {
  it('direct (stage 3) and stagewise (1 → 2 → 3) train, evaluate and free everything', async () => {
    const data = tinyData();
    const before = tf.memory().numTensors;
    const direct = await vlmoAblation.train({ preset: 'tiny' }, variant({}), 0, data);
    expect(direct.curve.map((p) => p.step)).toEqual([1, 2]);
    expect(Object.keys(direct.curve[0]!.losses).sort()).toEqual(['itc', 'itm', 'mlm']);
    const metrics = direct.evaluate(variant({}));
    for (const k of ['tr_r1', 'ir_r1', 'r_mean', 'r_mean_itc', 'final_loss']) expect(Number.isFinite(metrics[k]), k).toBe(true);
    expect(metrics.r_mean).toBeGreaterThanOrEqual(0);
    expect(metrics.r_mean).toBeLessThanOrEqual(100);
    direct.dispose();

    expect(vlmoAblation.plannedSteps?.(variant({ stages: [1, 2, 3], stageSteps: { 1: 2, 2: 1 } }))).toBe(5);
    expect(vlmoAblation.plannedSteps?.(variant({ stages: [2, 3] }))).toBe(4);
    const staged = await vlmoAblation.train({ preset: 'tiny' }, variant({ stages: [1, 2, 3], stageSteps: { 1: 2, 2: 1 } }), 0, data);
    // One curve across the stages: 2 MIM steps, 1 text-MLM step, then 2 image-text steps.
    expect(staged.curve.map((p) => p.step)).toEqual([1, 2, 3, 4, 5]);
    expect(staged.curve.map((p) => Object.keys(p.losses).sort().join('+'))).toEqual([
      'mim',
      'mim',
      'textmlm',
      'itc+itm+mlm',
      'itc+itm+mlm',
    ]);
    // Same seed, different pretraining: different weights, so different scores.
    const stagedMetrics = staged.evaluate(variant({}));
    expect(stagedMetrics.final_loss).not.toBe(metrics.final_loss);
    staged.dispose();
    expect(tf.memory().numTensors).toBe(before);
  }, 120_000);
});
