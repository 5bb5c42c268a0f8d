// @vl/core: building blocks for vision-language models on TensorFlow.js, browser-safe (tfjs APIs only:
// no node:*, no sharp; files, image decoding and dataset readers are in @vl/core/node). Every export is
// listed by name; src/__tests__/browser-bundle.test.ts checks that nothing reachable from here needs Node.

// Errors: one typed error with a code, the file/record/key it is about, and what to do.
export { isVlError, VlError, type VlErrorCode, type VlErrorDetails } from './errors.js';

// Runtime: backend choice (browser-safe; native backends probed only under Node), seeded RNG, wasm kernels, wasm memory guard.
export {
  BACKEND_PREFERENCE,
  ensureRuntime,
  initRuntime,
  runtimeInfo,
  type AccelInfo,
  type BackendCandidate,
  type BackendChoice,
  type InitRuntimeOptions,
  type RuntimeInfo,
} from './runtime/backend.js';
export {
  assertFitsWasmHeap,
  estimateTrainingBytes,
  reserveWasmHeap,
  reserveWasmHeapFor,
  WASM_HEAP_LIMIT_BYTES,
  type HeapCheck,
  type TrainingEstimateOptions,
  type TrainingOptimizer,
} from './runtime/memory.js';
export { Rng, type RngState } from './runtime/rng.js';
export {
  coreWasmMatMulActive,
  installWasmKernels,
  isStockWasmKernel,
  wasmThreadCount,
  type InstalledKernels,
} from './runtime/wasm-kernels.js';

// Modules: the Module base with PyTorch-named state dicts, layers, functional ops, initialisers.
export { gelu, geluTanh, layerNorm, linear, softmaxLastAxis } from './nn/functional.js';
export { normal, truncNormal, uniform, weightInitSkipped, withoutWeightInit } from './nn/init.js';
export { quantizeInt8, releaseInt8, int8LayerCount, type Int8Report, type QuantizeInt8Options } from './nn/quantize.js';
export { int8KernelsAvailable } from './nn/int8-weights.js';
export { recordingGradients } from './runtime/tape.js';
export { redrawWeights } from './nn/redraw.js';
export {
  activate,
  bertInit,
  Dropout,
  Embedding,
  GELU,
  LayerNorm,
  Linear,
  Mlp,
  type Activation,
  type LinearOptions,
  type MlpOptions,
  type WeightInit,
} from './nn/layers.js';
export {
  Module,
  ModuleList,
  type LoadOptions,
  type LoadReport,
  type NamePattern,
  type StateDictInput,
  type StateValue,
  type StoredDtype,
} from './nn/module.js';
export { stateDictToHost } from './nn/state-dict.js';

// Attention: multi-head attention (self/cross, three weight layouts), masks, KV cache.
export { AttentionCache, KVCache, type CacheKind, type LayerCache } from './attention/kv-cache.js';
export {
  BERT_MASK_VALUE,
  causalMask,
  extendedAttentionMask,
  FLOAT32_MIN,
  paddingMask,
  prefixCausalAllowed,
  type ExtendedMaskOptions,
} from './attention/masks.js';
export {
  BERT_ATTENTION_NAMES,
  MultiHeadAttention,
  TIMM_ATTENTION_NAMES,
  TORCHSCALE_ATTENTION_NAMES,
  type AttentionForwardOptions,
  type AttentionNames,
  type AttentionOutput,
  type MultiHeadAttentionConfig,
  type QkvBias,
  type QkvLayout,
} from './attention/multi-head-attention.js';

// Blocks: BERT (post-LN) and pre-LN transformer layers, Multiway experts and layer, attentional pooler, drop-path.
export { AttentionPooler, type AttentionPoolerConfig } from './blocks/attention-pooler.js';
export {
  BertAttention,
  BertIntermediate,
  BertLayer,
  BertResidualOutput,
  type BertAttentionForward,
  type BertLayerConfig,
  type BertLayerForward,
  type BertLayerOutput,
} from './blocks/bert-layer.js';
export { DropPath, dropPathSchedule } from './blocks/drop-path.js';
export { FeedForward, OPEN_CLIP_MLP_NAMES, TIMM_MLP_NAMES, type FeedForwardConfig, type FeedForwardNames } from './blocks/feed-forward.js';
export {
  expertPath,
  Multiway,
  TORCHSCALE_EXPERTS,
  VLMO_EXPERTS,
  VLMO_FUSION_EXPERTS,
  type ExpertName,
  type ExpertNaming,
  type Route,
  type RouteSegment,
} from './blocks/multiway.js';
export { MultiwayLayer, type MultiwayLayerConfig, type MultiwayLayerForward } from './blocks/multiway-layer.js';
export { Container, PathModule } from './blocks/path-module.js';
export {
  OPEN_CLIP_LAYER_NAMES,
  TIMM_VIT_LAYER_NAMES,
  TORCHSCALE_LAYER_NAMES,
  TransformerLayer,
  type LayerExperts,
  type LayerPart,
  type LayerPartModule,
  type TransformerLayerConfig,
  type TransformerLayerForward,
  type TransformerLayerNames,
  type TransformerLayerOutput,
} from './blocks/transformer-layer.js';

// Encoders: Vision Transformer, BERT text embeddings and text transformer, output heads.
export {
  BertLMPredictionHead,
  BertPooler,
  BertPredictionHeadTransform,
  firstToken,
  l2Normalize,
  ProjectionHead,
} from './encoders/heads.js';
export { interpolatePositionEmbedding } from './encoders/position-interpolation.js';
export { BertEmbeddings, type TextEmbeddingsConfig, type TextEmbeddingsInputs } from './encoders/text-embeddings.js';
export {
  TextTransformer,
  type TextTransformerConfig,
  type TextTransformerInputs,
  type TextTransformerOptions,
  type TextTransformerOutput,
} from './encoders/text-transformer.js';
export {
  PatchEmbedding,
  TIMM_VIT_NAMES,
  VisionTransformer,
  type VisionForwardOptions,
  type VisionTransformerConfig,
  type VisionTransformerNames,
  type VisionTransformerOutput,
} from './encoders/vision-transformer.js';

// io: safetensors bytes (parse, validate, write), strict JSON and config validation.
export { formatSchemaIssues, parseJsonText, stringifyJson, validateConfig } from './io/json-config.js';
export { camelizeKeys, camelKey, OPAQUE_CONFIG_KEYS, snakeKey, snakifyKeys, type ConfigCaseOptions } from './io/config-case.js';
export {
  formatJsonPath,
  JsonParseError,
  jsonPathJoin,
  parseJsonStrict,
  type JsonObject,
  type JsonValue,
  type StrictJsonOptions,
} from './io/json-strict.js';
// PyTorch checkpoints from bytes: zip container, allow-listed pickle VM, torch tensors, state-dict location.
export {
  bytesSource,
  crc32,
  looksLikeZip,
  readZipDirectory,
  readZipEntry,
  type ByteSource,
  type ZipDirectory,
  type ZipEntry,
} from './io/zip.js';
export {
  describe as describePickleValue,
  PickleCallable,
  PickleGlobal,
  PickleObject,
  PyDict,
  PySet,
  PyTuple,
  unpickle,
  type PyValue,
  type UnpickleHooks,
  type UnpickleOptions,
  type UnpickleResult,
} from './io/pickle.js';
export { findTorchGlobal, TorchDtypeValue, TorchStorageRef, TorchStorageType, TorchTensorRef } from './io/torch-pickle.js';
export {
  materializeStateDict,
  openTorchArchive,
  readTorchCheckpoint,
  TORCH_MAX_BROADCAST_ELEMENTS,
  TORCH_MAX_PICKLE_BYTES,
  type CheckpointTensors,
  type CheckpointReport,
  type ReadTorchOptions,
  type TorchArchive,
} from './io/torch-checkpoint.js';
export { locateStateDict, STATE_DICT_KEYS, type StateDictLocation, type StateDictOptions } from './io/state-dict-locate.js';
export { sniffCheckpoint, type SniffedFormat } from './io/checkpoint-format.js';
export {
  hostDtypeOf,
  isSafetensorsDtype,
  adoptTensor,
  isDeferredHostTensor,
  parseSafetensorsHeader,
  readSafetensors,
  SAFETENSORS_DTYPES,
  SAFETENSORS_MAX_HEADER_BYTES,
  SAFETENSORS_MAX_RANK,
  safetensorsDtypeSize,
  writeSafetensors,
  type DeferredHostTensor,
  type HostTensor,
  type SafetensorsContents,
  type SafetensorsDtype,
  type SafetensorsEntry,
  type SafetensorsHeader,
  type SafetensorsTensors,
} from './io/safetensors.js';

// Data: WordPiece tokenizer, image transforms on decoded pixels, dataset records, synthetic scenes (planned and drawn in memory).
export {
  DEFAULT_MAX_PIXELS,
  IMAGE_NORMS,
  imagesToTensor,
  normalizeToChw,
  randomResizedCropBox,
  type CropBox,
  type DecodedImage,
  type ImageDecodeOptions,
  type ImageNorm,
  type ImageTransformOptions,
  type Interpolation,
  type Triple,
} from './data/image.js';
export {
  DataReport,
  DROP_REASONS,
  type CaptionRecord,
  type DropExample,
  type DropReason,
  type ImageRef,
  type ReportSummary,
} from './data/records.js';
export {
  BACKGROUNDS,
  COLORS,
  drawScene,
  NOISE_KINDS,
  planSynthDataset,
  SHAPES,
  SIZES,
  synthVocabulary,
  type Axis,
  type BackgroundName,
  type ColorName,
  type NoiseKind,
  type NoiseLabel,
  type Scene,
  type ShapeGroup,
  type ShapeName,
  type SizeName,
  type Slot,
  type SynthOptions,
  type SynthRecord,
  type SynthSummary,
  type TemplateId,
} from './data/synth.js';
export {
  nlvr2Truth,
  planSynthNlvr2,
  planSynthVqa,
  renderNlvr2,
  SYNTH_TASKS,
  SYNTH_VQA_ANSWERS,
  synthTaskVocabulary,
  VQA_QUESTION_KINDS,
  vqaQuestion,
  type Nlvr2Statement,
  type Nlvr2StatementKind,
  type SynthNlvr2Record,
  type SynthTask,
  type SynthVqaRecord,
  type VqaAnswer,
  type VqaQuestionKind,
} from './data/synth-tasks.js';
export {
  BertTokenizer,
  bertTokenizerJson,
  parseVocabTxt,
  type Encoded,
  type EncodedBatch,
  type PaddingMode,
  type TokenizerDecodeOptions,
  type TokenizerEncodeOptions,
  type TokenizerOptions,
} from './data/tokenizer.js';

// Evaluation: retrieval Recall@K, COCO-style BLEU and CIDEr-D, ITM accuracy/AUC.
export { corpusBleu, type BleuResult, type CaptionMetricOptions } from './eval/bleu.js';
export { ciderD, type CiderResult } from './eval/cider.js';
export { itmAccuracy, itmMatchProbabilities, rocAuc } from './eval/itm.js';
export { retrievalRecall, type DirectionResult, type RetrievalInput, type RetrievalResult } from './eval/retrieval.js';
export { ptbTokenize } from './eval/text.js';

// Parity checks against reference outputs (tensor JSON decoding, comparison, report) and gradients.
export {
  compareOutputs,
  decodeTensorJson,
  formatParityReport,
  isTensorJson,
  type ActualOutput,
  type DecodedTensor,
  type OutputCheck,
  type ParityReport,
  type TensorJson,
  type TensorJsonDtype,
} from './verify/parity.js';
export {
  centralDifference,
  checkGradients,
  compareGradients,
  mergeTiedGradients,
  officialNames,
  parameterGradients,
  splitLossGradients,
  type CompareGradientsInput,
  type GradientReplay,
  type ReferenceGradients,
} from './verify/grads.js';

// Pretraining objectives: ITC, ITM (+ hard negatives), MLM (+ masking), LM, MIM (+ block masking).
export {
  clampTemperature,
  initTemperature,
  itcAccuracy,
  itcLoss,
  TEMPERATURE_INIT,
  TEMPERATURE_MAX,
  TEMPERATURE_MIN,
  type ItcInput,
  type ItcOutput,
} from './objectives/itc.js';
export {
  itmLoss,
  itmPairs,
  sampleItmNegatives,
  type ItmNegatives,
  type ItmNegativesInput,
  type ItmPairs,
  type NegativeStrategy,
} from './objectives/itm.js';
export { lmLabels, lmLoss, type LmLabelOptions, type LmLossOptions } from './objectives/lm.js';
export {
  combineLosses,
  crossEntropy,
  IGNORE_INDEX,
  logitsAccuracy,
  objectiveEnabled,
  softCrossEntropy,
  type CrossEntropyOptions,
  type ForwardResult,
  type Labels,
  type ObjectivesConfig,
  type ObjectiveSwitch,
} from './objectives/losses.js';
export {
  BlockMaskingGenerator,
  mimLabels,
  mimLoss,
  PatchCodebookTokenizer,
  type BlockMaskingOptions,
  type PatchCodebookOptions,
  type VisualTokenizer,
} from './objectives/mim.js';
export {
  codebookUsage,
  KMeansVisualTokenizer,
  patchify,
  RandomPatchTeacher,
  sphericalKMeans,
  type CodebookUsage,
  type KMeansOptions,
  type KMeansResult,
  type PatchFeatureTeacher,
} from './objectives/kmeans-tokenizer.js';
export { VitPatchTeacher, type VitTeacherConfig } from './objectives/vit-teacher.js';
export { maskTokens, mlmLoss, type MlmMasked, type MlmMaskingOptions } from './objectives/mlm.js';

// Momentum distillation: EMA twins, feature queues, soft targets, the alpha ramp and the momentum-contrastive block.
export { MomentumEncoder, type MomentumOptions } from './distill/momentum.js';
export {
  drawItmPairs,
  MomentumContrastive,
  NO_IMAGE_ID,
  QUEUE_FIELDS,
  type ItmPairDraw,
  type MomentumContrastiveOptions,
  type MomentumItcInput,
  type MomentumItcOutput,
  type MomentumQueueOptions,
} from './distill/momentum-contrastive.js';
export { FeatureQueue, type FeatureQueueOptions, type QueueField } from './distill/queue.js';
export { distillAlpha, itcMomentumTargets, mixTargets, mlmDistillLoss } from './distill/targets.js';

// Generation over any decoder: greedy, beam search, top-k / top-p sampling, repetition penalty, min length.
export { BeamHypotheses, BeamSearchScorer, type BeamCandidates, type BeamFinal, type BeamStep } from './generate/beam-search.js';
export { fullSequenceDecoder, type FullSequenceForward } from './generate/decoders.js';
export { generate } from './generate/generate.js';
export {
  applyMinLength,
  applyRepetitionPenalty,
  applyTemperature,
  applyTopK,
  applyTopP,
  buildLogitsProcessor,
  buildLogitsWarper,
  type ProcessorSettings,
  type RowProcessor,
  type WarperSettings,
} from './generate/logits-process.js';
export {
  type DecoderStep,
  type DecoderStepOutput,
  type EarlyStopping,
  type GenerateOptions,
  type GenerateOutput,
} from './generate/types.js';

// Training pieces: AdamW, schedules, clipping and accumulation (the file-backed Trainer is in @vl/core/node).
export { clipByGlobalNorm, globalNorm, GradientAccumulator } from './train/gradients.js';
export { AdamW, type AdamWOptions, type OptimizerState } from './train/optimizer.js';
export { makeSchedule, type LrSchedule, type ScheduleConfig, type WarmupConfig } from './train/schedule.js';

// The model contract every model package implements, and the registry they register with (browser-safe:
// types and an in-memory map; the command line over it is @vl/core/cli).
export type {
  AnyModelSpec,
  CaptionRequest,
  EvalRequest,
  EvalSummary,
  EvalTaskName,
  Io,
  KeyMap,
  MatchRequest,
  MatchResult,
  ModelCheckpointSpec,
  ModelCommandSpec,
  ModelSpec,
  ObjectiveSpec,
  OptionSpec,
  Progress,
  RunContext,
  StateEntry,
  TrainRequest,
  TrainSummary,
  VerifyRequest,
  VerifyResult,
} from './model/contract.js';
export type {
  AblationAdapter,
  AblationCaptionSet,
  AblationData,
  AblationImageSet,
  AblationModelConfig,
  AblationTrainSettings,
  AblationVariant,
  CurvePoint,
  RecallSummary,
  TrainedRun,
} from './model/ablation.js';
export { finalLoss, retrievalRunMetrics } from './model/ablation.js';
export { findModel, getModel, getModelWith, listModels, registerModel, unregisterModel } from './model/registry.js';
