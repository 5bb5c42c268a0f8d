// ALBEF's ablation adapter (the model contract's `ablation`, run by `vl ablate`): builds one variant of
// the model for one seed, trains it with core's Trainer on tokenised (image, caption) pairs, and
// evaluates retrieval (ITC ranking + ITM re-ranking).
import * as tf from '@tensorflow/tfjs-core';
import {
  type AblationAdapter,
  type AblationData,
  type AblationModelConfig,
  type CurvePoint,
  retrievalRunMetrics,
  Rng,
  VlError,
} from '@vl/core';
import { Trainer } from '@vl/core/node';
import { ALBEF_IMAGE_NORM, ALBEF_PRESETS, albefConfig, type AlbefPresetName } from './config.js';
import { Albef, type AlbefBatch, reinitAlbef } from './model.js';
import { albefRetrievalScores, itcRetrievalMetrics, retrievalMetrics } from './retrieval.js';

/** One epoch's batches of (image, caption) pairs, shuffled by (seed, epoch); a last partial batch is dropped. */
export function* pairBatches(data: AblationData['train'], batchSize: number, seed: number, epoch: number): Generator<AlbefBatch> {
  const { images, captions: caps } = data;
  const n = caps.imageOf.length;
  const order = new Rng(seed).fork(`epoch-${epoch}`).shuffle(Array.from({ length: n }, (_, i) => i));
  const L = caps.seqLength;
  const per = 3 * images.size * images.size;
  for (let s = 0; s + batchSize <= n; s += batchSize) {
    const idx = order.slice(s, s + batchSize);
    const pixels = new Float32Array(batchSize * per);
    const inputIds = new Int32Array(batchSize * L);
    const attentionMask = new Int32Array(batchSize * L);
    const imageIds: number[] = [];
    idx.forEach((p, k) => {
      const img = caps.imageOf[p]!;
      pixels.set(images.pixels.subarray(img * per, (img + 1) * per), k * per);
      inputIds.set(caps.inputIds.subarray(p * L, (p + 1) * L), k * L);
      attentionMask.set(caps.attentionMask.subarray(p * L, (p + 1) * L), k * L);
      imageIds.push(img);
    });
    // A batch where every pair shows one image has no ITM negative; skip it (never happens with ≥ 2 images per batch).
    if (new Set(imageIds).size < 2) continue;
    yield { pixels: { data: pixels, shape: [batchSize, 3, images.size, images.size] }, inputIds, attentionMask, seqLength: L, imageIds };
  }
}

const SECTIONS = ['albefConfig', 'bertConfig', 'visionConfig'] as const;

/** The ablation config's modelConfig for ALBEF: preset tiny|base, initStd, and numeric fields of the three sections. */
export function checkAlbefModelConfig(mc: AblationModelConfig): void {
  const bad = (message: string) =>
    new VlError('CONFIG_INVALID', message, { subject: 'ablation config modelConfig', hint: 'see docs/ablations.md for the ALBEF fields' });
  if (!(mc.preset in ALBEF_PRESETS)) throw bad(`preset '${mc.preset}' is not an ALBEF preset (${Object.keys(ALBEF_PRESETS).join(', ')})`);
  for (const [key, value] of Object.entries(mc)) {
    if (key === 'preset' || key === 'initStd') continue;
    if (!(SECTIONS as readonly string[]).includes(key)) throw bad(`unknown section '${key}' (ALBEF has ${SECTIONS.join(', ')})`);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad(`${key} must be an object of numbers`);
    for (const [field, v] of Object.entries(value)) {
      if (typeof v !== 'number') throw bad(`${key}.${field} must be a number, got ${JSON.stringify(v)}`);
    }
  }
}

export const albefAblation: AblationAdapter = {
  imageNorm: ALBEF_IMAGE_NORM,
  async train(mc, variant, seed, data, onStep) {
    checkAlbefModelConfig(mc);
    const section = (k: string) => (mc[k] ?? {}) as Record<string, number>;
    const bert = section('bertConfig');
    const modelConfig = albefConfig(mc.preset as AlbefPresetName, {
      albefConfig: { ...section('albefConfig'), ...(variant.queueSize !== undefined ? { queueSize: variant.queueSize } : {}) },
      bertConfig: {
        ...bert,
        vocabSize: data.vocabSize,
        maxPositionEmbeddings: Math.max(bert.maxPositionEmbeddings ?? 0, data.train.captions.seqLength),
      },
      visionConfig: { ...section('visionConfig'), imgSize: data.train.images.size },
      tokens: data.tokens,
    });
    modelConfig.albefConfig.imageRes = data.train.images.size;
    const root = new Rng(seed);
    const model = new Albef(modelConfig, root.fork('init'), {
      objectives: variant.objectives,
      negatives: variant.negatives,
      randomNegativesSteps: variant.randomNegativesSteps,
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
    try {
      await trainer.fit((epoch) => pairBatches(data.train, t.batchSize, seed, epoch), { maxSteps: t.steps, resume: false });
    } catch (err) {
      model.dispose();
      throw err;
    } finally {
      // The optimizer's moment tensors: not needed once trained (they leaked with every run before).
      trainer.dispose();
    }
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
          return retrievalRunMetrics(r, itc.meanRecall, curve);
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
