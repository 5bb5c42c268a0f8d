// safetensors read/write on in-memory bytes, following huggingface/safetensors (safetensors/src/tensor.rs):
// every header field is validated before any tensor data is touched, and every failure is a VlError.
import { VlError } from '../errors.js';
import { decodeHalfs, encodeHalfs } from './float16.js';
import { JsonParseError, parseJsonStrict, type JsonObject, type JsonValue } from './json-strict.js';

// ---------------------------------------------------------------------------------------------
// Dtypes

/** The safetensors dtypes this reader and writer handle (the format's names, as in the header). */
export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

interface DtypeSpec {
  /** Bytes per element in the file. */
  size: number;
  /** What it becomes in memory: floats upcast to float32, integers and bools to int32 (tfjs has no others). */
  host: 'float32' | 'int32';
  /**
   * Rank in the reference's `Dtype` enum, which is ordered by alignment; the writer lays data out
   * by descending rank then name, as the reference does, so every tensor starts aligned.
   */
  rank: number;
}

const DTYPES: Readonly<Record<SafetensorsDtype, DtypeSpec>> = {
  BOOL: { size: 1, host: 'int32', rank: 0 },
  U8: { size: 1, host: 'int32', rank: 1 },
  I8: { size: 1, host: 'int32', rank: 2 },
  I16: { size: 2, host: 'int32', rank: 5 },
  U16: { size: 2, host: 'int32', rank: 6 },
  F16: { size: 2, host: 'float32', rank: 7 },
  BF16: { size: 2, host: 'float32', rank: 8 },
  I32: { size: 4, host: 'int32', rank: 9 },
  U32: { size: 4, host: 'int32', rank: 10 },
  F32: { size: 4, host: 'float32', rank: 11 },
  F64: { size: 8, host: 'float32', rank: 12 },
  I64: { size: 8, host: 'int32', rank: 13 },
  U64: { size: 8, host: 'int32', rank: 14 },
};

/** Valid in the format but not representable here (fp8/fp6/fp4 and complex); named in the error. */
const UNSUPPORTED_DTYPES = new Set(['F8_E5M2', 'F8_E4M3', 'F8_E4M3FNUZ', 'F8_E5M2FNUZ', 'F8_E8M0', 'F6_E2M3', 'F6_E3M2', 'F4', 'C64']);

export const SAFETENSORS_DTYPES: readonly SafetensorsDtype[] = Object.keys(DTYPES) as SafetensorsDtype[];

export function isSafetensorsDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(DTYPES, value);
}

/** Bytes per element of a safetensors dtype. */
export function safetensorsDtypeSize(dtype: SafetensorsDtype): number {
  return DTYPES[dtype].size;
}

/** The in-memory dtype a file dtype is read into. */
export function hostDtypeOf(dtype: SafetensorsDtype): 'float32' | 'int32' {
  return DTYPES[dtype].host;
}

// ---------------------------------------------------------------------------------------------
// Types

/** A tensor held in plain JS memory, as read from or written to a checkpoint file. */
export interface HostTensor {
  dtype: 'float32' | 'int32';
  shape: number[];
  /** Row-major (C order) values; Float32Array for float32, Int32Array for int32. */
  data: Float32Array | Int32Array;
  /** The dtype in the file: read from it, and written back as it (see writeSafetensors). */
  fileDtype: SafetensorsDtype;
}

/**
 * A HostTensor whose bytes are read from its file only when used (readCheckpoint's `deferData`):
 * `data` reads them on first access (and keeps them); `readInto` writes exactly `data`'s bytes
 * into `dst` — synchronously, so `dst` may be a view of backend memory that must not move while
 * the read runs — without keeping a JS copy. What lets loadStateDict put weights straight into
 * wasm memory.
 */
export interface DeferredHostTensor extends HostTensor {
  readInto(dst: Uint8Array): void;
}

export function isDeferredHostTensor(value: unknown): value is DeferredHostTensor {
  return typeof (value as Partial<DeferredHostTensor> | null)?.readInto === 'function';
}

/** One header entry: what a tensor is and where its bytes are, relative to the data buffer. */
export interface SafetensorsEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  /** Entries in data order (by offset), which is also the order the reference lists names in. */
  entries: Map<string, SafetensorsEntry>;
  /** `__metadata__` (e.g. `{ format: 'pt' }`); empty when absent. */
  metadata: Record<string, string>;
  /** N, the JSON header's length in bytes; tensor data starts at byte 8 + N of the file. */
  headerByteLength: number;
  /** Length of the data buffer after the header; the entries tile it exactly. */
  dataByteLength: number;
}

export interface SafetensorsContents {
  /** Tensors in data order. */
  tensors: Map<string, HostTensor>;
  metadata: Record<string, string>;
}

/** Input to the writers: a name → tensor map or plain object. */
export type SafetensorsTensors = ReadonlyMap<string, HostTensor> | Readonly<Record<string, HostTensor>>;

// ---------------------------------------------------------------------------------------------
// Limits (why each: a hostile or corrupt file must fail before it makes us allocate much)

/** Largest JSON header accepted, as in the reference (MAX_HEADER_SIZE = 100 MB). */
export const SAFETENSORS_MAX_HEADER_BYTES = 100_000_000;
/** Most dims a shape may have (PyTorch and NumPy stop at 64). */
export const SAFETENSORS_MAX_RANK = 64;
/** The header is three levels deep (root → tensor → shape); anything deeper is not a header. */
const HEADER_MAX_DEPTH = 8;

const DEFAULT_HINT = 'the file is damaged or is not a safetensors file; download or export it again (safetensors save_file)';

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------
// Errors and message helpers

export function safetensorsError(subject: string, message: string, hint: string = DEFAULT_HINT, cause?: unknown): VlError {
  return new VlError('SAFETENSORS_INVALID', message, { subject, hint, cause });
}

/** A name for messages; names come from untrusted files, so long ones are cut. */
function quote(name: string): string {
  const s = JSON.stringify(name);
  return s.length > 120 ? `${s.slice(0, 100)}…" (${name.length} chars)` : s;
}

function describe(value: JsonValue | undefined): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return `the string ${quote(value)}`;
  return String(value);
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function setOwn(target: Record<string, string>, key: string, value: string): void {
  // `__proto__` must become an own key, not the prototype (metadata keys are untrusted).
  Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
}

function hasLoneSurrogate(s: string): boolean {
  // With the u flag a valid pair is one code point, so \p{Cs} matches only unpaired halves.
  return /\p{Cs}/u.test(s);
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

/** Element count of a validated shape; the caller checked each dim. Throws when past 2^53. */
function elementCount(shape: readonly number[], onOverflow: () => never): number {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) onOverflow();
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Header

/**
 * Validates the 8-byte prefix (a little-endian u64 N) against the total size and returns N.
 * Runs before anything is allocated, so a bogus N (e.g. 2^60) can never size an allocation.
 */
export function readHeaderLength(prefix: Uint8Array, totalBytes: number, subject: string): number {
  if (totalBytes < 8 || prefix.length < 8) {
    throw safetensorsError(subject, `file is ${totalBytes} bytes, shorter than the 8-byte header length`);
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  if (hi !== 0 || lo > SAFETENSORS_MAX_HEADER_BYTES) {
    const n = (BigInt(hi) << 32n) | BigInt(lo);
    throw safetensorsError(subject, `header length ${n} is over the ${SAFETENSORS_MAX_HEADER_BYTES}-byte limit`);
  }
  if (lo < 2) throw safetensorsError(subject, `header length ${lo} is too short for a JSON object`);
  if (8 + lo > totalBytes) {
    throw safetensorsError(subject, `header length ${lo} runs past the end of the file (${totalBytes} bytes; the file may be truncated)`);
  }
  return lo;
}

function parseShape(name: string, value: JsonValue | undefined, subject: string): number[] {
  const at = `tensor ${quote(name)}`;
  if (!Array.isArray(value))
    throw safetensorsError(subject, `${at}: "shape" must be an array of non-negative integers, got ${describe(value)}`);
  if (value.length > SAFETENSORS_MAX_RANK) {
    throw safetensorsError(subject, `${at}: "shape" has ${value.length} dims, more than ${SAFETENSORS_MAX_RANK}`);
  }
  const shape: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const d = value[i];
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw safetensorsError(subject, `${at}: shape[${i}] is ${describe(d)}; dims must be non-negative integers`);
    }
    shape.push(d);
  }
  return shape;
}

function parseOffsets(name: string, value: JsonValue | undefined, dataByteLength: number, subject: string): [number, number] {
  const at = `tensor ${quote(name)}`;
  if (!Array.isArray(value) || value.length !== 2) {
    throw safetensorsError(subject, `${at}: "data_offsets" must be [begin, end], got ${describe(value)}`);
  }
  const [begin, end] = value;
  for (const [label, v] of [
    ['begin', begin],
    ['end', end],
  ] as const) {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw safetensorsError(subject, `${at}: data_offsets ${label} is ${describe(v)}; offsets must be non-negative integers`);
    }
  }
  const b = begin as number;
  const e = end as number;
  if (e < b) throw safetensorsError(subject, `${at}: data_offsets [${b}, ${e}] end before they begin`);
  if (e > dataByteLength) {
    throw safetensorsError(
      subject,
      `${at}: data_offsets [${b}, ${e}] run past the end of the data (${dataByteLength} bytes; the file may be truncated)`,
    );
  }
  return [b, e];
}

function parseEntry(name: string, value: JsonValue | undefined, dataByteLength: number, subject: string): SafetensorsEntry {
  const at = `tensor ${quote(name)}`;
  if (!isObject(value))
    throw safetensorsError(subject, `${at}: entry must be an object {dtype, shape, data_offsets}, got ${describe(value)}`);
  for (const field of Object.keys(value)) {
    if (field !== 'dtype' && field !== 'shape' && field !== 'data_offsets') {
      throw safetensorsError(subject, `${at}: unknown field ${quote(field)} (expected dtype, shape, data_offsets)`);
    }
  }
  const dtype = value['dtype'];
  if (!isSafetensorsDtype(dtype)) {
    if (typeof dtype === 'string' && UNSUPPORTED_DTYPES.has(dtype)) {
      throw safetensorsError(
        subject,
        `${at}: dtype ${dtype} is not supported (supported: ${SAFETENSORS_DTYPES.join(', ')})`,
        'convert the checkpoint to F32, F16 or BF16 first, e.g. with torch: {k: v.float() for k, v in sd.items()}',
      );
    }
    throw safetensorsError(subject, `${at}: unknown dtype ${describe(dtype)} (supported: ${SAFETENSORS_DTYPES.join(', ')})`);
  }
  const shape = parseShape(name, value['shape'], subject);
  const dataOffsets = parseOffsets(name, value['data_offsets'], dataByteLength, subject);
  const overflow = (): never => {
    throw safetensorsError(subject, `${at}: shape ${shapeText(shape)} has more elements than can be addressed`);
  };
  const bytes = elementCount(shape, overflow) * DTYPES[dtype].size;
  if (!Number.isSafeInteger(bytes)) overflow();
  const [b, e] = dataOffsets;
  if (e - b !== bytes) {
    throw safetensorsError(subject, `${at}: ${dtype} ${shapeText(shape)} needs ${bytes} bytes but data_offsets [${b}, ${e}] hold ${e - b}`);
  }
  return { dtype, shape, dataOffsets };
}

function parseMetadata(value: JsonValue | undefined, subject: string): Record<string, string> {
  const metadata: Record<string, string> = {};
  if (value === undefined || value === null) return metadata; // the reference writes no key when there is none
  if (!isObject(value)) throw safetensorsError(subject, `"__metadata__" must be an object of strings, got ${describe(value)}`);
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== 'string')
      throw safetensorsError(subject, `"__metadata__" value for ${quote(key)} must be a string, got ${describe(v)}`);
    setOwn(metadata, key, v);
  }
  return metadata;
}

/**
 * Parses and validates the JSON header (the N bytes after the length prefix) against the size of
 * the data buffer that follows it. Checks every rule of the format: UTF-8 JSON object without
 * duplicate keys; string-valued `__metadata__`; known dtypes; shapes of non-negative integers;
 * byte length = elements × dtype size; offsets in bounds, non-overlapping, covering the buffer
 * with no hole. Returns entries in data order.
 */
export function parseSafetensorsHeader(headerBytes: Uint8Array, dataByteLength: number, subject = '<buffer>'): SafetensorsHeader {
  let text: string;
  try {
    // fatal: invalid UTF-8 is an error (as in the reference); ignoreBOM: a BOM stays and is rejected by the parser.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch (cause) {
    throw safetensorsError(subject, 'header is not valid UTF-8', DEFAULT_HINT, cause);
  }
  let root: JsonValue;
  try {
    root = parseJsonStrict(text, { maxDepth: HEADER_MAX_DEPTH });
  } catch (cause) {
    if (cause instanceof JsonParseError) {
      throw safetensorsError(
        subject,
        `header is not valid JSON: ${cause.problem} at byte ${8 + byteOffsetOf(text, cause.offset)} (${cause.jsonPath})`,
        DEFAULT_HINT,
        cause,
      );
    }
    throw cause;
  }
  if (!isObject(root)) throw safetensorsError(subject, `header must be a JSON object, got ${describe(root)}`);

  let metadata: Record<string, string> = {};
  const unordered: Array<[string, SafetensorsEntry]> = [];
  for (const [name, value] of Object.entries(root)) {
    if (name === '__metadata__') metadata = parseMetadata(value, subject);
    else unordered.push([name, parseEntry(name, value, dataByteLength, subject)]);
  }

  // The reference sorts by offsets and requires each tensor to start where the previous ended
  // and the last to end at the buffer's end: no overlap (aliasing), no hole (smuggled bytes).
  unordered.sort(([, a], [, b]) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let expected = 0;
  let previous: [string, SafetensorsEntry] | undefined;
  for (const item of unordered) {
    const [name, entry] = item;
    const [b, e] = entry.dataOffsets;
    if (b < expected && previous) {
      const [pb, pe] = previous[1].dataOffsets;
      throw safetensorsError(
        subject,
        `tensor ${quote(name)}: data_offsets [${b}, ${e}] overlap tensor ${quote(previous[0])} [${pb}, ${pe}]`,
      );
    }
    if (b > expected) {
      const after = previous ? ` after tensor ${quote(previous[0])}` : ' at the start of the data';
      throw safetensorsError(subject, `bytes [${expected}, ${b}) of the data belong to no tensor (a hole${after}, before ${quote(name)})`);
    }
    expected = e;
    previous = item;
  }
  if (expected !== dataByteLength) {
    throw safetensorsError(
      subject,
      `bytes [${expected}, ${dataByteLength}) at the end of the data belong to no tensor (the tensors cover ${expected} of ${dataByteLength} bytes)`,
    );
  }
  return {
    entries: new Map(unordered),
    metadata,
    headerByteLength: headerBytes.length,
    dataByteLength,
  };
}

/** UTF-8 byte offset of a UTF-16 offset (errors report bytes, which is what a hex dump shows). */
function byteOffsetOf(text: string, offset: number): number {
  return new TextEncoder().encode(text.slice(0, offset)).length;
}

// ---------------------------------------------------------------------------------------------
// Decoding tensor data

/** Typed-array views read the host's byte order; safetensors is little-endian. */
export function assertLittleEndianHost(subject: string): void {
  if (!LITTLE_ENDIAN_HOST) throw safetensorsError(subject, 'this reader needs a little-endian host', 'run on x86-64 or arm64');
}

/** A view of `src` whose start is aligned for `size`-byte elements (copies only when it is not). */
function aligned(src: Uint8Array, size: number): Uint8Array {
  return src.byteOffset % size === 0 ? src : src.slice();
}

function rangeError(subject: string, name: string, entry: SafetensorsEntry, index: number, value: string, why: string): VlError {
  return safetensorsError(
    subject,
    `tensor ${quote(name)} (${entry.dtype} ${shapeText(entry.shape)}): element ${index} is ${value}, ${why}`,
    'in-memory integers are int32 (tfjs has no int64); store this tensor as F32/F64, or clamp it before saving',
  );
}

/**
 * Decodes one tensor's bytes (exactly its byte length) into a HostTensor: floats to float32
 * (F16/BF16 exactly, F64 rounded), integers and bools to int32 after checking each value fits.
 * The result owns fresh memory; `src` may be discarded.
 */
export function decodeTensor(name: string, entry: SafetensorsEntry, src: Uint8Array, subject = '<buffer>'): HostTensor {
  assertLittleEndianHost(subject);
  const { dtype, shape } = entry;
  const n = src.length / DTYPES[dtype].size;
  const host = DTYPES[dtype].host;
  const make = (data: Float32Array | Int32Array): HostTensor => ({ dtype: host, shape: [...shape], data, fileDtype: dtype });
  switch (dtype) {
    case 'F32': {
      const out = new Float32Array(n);
      new Uint8Array(out.buffer).set(src);
      return make(out);
    }
    case 'I32': {
      const out = new Int32Array(n);
      new Uint8Array(out.buffer).set(src);
      return make(out);
    }
    case 'F16':
    case 'BF16': {
      const a = aligned(src, 2);
      return make(decodeHalfs(new Uint16Array(a.buffer, a.byteOffset, n), dtype));
    }
    case 'F64': {
      const a = aligned(src, 8);
      const wide = new Float64Array(a.buffer, a.byteOffset, n);
      const out = new Float32Array(wide); // rounds to nearest float32
      for (let i = 0; i < n; i++) {
        const v = out[i]!;
        if ((v === Infinity || v === -Infinity) && Number.isFinite(wide[i]!)) {
          throw rangeError(subject, name, entry, i, String(wide[i]), 'beyond the float32 range');
        }
      }
      return make(out);
    }
    case 'I64':
    case 'U64': {
      const a = aligned(src, 8);
      const words = new Int32Array(a.buffer, a.byteOffset, n * 2); // little-endian (lo, hi) pairs
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const lo = words[2 * i]!;
        const hi = words[2 * i + 1]!;
        // An int64 fits int32 iff the high word is the sign extension of the low; a u64 iff both are 0 and lo >= 0.
        const fits = dtype === 'I64' ? hi === lo >> 31 : hi === 0 && lo >= 0;
        if (!fits) {
          const big = dtype === 'I64' ? (BigInt(hi) << 32n) | BigInt(lo >>> 0) : (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
          throw rangeError(subject, name, entry, i, String(big), 'outside the int32 range');
        }
        out[i] = lo;
      }
      return make(out);
    }
    case 'U32': {
      const a = aligned(src, 4);
      const words = new Uint32Array(a.buffer, a.byteOffset, n);
      for (let i = 0; i < n; i++) {
        if (words[i]! > 0x7fffffff) throw rangeError(subject, name, entry, i, String(words[i]), 'outside the int32 range');
      }
      return make(new Int32Array(words));
    }
    case 'I16': {
      const a = aligned(src, 2);
      return make(new Int32Array(new Int16Array(a.buffer, a.byteOffset, n)));
    }
    case 'U16': {
      const a = aligned(src, 2);
      return make(new Int32Array(new Uint16Array(a.buffer, a.byteOffset, n)));
    }
    case 'I8':
      return make(new Int32Array(new Int8Array(src.buffer, src.byteOffset, n)));
    case 'U8':
      return make(new Int32Array(src));
    case 'BOOL': {
      for (let i = 0; i < n; i++) {
        if (src[i]! > 1) throw rangeError(subject, name, entry, i, String(src[i]), 'but a BOOL byte must be 0 or 1');
      }
      return make(new Int32Array(src));
    }
  }
}

function isShared(buffer: ArrayBufferLike): boolean {
  return typeof SharedArrayBuffer !== 'undefined' && buffer instanceof SharedArrayBuffer;
}

/**
 * decodeTensor for bytes the caller hands over: when the file dtype is already the in-memory one
 * (F32, I32) and `bytes` spans the whole of its own ArrayBuffer (a fresh read of exactly this
 * tensor, so it starts aligned), the result is a view of `bytes` — no copy; the caller must not
 * reuse them. Anything else (other dtypes, a view into a larger or shared buffer) is decoded into
 * fresh memory as decodeTensor does, so a view of a whole file can never alias its tensors.
 */
export function adoptTensor(name: string, entry: SafetensorsEntry, bytes: Uint8Array, subject = '<buffer>'): HostTensor {
  const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && !isShared(bytes.buffer);
  if (!whole || (entry.dtype !== 'F32' && entry.dtype !== 'I32')) return decodeTensor(name, entry, bytes, subject);
  assertLittleEndianHost(subject);
  const f32 = entry.dtype === 'F32';
  return {
    dtype: f32 ? 'float32' : 'int32',
    shape: [...entry.shape],
    data: f32 ? new Float32Array(bytes.buffer) : new Int32Array(bytes.buffer),
    fileDtype: entry.dtype,
  };
}

/**
 * Reads a whole safetensors file held in memory. Validates everything (see parseSafetensorsHeader)
 * before decoding; the tensors own fresh memory and do not alias `bytes`.
 */
export function readSafetensors(bytes: Uint8Array, subject = '<buffer>'): SafetensorsContents {
  const n = readHeaderLength(bytes.subarray(0, 8), bytes.length, subject);
  const dataStart = 8 + n;
  const header = parseSafetensorsHeader(bytes.subarray(8, dataStart), bytes.length - dataStart, subject);
  const tensors = new Map<string, HostTensor>();
  for (const [name, entry] of header.entries) {
    const [b, e] = entry.dataOffsets;
    tensors.set(name, decodeTensor(name, entry, bytes.subarray(dataStart + b, dataStart + e), subject));
  }
  return { tensors, metadata: header.metadata };
}

// ---------------------------------------------------------------------------------------------
// Writing

/** One tensor placed in the output: where its bytes go, relative to the data buffer. */
export interface PlannedTensor {
  name: string;
  tensor: HostTensor;
  begin: number;
  end: number;
}

export interface SafetensorsPlan {
  /** The 8-byte length prefix followed by the space-padded JSON header. */
  head: Uint8Array;
  /** Tensors in the order their bytes follow the header. */
  tensors: PlannedTensor[];
  /** Size of the whole file. */
  totalBytes: number;
}

function entriesOf(tensors: SafetensorsTensors): Array<[string, HostTensor]> {
  return tensors instanceof Map ? [...(tensors as ReadonlyMap<string, HostTensor>)] : Object.entries(tensors);
}

function validateForWrite(name: unknown, t: HostTensor, subject: string): number {
  if (typeof name !== 'string')
    throw safetensorsError(subject, `tensor names must be strings, got ${typeof name}`, 'use the dotted state-dict keys');
  const at = `tensor ${quote(name)}`;
  const hint = 'pass { dtype, shape, data, fileDtype } with data matching dtype and shape';
  if (name === '__metadata__') throw safetensorsError(subject, `${at}: the name is reserved for metadata`, 'rename the tensor');
  if (hasLoneSurrogate(name))
    throw safetensorsError(subject, `${at}: the name has an unpaired UTF-16 surrogate and cannot be written as UTF-8`, 'fix the name');
  if (typeof t !== 'object' || t === null) throw safetensorsError(subject, `${at}: not a tensor`, hint);
  if (!isSafetensorsDtype(t.fileDtype)) {
    throw safetensorsError(subject, `${at}: fileDtype ${String(t.fileDtype)} is not one of ${SAFETENSORS_DTYPES.join(', ')}`, hint);
  }
  const spec = DTYPES[t.fileDtype];
  if (t.dtype !== spec.host) {
    throw safetensorsError(subject, `${at}: ${String(t.dtype)} data cannot be written as ${t.fileDtype} (which holds ${spec.host})`, hint);
  }
  const expectedArray = t.dtype === 'float32' ? Float32Array : Int32Array;
  if (!(t.data instanceof expectedArray)) {
    throw safetensorsError(
      subject,
      `${at}: dtype ${t.dtype} needs a ${expectedArray.name}, got ${Object.prototype.toString.call(t.data)}`,
      hint,
    );
  }
  if (!Array.isArray(t.shape) || t.shape.length > SAFETENSORS_MAX_RANK || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw safetensorsError(
      subject,
      `${at}: shape must be at most ${SAFETENSORS_MAX_RANK} non-negative integers, got ${JSON.stringify(t.shape)}`,
      hint,
    );
  }
  const count = elementCount(t.shape, () => {
    throw safetensorsError(subject, `${at}: shape ${shapeText(t.shape)} is too large`, hint);
  });
  if (count !== t.data.length) {
    throw safetensorsError(subject, `${at}: shape ${shapeText(t.shape)} has ${count} elements but data has ${t.data.length}`, hint);
  }
  return count * spec.size;
}

function utf8Compare(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/**
 * Lays out a file: validates every tensor and the metadata, orders tensors as the reference does
 * (descending dtype alignment, then name by UTF-8 bytes: plain name order when all share a dtype)
 * and builds the header (`__metadata__` first with sorted keys, then tensors in data order, padded
 * with spaces to a multiple of 8 bytes so data starts 8-aligned).
 */
export function planSafetensors(
  tensors: SafetensorsTensors,
  metadata: Readonly<Record<string, string>> | undefined,
  subject: string,
): SafetensorsPlan {
  const encoder = new TextEncoder();
  const items = entriesOf(tensors).map(([name, tensor]) => {
    const byteLength = validateForWrite(name, tensor, subject);
    return { name, tensor, byteLength, key: encoder.encode(name), rank: DTYPES[tensor.fileDtype].rank };
  });
  items.sort((a, b) => b.rank - a.rank || utf8Compare(a.key, b.key));

  const parts: string[] = [];
  if (metadata !== undefined) {
    if (typeof metadata !== 'object' || metadata === null)
      throw safetensorsError(subject, 'metadata must be an object of strings', 'pass e.g. { format: "pt" }');
    const keys = Object.keys(metadata).map((k) => ({ k, bytes: encoder.encode(k) }));
    keys.sort((a, b) => utf8Compare(a.bytes, b.bytes));
    const fields: string[] = [];
    for (const { k } of keys) {
      const v: unknown = metadata[k];
      if (typeof v !== 'string')
        throw safetensorsError(
          subject,
          `metadata value for ${quote(k)} must be a string, got ${typeof v}`,
          'stringify it (e.g. JSON.stringify) first',
        );
      if (hasLoneSurrogate(k) || hasLoneSurrogate(v))
        throw safetensorsError(subject, `metadata ${quote(k)} has an unpaired UTF-16 surrogate`, 'fix the text');
      fields.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
    }
    // An empty map is left out, as a missing one reads back as empty anyway.
    if (fields.length > 0) parts.push(`"__metadata__":{${fields.join(',')}}`);
  }
  const planned: PlannedTensor[] = [];
  let offset = 0;
  for (const { name, tensor, byteLength } of items) {
    const begin = offset;
    offset += byteLength;
    if (!Number.isSafeInteger(offset))
      throw safetensorsError(subject, 'the tensors add up to more bytes than can be addressed', 'split the checkpoint into shards');
    planned.push({ name, tensor, begin, end: offset });
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${tensor.fileDtype}","shape":[${tensor.shape.join(',')}],"data_offsets":[${begin},${offset}]}`,
    );
  }
  const json = encoder.encode(`{${parts.join(',')}}`);
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded > SAFETENSORS_MAX_HEADER_BYTES) {
    throw safetensorsError(
      subject,
      `the header would be ${padded} bytes, over the ${SAFETENSORS_MAX_HEADER_BYTES}-byte limit readers accept`,
      'split the checkpoint into shards',
    );
  }
  const head = new Uint8Array(8 + padded);
  new DataView(head.buffer).setUint32(0, padded, true); // high word stays 0: padded < 2^32
  head.set(json, 8);
  head.fill(0x20, 8 + json.length);
  return { head, tensors: planned, totalBytes: head.length + offset };
}

function checkRange(subject: string, p: PlannedTensor, data: Int32Array, min: number, max: number): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v < min || v > max) {
      throw safetensorsError(
        subject,
        `tensor ${quote(p.name)}: element ${i} is ${v}, outside ${p.tensor.fileDtype}'s range [${min}, ${max}]`,
        'choose a wider fileDtype (e.g. I32 or I64)',
      );
    }
  }
}

/**
 * The bytes a planned tensor occupies in the file, encoded in its fileDtype. F32/I32 are a view
 * of the tensor's own memory (no copy); other dtypes are converted into a new buffer: F16/BF16 by
 * round-to-nearest-even (exact for values that were read from F16/BF16), F64 exactly, integers
 * after a range check.
 */
export function encodeTensorData(p: PlannedTensor, subject = '<buffer>'): Uint8Array {
  assertLittleEndianHost(subject);
  const { tensor } = p;
  const bytesOf = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const floats = tensor.data as Float32Array;
  const ints = tensor.data as Int32Array;
  switch (tensor.fileDtype) {
    case 'F32':
    case 'I32':
      return bytesOf(tensor.data);
    case 'F16':
    case 'BF16':
      return bytesOf(encodeHalfs(floats, tensor.fileDtype));
    case 'F64':
      return bytesOf(new Float64Array(floats));
    case 'I64':
    case 'U64': {
      if (tensor.fileDtype === 'U64') checkRange(subject, p, ints, 0, 0x7fffffff);
      const words = new Int32Array(ints.length * 2);
      for (let i = 0; i < ints.length; i++) {
        const v = ints[i]!;
        words[2 * i] = v;
        words[2 * i + 1] = v >> 31; // sign extension
      }
      return bytesOf(words);
    }
    case 'U32':
      checkRange(subject, p, ints, 0, 0x7fffffff);
      return bytesOf(ints);
    case 'I16':
      checkRange(subject, p, ints, -0x8000, 0x7fff);
      return bytesOf(new Int16Array(ints));
    case 'U16':
      checkRange(subject, p, ints, 0, 0xffff);
      return bytesOf(new Uint16Array(ints));
    case 'I8':
      checkRange(subject, p, ints, -0x80, 0x7f);
      return bytesOf(new Int8Array(ints));
    case 'U8':
      checkRange(subject, p, ints, 0, 0xff);
      return new Uint8Array(ints);
    case 'BOOL':
      checkRange(subject, p, ints, 0, 1);
      return new Uint8Array(ints);
  }
}

/**
 * Serialises tensors (and optional string metadata) to safetensors bytes, laid out as the
 * reference writer does (see planSafetensors). Each tensor is written in its `fileDtype`:
 * float32 data as F32, F16, BF16 or F64; int32 data as I64 (sign-extended), I32 or the narrower
 * integer types after a range check. Reading the result gives back the same tensors bit for bit
 * (only NaN payloads are not kept through F64).
 */
export function writeSafetensors(tensors: SafetensorsTensors, metadata?: Readonly<Record<string, string>>): Uint8Array {
  const subject = '<buffer>';
  const plan = planSafetensors(tensors, metadata, subject);
  const out = new Uint8Array(plan.totalBytes);
  out.set(plan.head, 0);
  for (const p of plan.tensors) out.set(encodeTensorData(p, subject), plan.head.length + p.begin);
  return out;
}
