// @vl/vlmo: VLMo (microsoft/unilm `vlmo/`) on @vl/core — the Multiway transformer under the official key
// names, image-only / text-only / fusion modes, ITC / ITM / MLM heads, checkpoint loading (folders and
// released .pt files), verify, retrieval / ITM evaluation and the three pretraining stages. Importing it
// registers the model `vlmo` in @vl/core's registry (a declared side effect, see package.json).
import { registerModel } from '@vl/core';
import { vlmoModel } from './model-spec.js';

registerModel(vlmoModel);

export { initRuntime } from '@vl/core';
export { vlmoAblation, vlmoAblationConfig, vlmoAblationOptions, vlmoPairBatches, type VlmoAblationOptions } from './ablation.js';
export { vlmoModel } from './model-spec.js';
export {
  BEIT_VISUAL_VOCAB_SIZE,
  parseVlmoConfig,
  VLMO_ARCH_KWARGS,
  VLMO_ARCHS,
  VQAV2_LABEL_SIZE,
  VLMO_IMAGE_NORM,
  vlmoConfigFromJson,
  vlmoConfigSchema,
  vlmoConfigToJson,
  vlmoDims,
  vlmoPreset,
  type VlmoArch,
  type VlmoBertConfig,
  type VlmoConfig,
  type VlmoDims,
  type VlmoLossNames,
  type VlmoPresetName,
  type VlmoPresetOverrides,
  type VlmoSection,
  type VlmoTokens,
  type VlmoTransformerKwargs,
} from './config.js';
export {
  ItcHead,
  ItmHead,
  MultiwayTransformer,
  Vlmo,
  VlmoClassifier,
  VLMO_LAYER_PRESET,
  VLMO_SEPARATE_ATTENTION_LAYER,
  type FittedText,
  type VlmoForwardOptions,
  type VlmoFusionOutput,
  type VlmoImageOptions,
  type VlmoMode,
  type VlmoTextOptions,
  type VlmoUnimodalOutput,
} from './model.js';
export {
  allNumRelativeDistance,
  fusionRelativePositionIndex,
  imageRelativePositionIndex,
  numRelativeDistance,
  relativePositionBias,
  textRelativePositionIndex,
  type RelativeIndex,
} from './relative-position.js';
export {
  fromOfficialStateDict,
  loadVlmo,
  readVlmoConfig,
  saveVlmo,
  toOfficialStateDict,
  VLMO_LEGACY_KEYS,
  type LoadVlmoOptions,
} from './checkpoint.js';
export {
  parseReferenceInputs,
  verifyVlmo,
  VLMO_MLM_LOSS_SCALE,
  vlmoItcLoss,
  vlmoReferenceOutputs,
  type VerifyVlmoOptions,
  type VlmoReferenceInputs,
} from './verify.js';
export {
  topKIndices,
  VLMO_OUTSIDE_TOP_K,
  vlmoDualEncoderFeatures,
  vlmoItmEvaluation,
  vlmoItmLogits,
  vlmoRetrievalMetrics,
  vlmoRetrievalScores,
  type VlmoItmEvaluation,
  type VlmoRetrievalMetrics,
  type VlmoRetrievalOptions,
  type VlmoRetrievalScores,
  type VlmoTexts,
} from './retrieval.js';
export {
  evaluateVlmo,
  matchVlmo,
  vlmoEncodeTexts,
  vlmoTokenizer,
  type VlmoEvalOptions,
  type VlmoEvalReport,
  type VlmoEvalTask,
} from './evaluate.js';
export { VLMO_STAGES, VLMO_STAGES_LIST, vlmoStage, vlmoStageConfig, type VlmoStage, type VlmoStageSpec } from './stages.js';
export { VlmoPretrainer, vlmoMaskingGenerator, type VlmoPretrainBatch, type VlmoPretrainOptions } from './pretraining.js';
export {
  loadVlmoInit,
  pretrainVlmo,
  VLMO_TINY_TRAIN_TEXT_LEN,
  VLMO_TINY_VISUAL_VOCAB,
  vlmoModelDir,
  type VlmoInitReport,
  type VlmoTrainOptions,
  type VlmoTrainSummary,
} from './train.js';
export { majority, nlvr2Accuracy, vlmoNlvr2Loss, vlmoVqaLoss, vqaAccuracy } from './finetune.js';
export {
  loadImagePlanes,
  readAnswerList,
  readNlvr2File,
  readVqaFile,
  vqaTargets,
  type VlmoFinetuneTask,
  type VlmoNlvr2Example,
  type VlmoVqaExample,
} from './task-data.js';
export {
  finetuneVlmo,
  loadVlmoTaskSet,
  vlmoTaskConfig,
  vlmoTaskForward,
  vlmoTaskLogits,
  type VlmoFinetuneOptions,
  type VlmoFinetuneSummary,
  type VlmoTaskSet,
} from './task-train.js';
export { evaluateVlmoTask, type VlmoTaskEvalOptions, type VlmoTaskEvalReport } from './task-eval.js';
