// VLMo's ablation adapter (the model contract's `ablation`, run by `vl ablate`): builds one variant for one
// seed, trains it stage by stage with core's Trainer on the runner's tokenised synthetic scenes, and evaluates
// retrieval (dual-encoder ranking, ITM re-ranking of the top-k). Variant options: `stages` (default [3]:
// image-text pretraining from scratch; [1, 2, 3]: the paper's stagewise pretraining, §3.3) and `stageSteps`
// (steps of stages 1 and 2; stage 3 takes the variant's train.steps). Architecture changes (e.g. the VL-FFN
// start layer) come through modelConfig's vlmoConfig / transformerKwargs sections.
import * as tf from '@tensorflow/tfjs-core';
import {
  type AblationAdapter,
  type AblationData,
  type AblationModelConfig,
  type CurvePoint,
  PatchCodebookTokenizer,
  redrawWeights,
  retrievalRunMetrics,
  Rng,
  VlError,
} from '@vl/core';
import { Trainer } from '@vl/core/node';
import { parseVlmoConfig, VLMO_IMAGE_NORM, type VlmoConfig, type VlmoPresetName, vlmoPreset } from './config.js';
import { Vlmo } from './model.js';
import { type VlmoPretrainBatch, VlmoPretrainer } from './pretraining.js';
import { vlmoRetrievalMetrics, vlmoRetrievalScores } from './retrieval.js';
import { VLMO_STAGES, type VlmoStage, vlmoStageConfig } from './stages.js';
import { VLMO_TINY_VISUAL_VOCAB } from './train.js';

const SECTIONS = ['vlmoConfig', 'transformerKwargs'] as const;
const PRESETS: readonly VlmoPresetName[] = ['tiny', 'base', 'basePlus', 'large'];

export interface VlmoAblationOptions {
  /** Pretraining stages in order; each starts from the previous one's weights. */
  stages: VlmoStage[];
  /** Steps of stages 1 and 2 (default: the variant's train.steps). */
  stageSteps: Partial<Record<VlmoStage, number>>;
}

function invalid(message: string, subject = 'ablation config'): VlError {
  return new VlError('CONFIG_INVALID', message, { subject, hint: 'see docs/vlmo.md, "Ablations"' });
}

/** The variant's `options`, checked: stages a non-empty increasing subset of 1, 2, 3 that ends with 3. */
export function vlmoAblationOptions(options: Record<string, unknown>): VlmoAblationOptions {
  const unknown = Object.keys(options).filter((k) => k !== 'stages' && k !== 'stageSteps');
  if (unknown.length) throw invalid(`unknown VLMo option(s) ${unknown.join(', ')} (VLMo has stages, stageSteps)`, 'options');
  const stages = (options.stages ?? [3]) as unknown;
  if (
    !Array.isArray(stages) ||
    stages.length === 0 ||
    !stages.every((s, i) => (s === 1 || s === 2 || s === 3) && (i === 0 || s > (stages[i - 1] as number))) ||
    stages[stages.length - 1] !== 3
  ) {
    throw invalid(
      `stages must be an increasing list of 1, 2, 3 ending with 3 (the image-text stage), got ${JSON.stringify(stages)}`,
      'options.stages',
    );
  }
  const stageSteps = (options.stageSteps ?? {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(stageSteps)) {
    if (!['1', '2'].includes(k) || !(Number.isInteger(v) && (v as number) >= 1)) {
      throw invalid(`stageSteps takes positive step counts for stages 1 and 2, got ${k}: ${JSON.stringify(v)}`, 'options.stageSteps');
    }
  }
  return { stages: stages as VlmoStage[], stageSteps: stageSteps as Partial<Record<VlmoStage, number>> };
}

/** The architecture: a preset sized for the data, with the sections' fields changed (validated by VLMo's config schema). */
export function vlmoAblationConfig(mc: AblationModelConfig, data: AblationData): VlmoConfig {
  if (!PRESETS.includes(mc.preset as VlmoPresetName)) throw invalid(`preset '${mc.preset}' is not a VLMo preset (${PRESETS.join(', ')})`);
  for (const key of Object.keys(mc)) {
    if (key !== 'preset' && key !== 'initStd' && !(SECTIONS as readonly string[]).includes(key)) {
      throw invalid(`unknown modelConfig section '${key}' (VLMo has ${SECTIONS.join(', ')})`);
    }
  }
  if (mc.initStd !== undefined && !(typeof mc.initStd === 'number' && mc.initStd > 0)) throw invalid('initStd must be a positive number');
  const base = vlmoPreset(mc.preset as VlmoPresetName, {
    vocabSize: data.vocabSize,
    imageSize: data.train.images.size,
    maxTextLen: data.train.captions.seqLength,
  });
  const { bertConfig: _derived, ...rest } = base;
  const section = (k: (typeof SECTIONS)[number]) => (mc[k] ?? {}) as Record<string, unknown>;
  const config = parseVlmoConfig(
    {
      ...rest,
      vlmoConfig: { ...base.vlmoConfig, ...section('vlmoConfig') },
      transformerKwargs: { ...base.transformerKwargs, ...section('transformerKwargs') },
    },
    'ablation modelConfig',
  );
  return { ...config, tokens: data.tokens };
}

/** One epoch's batches of (image, caption) pairs, shuffled by (seed, stage, epoch); a last partial batch is dropped. */
export function* vlmoPairBatches(train: AblationData['train'], batchSize: number, seed: number, tag: string): Generator<VlmoPretrainBatch> {
  const { images, captions } = train;
  const n = captions.imageOf.length;
  const order = new Rng(seed).fork(tag).shuffle(Array.from({ length: n }, (_, i) => i));
  const L = captions.seqLength;
  const per = 3 * images.size * images.size;
  for (let s = 0; s + batchSize <= n; s += batchSize) {
    const pixels = new Float32Array(batchSize * per);
    const inputIds = new Int32Array(batchSize * L);
    const attentionMask = new Int32Array(batchSize * L);
    order.slice(s, s + batchSize).forEach((p, k) => {
      const img = captions.imageOf[p]!;
      pixels.set(images.pixels.subarray(img * per, (img + 1) * per), k * per);
      inputIds.set(captions.inputIds.subarray(p * L, (p + 1) * L), k * L);
      attentionMask.set(captions.attentionMask.subarray(p * L, (p + 1) * L), k * L);
    });
    yield { pixels, imageSize: images.size, batchSize, inputIds, attentionMask, seqLength: L };
  }
}

/**
 * What `initStd` leaves as VLMo initialises it: the layer-scale gammas (0.1 at init: they set how much each
 * branch adds to the residual), the contrastive temperatures, and the relative position tables (zeros).
 */
export const VLMO_REDRAW_KEEP = ['**.gamma_1', '**.gamma_2', 'logit_scale', 'logit_vl_scale', '**relative_position_bias_table'] as const;

/** Copies every tensor the next stage's model has under the same name and shape (its new heads stay fresh). */
function carryWeights(from: Vlmo, to: Vlmo): void {
  const ours = to.stateDict();
  const load = new Map<string, tf.Tensor>();
  for (const [key, t] of from.stateDict()) {
    const target = ours.get(key);
    if (target && target.shape.join() === t.shape.join()) load.set(key, t);
  }
  to.loadStateDict(load, { strict: false, source: `stage model (${load.size} tensors)` });
}

export const vlmoAblation: AblationAdapter = {
  imageNorm: VLMO_IMAGE_NORM,
  plannedSteps(variant) {
    const { stages, stageSteps } = vlmoAblationOptions(variant.options);
    return stages.reduce((sum, s) => sum + (s === 3 ? variant.train.steps : (stageSteps[s] ?? variant.train.steps)), 0);
  },
  async train(mc, variant, seed, data, onStep) {
    const { stages, stageSteps } = vlmoAblationOptions(variant.options);
    const base = vlmoAblationConfig(mc, data);
    const visualVocabSize = base.vlmoConfig.visualVocabSize ?? (base.transformerKwargs.embedDim <= 64 ? VLMO_TINY_VISUAL_VOCAB : 8192);
    const root = new Rng(seed);
    const t = variant.train;
    const curve: CurvePoint[] = [];
    let model: Vlmo | null = null;
    let offset = 0;
    const started = performance.now();
    try {
      for (const stage of stages) {
        const next = new Vlmo(vlmoStageConfig(base, stage, { visualVocabSize }), root.fork(`init-${stage}`));
        // Each stage's new heads are re-drawn too; the weights carried over from the last stage then replace the rest.
        if (mc.initStd !== undefined) redrawWeights(next, mc.initStd, root.fork(`redraw-${stage}`), { keep: VLMO_REDRAW_KEEP });
        if (model) {
          carryWeights(model, next);
          model.dispose();
        }
        model = next;
        const spec = VLMO_STAGES[stage];
        model.freeze([...spec.freeze]);
        const tokenizer =
          stage === 1
            ? new PatchCodebookTokenizer({
                patchSize: model.dims.patchSize,
                channels: model.dims.inChans,
                vocabSize: visualVocabSize,
                rng: root.fork('visual-tokenizer'),
              })
            : null;
        const current = model;
        const pretrainer = new VlmoPretrainer(current, { stage, objectives: variant.objectives, visualTokenizer: tokenizer ?? undefined });
        const steps = stage === 3 ? t.steps : (stageSteps[stage] ?? t.steps);
        const stepOffset = offset;
        const trainer = new Trainer<VlmoPretrainBatch>({
          model: current,
          forward: (batch, ctx) => pretrainer.forward(batch, ctx.rng),
          stepsPerEpoch: Math.max(1, Math.floor(data.train.captions.imageOf.length / t.batchSize)),
          // The official set_schedule: AdamW, betas (0.9, 0.98), eps 1e-8.
          optimizer: { lr: t.lr, betas: [0.9, 0.98], eps: 1e-8, weightDecay: t.weightDecay, noDecay: [...spec.noDecay] },
          schedule: { kind: 'cosine', lr: t.lr, minLr: t.minLr, totalSteps: steps, warmupSteps: t.warmupSteps, warmupInitLr: t.minLr },
          maxGradNorm: t.maxGradNorm,
          seed: root.fork(`trainer-${stage}`).seed(),
          onProgress: ({ record }) => {
            // One curve across the stages: steps continue from the previous stage's last.
            curve.push({ step: stepOffset + record.step, loss: record.loss, losses: record.losses });
            onStep?.({ ...record, step: stepOffset + record.step });
          },
        });
        try {
          await trainer.fit((epoch) => vlmoPairBatches(data.train, t.batchSize, seed, `stage-${stage}-epoch-${epoch}`), {
            maxSteps: steps,
            resume: false,
          });
        } finally {
          trainer.dispose();
          tokenizer?.dispose();
        }
        current.unfreeze([...spec.freeze]);
        offset += steps;
      }
    } catch (err) {
      model?.dispose();
      throw err;
    }
    const trained = model!.eval();
    const trainSeconds = (performance.now() - started) / 1000;
    return {
      curve,
      trainSeconds,
      evaluate(v) {
        const ev = data.eval;
        const pixels = tf.tensor4d(ev.images.pixels, [ev.images.count, 3, ev.images.size, ev.images.size]);
        try {
          const texts = { inputIds: ev.captions.inputIds, attentionMask: ev.captions.attentionMask, seqLength: ev.captions.seqLength };
          const scores = vlmoRetrievalScores(trained, pixels, texts, { rerankK: v.eval.k });
          const r = vlmoRetrievalMetrics(scores, ev.captions.imageOf);
          const itc = vlmoRetrievalMetrics(scores, ev.captions.imageOf, [1, 5, 10], 'itc');
          return retrievalRunMetrics(r, itc.meanRecall, curve);
        } finally {
          pixels.dispose();
        }
      },
      dispose() {
        trained.dispose();
      },
    };
  },
};
