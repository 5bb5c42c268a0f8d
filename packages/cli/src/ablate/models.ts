// Model adapters for `vl ablate`: how to build, train and evaluate one variant of a model for one
// seed. ALBEF is the first; another model adds an adapter with the same shape and a name in the
// config schema's `model` enum.
import * as tf from '@tensorflow/tfjs-core';
import { Albef, type AlbefBatch, albefConfig, reinitAlbef, albefRetrievalScores, itcRetrievalMetrics, retrievalMetrics } from '@vl/albef';
import { Rng } from '@vl/core';
import { type StepRecord, Trainer } from '@vl/core/node';
import type { AblationConfig, ResolvedVariant } from './config.js';
import { pairBatches, type PreparedData } from './data.js';

/** One step of the loss curve. */
export interface CurvePoint {
  step: number;
  loss: number;
  losses: Record<string, number>;
}

/** A trained model, ready to evaluate under several evaluation settings. */
export interface TrainedRun {
  curve: CurvePoint[];
  trainSeconds: number;
  evaluate(variant: ResolvedVariant): Record<string, number>;
  dispose(): void;
}

export interface AblationModelAdapter {
  name: string;
  train(
    config: AblationConfig,
    variant: ResolvedVariant,
    seed: number,
    data: PreparedData,
    onStep?: (r: StepRecord) => void,
  ): Promise<TrainedRun>;
}

export const albefAdapter: AblationModelAdapter = {
  name: 'albef',
  async train(config, variant, seed, data, onStep) {
    const mc = config.modelConfig;
    const modelConfig = albefConfig(mc.preset, {
      albefConfig: { ...mc.albefConfig, ...(variant.queueSize !== undefined ? { queueSize: variant.queueSize } : {}) },
      bertConfig: {
        ...mc.bertConfig,
        vocabSize: data.vocabSize,
        maxPositionEmbeddings: Math.max(mc.bertConfig.maxPositionEmbeddings ?? 0, data.train.captions.seqLength),
      },
      visionConfig: { ...mc.visionConfig, imgSize: data.train.images.size },
      tokens: data.tokens,
    });
    modelConfig.albefConfig.imageRes = data.train.images.size;
    const root = new Rng(seed);
    const model = new Albef(modelConfig, root.fork('init'), {
      objectives: variant.objectives,
      negatives: variant.negatives,
      distill: variant.distill,
      useQueue: variant.useQueue,
    });
    if (mc.initStd !== undefined) reinitAlbef(model, mc.initStd, root.fork('reinit'));
    const t = variant.train;
    const pairs = data.train.captions.imageOf.length;
    const stepsPerEpoch = Math.max(1, Math.floor(pairs / t.batchSize));
    const curve: CurvePoint[] = [];
    const trainer = new Trainer<AlbefBatch>({
      model,
      forward: (batch, ctx) => model.forward(batch, ctx),
      afterStep: () => model.afterStep(),
      stepsPerEpoch: t.alphaRampSteps ?? stepsPerEpoch,
      optimizer: { lr: t.lr, weightDecay: t.weightDecay },
      schedule: { kind: 'cosine', lr: t.lr, minLr: t.minLr, totalSteps: t.steps, warmupSteps: t.warmupSteps, warmupInitLr: t.minLr },
      maxGradNorm: t.maxGradNorm,
      alpha: variant.distill ? modelConfig.albefConfig.alpha : 0,
      seed: root.fork('trainer').seed(),
      onProgress: ({ record }) => {
        curve.push({ step: record.step, loss: record.loss, losses: record.losses });
        onStep?.(record);
      },
    });
    const started = performance.now();
    await trainer.fit((epoch) => pairBatches(data.train, t.batchSize, seed, epoch), { maxSteps: t.steps, resume: false });
    const trainSeconds = (performance.now() - started) / 1000;
    return {
      curve,
      trainSeconds,
      evaluate(v) {
        const ev = data.eval;
        const pixels = tf.tensor4d(ev.images.pixels, [ev.images.count, 3, ev.images.size, ev.images.size]);
        try {
          const scores = albefRetrievalScores(
            model,
            pixels,
            { inputIds: ev.captions.inputIds, attentionMask: ev.captions.attentionMask, seqLength: ev.captions.seqLength },
            { k: v.eval.k },
          );
          const r = retrievalMetrics(scores, ev.captions.imageOf);
          const itc = itcRetrievalMetrics(scores, ev.captions.imageOf);
          return {
            tr_r1: r.imageToText.recall[1]!,
            tr_r5: r.imageToText.recall[5]!,
            tr_r10: r.imageToText.recall[10]!,
            ir_r1: r.textToImage.recall[1]!,
            ir_r5: r.textToImage.recall[5]!,
            ir_r10: r.textToImage.recall[10]!,
            r_mean: r.meanRecall,
            r_mean_itc: itc.meanRecall,
            final_loss: mean(curve.slice(-10).map((p) => p.loss)),
          };
        } finally {
          pixels.dispose();
        }
      },
      dispose() {
        model.dispose();
      },
    };
  },
};

function mean(xs: number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN;
}

export const ADAPTERS: Record<AblationConfig['model'], AblationModelAdapter> = { albef: albefAdapter };
