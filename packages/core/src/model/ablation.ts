// The ablation adapter a model package provides for `vl ablate` (the runner, data and reports are in
// @vl/cli): how to build, train and evaluate one variant of the model for one seed, and the metrics every
// retrieval adapter reports under the runner's names.
import type { StepRecord } from '../node/metrics-log.js';

/** [N, 3, S, S] normalised pixels. */
export interface AblationImageSet {
  pixels: Float32Array;
  count: number;
  size: number;
}

export interface AblationCaptionSet {
  /** [P, L] */
  inputIds: Int32Array;
  /** [P, L] */
  attentionMask: Int32Array;
  seqLength: number;
  /** Image index (into the image set) of each caption. */
  imageOf: Int32Array;
}

/** Tokenised synthetic scenes, shared by every variant and seed that uses the same data settings. */
export interface AblationData {
  key: string;
  vocabSize: number;
  tokens: { pad: number; unk: number; cls: number; sep: number; mask: number };
  train: { images: AblationImageSet; captions: AblationCaptionSet; noisy: number };
  eval: { images: AblationImageSet; captions: AblationCaptionSet };
  summary: { trainImages: number; trainCaptions: number; noisyCaptions: number; evalImages: number; evalCaptions: number };
}

/** The ablation config's `modelConfig`: a preset, an optional re-init std, and the model's config sections. */
export interface AblationModelConfig {
  preset: string;
  initStd?: number;
  [section: string]: unknown;
}

export interface AblationTrainSettings {
  steps: number;
  batchSize: number;
  lr: number;
  minLr: number;
  weightDecay: number;
  warmupSteps: number;
  alphaRampSteps?: number;
  maxGradNorm?: number;
}

/** One variant with every field resolved. */
export interface AblationVariant {
  name: string;
  objectives: Record<string, { enabled?: boolean; weight?: number }>;
  negatives: 'hard' | 'random';
  /**
   * With 'hard' negatives: optimizer steps at the start that draw random ITM negatives before mining starts
   * (absent or 0: mining from step 0). Adapters that mine negatives honour it (ALBEF); others ignore it.
   */
  randomNegativesSteps?: number;
  distill: boolean;
  queueSize: number | undefined;
  useQueue: boolean;
  /** The model's own switches from the config (`options:`), e.g. VLMo's `stages`; the adapter validates them. */
  options: Record<string, unknown>;
  train: AblationTrainSettings;
  eval: { k: number };
}

export interface CurvePoint {
  step: number;
  loss: number;
  losses: Record<string, number>;
}

/** A trained model, ready to evaluate under several evaluation settings. */
export interface TrainedRun {
  curve: CurvePoint[];
  trainSeconds: number;
  evaluate(variant: AblationVariant): Record<string, number>;
  dispose(): void;
}

export interface AblationAdapter {
  /** Image normalisation the model was trained with (the runner renders pixels with it). */
  imageNorm: { mean: readonly number[]; std: readonly number[] };
  /** Optimizer steps a variant trains in all (default `train.steps`; more when it trains in stages). */
  plannedSteps?(variant: AblationVariant): number;
  train(
    modelConfig: AblationModelConfig,
    variant: AblationVariant,
    seed: number,
    data: AblationData,
    onStep?: (r: StepRecord) => void,
  ): Promise<TrainedRun>;
}

/** Recall@K both ways and their mean, as the models' retrieval evaluations return them. */
export interface RecallSummary {
  imageToText: { recall: Readonly<Record<number, number>> };
  textToImage: { recall: Readonly<Record<number, number>> };
  meanRecall: number;
}

/** The mean loss of the last 10 steps (NaN for an empty curve): the runner's `final_loss`. */
export function finalLoss(curve: readonly CurvePoint[]): number {
  const last = curve.slice(-10);
  return last.length ? last.reduce((a, p) => a + p.loss, 0) / last.length : Number.NaN;
}

/**
 * The runner's retrieval metrics (`tr_*` image→text, `ir_*` text→image Recall@1/5/10, `r_mean` after ITM
 * re-ranking, `r_mean_itc` of the contrastive ranking alone) and `final_loss`.
 */
export function retrievalRunMetrics(reranked: RecallSummary, itcMeanRecall: number, curve: readonly CurvePoint[]): Record<string, number> {
  return {
    tr_r1: reranked.imageToText.recall[1]!,
    tr_r5: reranked.imageToText.recall[5]!,
    tr_r10: reranked.imageToText.recall[10]!,
    ir_r1: reranked.textToImage.recall[1]!,
    ir_r5: reranked.textToImage.recall[5]!,
    ir_r10: reranked.textToImage.recall[10]!,
    r_mean: reranked.meanRecall,
    r_mean_itc: itcMeanRecall,
    final_loss: finalLoss(curve),
  };
}
