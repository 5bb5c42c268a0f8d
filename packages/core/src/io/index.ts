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
export { formatSchemaIssues, parseJsonText, readJsonFile, validateConfig, writeJsonFile } from './json-file.js';
export { formatJsonPath, JsonParseError, jsonPathJoin, parseJsonStrict, type JsonObject, type JsonValue, type StrictJsonOptions } from './json-strict.js';
export { writeFileAtomic, type WriteChunk } from './atomic.js';
