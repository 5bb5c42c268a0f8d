// io: safetensors checkpoints (read, validate, write) and JSON config files, shared by every model package.
export {
  SAFETENSORS_DTYPES,
  SAFETENSORS_MAX_HEADER_BYTES,
  SAFETENSORS_MAX_RANK,
  hostDtypeOf,
  isSafetensorsDtype,
  parseSafetensorsHeader,
  readSafetensors,
  safetensorsDtypeSize,
  writeSafetensors,
  type HostTensor,
  type SafetensorsContents,
  type SafetensorsDtype,
  type SafetensorsEntry,
  type SafetensorsHeader,
  type SafetensorsTensors,
} from './safetensors.js';
export { readSafetensorsFile, readSafetensorsHeader, writeSafetensorsFile } from './safetensors-file.js';
export { camelizeKeys, camelKey, OPAQUE_CONFIG_KEYS, snakeKey, snakifyKeys, type ConfigCaseOptions } from './config-case.js';
export { formatSchemaIssues, parseJsonText, readJsonFile, validateConfig, writeJsonFile } from './json-file.js';
export {
  formatJsonPath,
  JsonParseError,
  jsonPathJoin,
  parseJsonStrict,
  type JsonObject,
  type JsonValue,
  type StrictJsonOptions,
} from './json-strict.js';
export {
  bytesSource,
  crc32,
  looksLikeZip,
  readZipDirectory,
  readZipEntry,
  type ByteSource,
  type ZipDirectory,
  type ZipEntry,
} from './zip.js';
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
} from './pickle.js';
export { findTorchGlobal, TorchDtypeValue, TorchStorageRef, TorchStorageType, TorchTensorRef } from './torch-pickle.js';
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
} from './torch-checkpoint.js';
export { locateStateDict, STATE_DICT_KEYS, type StateDictLocation, type StateDictOptions } from './state-dict-locate.js';
export { sniffCheckpoint, type SniffedFormat } from './checkpoint-format.js';
// Node-only (file handles): move to @vl/core/node with the safetensors file readers.
export { openFileSource, type FileSource } from './file-source.js';
export { readTorchCheckpointFile } from './torch-checkpoint-file.js';
export { openSafetensorsShard, type SafetensorsShard } from './safetensors-shard.js';
export {
  openShardedSafetensors,
  readShardedCheckpoint,
  readShardIndex,
  type ShardedSafetensors,
  type ShardIndex,
} from './safetensors-sharded.js';
export { CHECKPOINT_FILE_NAMES, findCheckpointFile, readCheckpoint, type ReadCheckpointOptions } from './checkpoint-file.js';
export { writeFileAtomic, type WriteChunk } from './atomic.js';
