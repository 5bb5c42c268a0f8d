// @vl/core/node: the Node-only half of @vl/core: files (safetensors, JSON, atomic writes, checkpoints,
// metrics logs, tokenizer and parity files), sharp image decoding, dataset readers and loaders, the
// file-backed Trainer, the synthetic dataset writer. Import the rest (tensors, modules, objectives) from @vl/core.

// Files: atomic writes, safetensors (single and sharded), PyTorch checkpoint files, JSON files, module
// weights, parity fixtures.
export { writeFileAtomic, type WriteChunk } from './node/atomic.js';
export { readSafetensorsFile, readSafetensorsHeader, writeSafetensorsFile } from './node/safetensors-file.js';
export { openFileSource, type FileSource } from './node/file-source.js';
export { readTorchCheckpointFile } from './node/torch-checkpoint-file.js';
export { openSafetensorsShard, type SafetensorsShard } from './node/safetensors-shard.js';
export {
  openShardedSafetensors,
  readShardedCheckpoint,
  readShardIndex,
  type ShardedSafetensors,
  type ShardIndex,
} from './node/safetensors-sharded.js';
export { CHECKPOINT_FILE_NAMES, findCheckpointFile, readCheckpoint, type ReadCheckpointOptions } from './node/checkpoint-file.js';
export { readJsonFile, writeJsonFile } from './node/json-file.js';
export { loadModuleFile, saveModuleFile } from './node/module-file.js';
export {
  loadVisualTokenizer,
  trainVisualTokenizer,
  VISUAL_TOKENIZER_CONFIG,
  VISUAL_TOKENIZER_WEIGHTS,
  visualTokenizerDir,
  type TrainedVisualTokenizer,
  type TrainVisualTokenizerOptions,
  type VisualTokenizerFile,
  type VisualTokenizerTeacher,
  type VisualTokenizerTeacherFile,
} from './node/visual-tokenizer.js';
export { loadClipVisionTeacher, type LoadClipTeacherOptions } from './node/vit-teacher-file.js';
export { readExpectedFile, readTensorJsonFile } from './node/parity-file.js';
export { readReferenceGradients } from './node/grads-file.js';

// Data: tokenizer files, image files (guarded reads) and decoding (sharp), dataset readers, loaders, the synthetic
// dataset writer.
export { loadBertTokenizer } from './node/tokenizer-file.js';
export { decodeImage, preprocessImage, transformImage } from './node/image-decode.js';
export {
  DEFAULT_IMAGE_READ_TIMEOUT_MS,
  DEFAULT_MAX_IMAGE_BYTES,
  ImageFileError,
  readImageFile,
  type ImageFileOptions,
} from './node/image-file.js';
export {
  detectFormat,
  expandBraces,
  readByteLines,
  readDataset,
  splitWdsName,
  streamJsonArrayElements,
  type DatasetFormat,
  type DatasetSpec,
} from './node/readers.js';
export {
  batchExamples,
  createDataLoader,
  loadExamples,
  measureThroughput,
  shuffleBuffer,
  type BatchingOptions,
  type CaptionChoice,
  type DataLoaderOptions,
  type ImageLoadOptions,
  type ImageTextBatch,
  type ImageTextExample,
  type ThroughputResult,
} from './node/loader.js';
export { writeSynthDataset } from './node/synth-writer.js';

// Training: the Trainer with its checkpoint folders and JSONL metrics log.
export {
  Trainer,
  type EpochData,
  type FitOptions,
  type FitSummary,
  type TrainerOptions,
  type TrainProgress,
  type TrainStepContext,
} from './node/trainer.js';
export {
  CHECKPOINT_FORMAT,
  latestCheckpoint,
  loadCheckpoint,
  pruneCheckpoints,
  saveCheckpoint,
  type CheckpointContents,
  type TrainerState,
} from './node/train-checkpoint.js';
export { JsonlMetricsLog, type StepRecord } from './node/metrics-log.js';
