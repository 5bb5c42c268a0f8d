// @vl/beit3: BEiT-3 (microsoft/unilm `beit3/` on torchscale v0.2.0) on @vl/core — the Multiway backbone
// under the official key names, the five fine-tuned models (retrieval, captioning with the official beam
// search, VQA, ImageNet classification, NLVR2), checkpoint loading (folders and released .pth files) and
// verify. Importing it registers the model `beit3` in @vl/core's registry (a declared side effect, see
// package.json).
import { registerModel } from '@vl/core';
import { beit3Model } from './model-spec.js';

registerModel(beit3Model);

export { initRuntime } from '@vl/core';
export { beit3Model } from './model-spec.js';
export {
  BEIT3_IMAGE_NORM,
  BEIT3_IMAGENET_NORM,
  BEIT3_NUM_CLASSES,
  BEIT3_TASKS,
  beit3ConfigFromJson,
  beit3ConfigSchema,
  beit3ConfigToJson,
  beit3Dims,
  beit3FactoryName,
  beit3Preset,
  parseBeit3Config,
  parseBeit3Factory,
  type Beit3CaptionGeneration,
  type Beit3Config,
  type Beit3Dims,
  type Beit3EncoderConfig,
  type Beit3Factory,
  type Beit3PresetName,
  type Beit3PresetOptions,
  type Beit3Size,
  type Beit3Task,
  type Beit3Tokens,
} from './config.js';
export {
  ATTN_MASK_VALUE,
  Beit3,
  BEIT3_LAYER_PRESET,
  Beit3ForCaptioning,
  Beit3ForImageClassification,
  Beit3ForRetrieval,
  Beit3ForVisualQuestionAnswering,
  Beit3ForVisualReasoning,
  Beit3Wrapper,
  buildBeit3,
  LANGUAGE,
  POSITION_OFFSET,
  Pooler,
  TwoLayerMlp,
  VISION,
  VisionEmbedding,
  type Beit3CaptioningInputs,
  type Beit3CaptioningOutput,
  type Beit3ClassifierOutput,
  type Beit3ClipOutput,
  type Beit3Inputs,
  type Beit3Model,
  type Beit3Output,
  type Beit3RetrievalImage,
  type Beit3RetrievalText,
} from './model.js';
export { generateCaptions, type Beit3GenerateOptions, type Beit3Generated } from './generation.js';
export {
  bertCaptioningLoss,
  captioningAccuracy,
  captioningTrainBatch,
  type BertCaptioningLossOptions,
  type CaptioningTrainBatchInputs,
} from './objectives.js';
export {
  detectBeit3Task,
  fromOfficialStateDict,
  loadBeit3,
  readBeit3Config,
  saveBeit3,
  toOfficialStateDict,
  type LoadBeit3Options,
} from './checkpoint.js';
export { beit3ReferenceOutputs, parseReferenceInputs, verifyBeit3, type Beit3ReferenceInputs, type VerifyBeit3Options } from './verify.js';
export {
  Beit3ForMaskedDataModeling,
  Beit3MdmPretrainer,
  MDM_DEFAULTS,
  MDM_OBJECTIVES,
  maskTextRows,
  mdmMaskingGenerator,
  type Beit3MdmBatch,
  type Beit3MdmConfig,
  type Beit3MdmSection,
  type MaskedText,
  type MdmMaskingOptions,
  type MdmObjective,
  type MdmPlan,
  type TextMaskingOptions,
} from './mdm.js';
export {
  BEIT3_MDM_TINY_TEXT_LEN,
  BEIT3_MDM_TINY_VISUAL_VOCAB,
  beit3MdmConfig,
  beit3ModelDir,
  loadBeit3Backbone,
  loadBeit3Mdm,
  pretrainBeit3Mdm,
  saveBeit3Mdm,
  trainBeit3VisualTokenizer,
  type Beit3MdmTrainOptions,
  type Beit3MdmTrainSummary,
  type Beit3TokenizerTrainOptions,
} from './mdm-train.js';
export { finetuneBeit3Retrieval, type Beit3RetrievalFinetuneOptions, type Beit3RetrievalFinetuneResult } from './retrieval-finetune.js';
export {
  BEIT3_CAPTIONING_MASK_PROB,
  evaluateBeit3Captioning,
  finetuneBeit3Captioning,
  maskCaptionRows,
  readBeit3CaptionExamples,
  type Beit3CaptioningFinetuneOptions,
  type Beit3CaptioningFinetuneResult,
  type CaptionMaskingOptions,
} from './captioning-finetune.js';
