// torch.save files (the zip format of PyTorch ≥ 1.6): the pickle in `<archive>/data.pkl` is interpreted
// with an allow-list, then only the chosen state dict's tensors are read from `<archive>/data/<key>`. Browser-safe.
import { VlError } from '../errors.js';
import { describe, PyTuple, unpickle, type PyValue } from './pickle.js';
import { decodeTensor, type HostTensor, type SafetensorsDtype } from './safetensors.js';
import { locateStateDict, type StateDictLocation, type StateDictOptions } from './state-dict-locate.js';
import { findTorchGlobal, TorchStorageRef, TorchStorageType, type TorchTensorRef } from './torch-pickle.js';
import { readZipDirectory, readZipEntry, type ByteSource, type ZipDirectory, type ZipEntry } from './zip.js';

// ---------------------------------------------------------------------------------------------
// The archive

export const TORCH_MAX_PICKLE_BYTES = 1 << 30;

export interface TorchArchive {
  zip: ZipDirectory;
  /** The folder inside the zip (`archive/`, or the file's stem, or '' for none). */
  prefix: string;
  /** The unpickled object, tensors as TorchTensorRef. */
  root: PyValue;
  /** Off-list globals the pickle referenced, with counts (placeholders: never run). */
  placeholders: Map<string, number>;
  byteorder: 'little' | 'big';
  version: string | undefined;
}

export interface OpenTorchOptions {
  /** Largest data.pkl accepted (default 1 GiB). */
  maxPickleBytes?: number;
  /** Check CRC-32 of every entry read (default true). */
  verifyCrc?: boolean;
  /** A native CRC-32 (the node entry passes zlib's); default: the portable one. */
  crc32?: (bytes: Uint8Array) => number;
}

function archiveError(source: ByteSource, entry: string | undefined, message: string, hint?: string): VlError {
  return new VlError('CHECKPOINT_INVALID', message, {
    subject: entry === undefined ? source.name : `${source.name}: ${entry}`,
    hint: hint ?? 'the checkpoint is damaged or was not written by torch.save; save or download it again',
  });
}

function findRecordPrefix(zip: ZipDirectory): string {
  const pickles = [...zip.entries.keys()].filter((n) => n === 'data.pkl' || (n.endsWith('/data.pkl') && n.indexOf('/') === n.length - 9));
  if (pickles.length !== 1) {
    const what = pickles.length === 0 ? 'no data.pkl entry' : `${pickles.length} data.pkl entries (${pickles.slice(0, 3).join(', ')})`;
    throw archiveError(zip.source, undefined, `a zip with ${what}: not a torch.save archive`);
  }
  const prefix = pickles[0]!.slice(0, -'data.pkl'.length);
  if (zip.entries.has(`${prefix}constants.pkl`) || [...zip.entries.keys()].some((n) => n.startsWith(`${prefix}code/`))) {
    throw new VlError(
      'CHECKPOINT_UNSUPPORTED',
      'this is a TorchScript archive (torch.jit.save), which holds code, not a torch.save state dict',
      {
        subject: zip.source.name,
        hint: "in Python: m = torch.jit.load(path); torch.save(m.state_dict(), 'model.pth')",
      },
    );
  }
  return prefix;
}

async function readSmallText(zip: ZipDirectory, name: string, verifyCrc: boolean): Promise<string | undefined> {
  const entry = zip.entries.get(name);
  if (!entry) return undefined;
  return new TextDecoder().decode(await readZipEntry(zip, entry, { maxBytes: 64, verifyCrc })).trim();
}

/** Reads the directory and the pickle (not the tensors). Tensors stay references until materialised. */
export async function openTorchArchive(zip: ZipDirectory, options: OpenTorchOptions = {}): Promise<TorchArchive> {
  const verifyCrc = options.verifyCrc !== false;
  const prefix = findRecordPrefix(zip);
  const byteorderText = await readSmallText(zip, `${prefix}byteorder`, verifyCrc);
  if (byteorderText !== undefined && byteorderText !== 'little' && byteorderText !== 'big') {
    throw archiveError(zip.source, `${prefix}byteorder`, `byte order ${JSON.stringify(byteorderText)} is neither little nor big`);
  }
  const version =
    (await readSmallText(zip, `${prefix}version`, verifyCrc)) ?? (await readSmallText(zip, `${prefix}.data/version`, verifyCrc));
  const pklName = `${prefix}data.pkl`;
  const pkl = await readZipEntry(zip, zip.entries.get(pklName)!, { maxBytes: options.maxPickleBytes ?? TORCH_MAX_PICKLE_BYTES, verifyCrc });
  const storages = new Map<string, TorchStorageRef>();
  const subject = `${zip.source.name}: ${pklName}`;
  const persistentLoad = (pid: PyValue): PyValue => {
    const parts = pid instanceof PyTuple ? pid.items : undefined;
    if (!parts || parts.length !== 5 || parts[0] !== 'storage') {
      throw new VlError('CHECKPOINT_INVALID', `persistent id ${describe(pid)} is not ('storage', type, key, location, numel)`, { subject });
    }
    const [, type, key, location, numel] = parts;
    if (!(type instanceof TorchStorageType)) {
      throw new VlError('CHECKPOINT_INVALID', `storage type is ${describe(type)}, not a torch storage class`, { subject });
    }
    if (typeof key !== 'string' || !/^[A-Za-z0-9_.-]{1,200}$/.test(key) || typeof location !== 'string') {
      throw new VlError('CHECKPOINT_INVALID', 'a storage key or location is not a plain string', { subject });
    }
    if (typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) {
      throw new VlError('CHECKPOINT_INVALID', `storage ${key}: element count ${String(numel)} is not a non-negative integer`, { subject });
    }
    const seen = storages.get(key);
    if (seen) {
      if (seen.type.name !== type.name || seen.numel !== numel) {
        throw new VlError(
          'CHECKPOINT_INVALID',
          `storage ${key} is declared twice, as ${seen.type.name}×${seen.numel} and ${type.name}×${numel}`,
          { subject },
        );
      }
      return seen;
    }
    const ref = new TorchStorageRef(key, type, numel, location);
    storages.set(key, ref);
    return ref;
  };
  const { value, placeholders } = unpickle(pkl, { findGlobal: findTorchGlobal, persistentLoad }, { subject });
  return { zip, prefix, root: value, placeholders, byteorder: byteorderText === 'big' ? 'big' : 'little', version };
}

// ---------------------------------------------------------------------------------------------
// Materialising tensors

/** A broadcast view (stride 0) may describe more elements than its storage holds, but not beyond this. */
export const TORCH_MAX_BROADCAST_ELEMENTS = 1 << 24;
const ELEMENT_SIZE: Readonly<Record<SafetensorsDtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  U16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  U32: 4,
  U64: 8,
};

/** Copies the elements of a strided view into C order. */
function gather(
  storage: Uint8Array,
  size: number,
  offset: number,
  shape: readonly number[],
  stride: readonly number[],
  count: number,
): Uint8Array {
  const rank = shape.length;
  let contiguous = true;
  for (let d = rank - 1, expect = 1; d >= 0; d--) {
    if (shape[d]! !== 1 && stride[d]! !== expect) contiguous = false;
    expect *= shape[d]!;
  }
  if (contiguous) return storage.slice(offset * size, (offset + count) * size);
  const out = new Uint8Array(count * size);
  if (count === 0) return out;
  const index = new Array<number>(rank).fill(0);
  const last = rank - 1;
  const inner = shape[last]!;
  const innerStride = stride[last]! * size;
  let at = 0;
  for (;;) {
    let src = offset;
    for (let d = 0; d < last; d++) src += index[d]! * stride[d]!;
    src *= size;
    for (let i = 0; i < inner; i++, src += innerStride, at += size) {
      for (let k = 0; k < size; k++) out[at + k] = storage[src + k]!;
    }
    let d = last - 1;
    while (d >= 0 && ++index[d]! === shape[d]!) index[d--] = 0;
    if (d < 0) return out;
  }
}

function swapBytes(bytes: Uint8Array, size: number): void {
  for (let i = 0; i < bytes.length; i += size) bytes.subarray(i, i + size).reverse();
}

/** Checks a view against its storage (bounds with BigInt, since stride × size may pass 2^53) and returns its element count. */
function checkView(t: TorchTensorRef, fail: (m: string) => never): number {
  let count = 1n;
  let last = BigInt(t.offset);
  for (let d = 0; d < t.shape.length; d++) {
    const n = BigInt(t.shape[d]!);
    count *= n;
    if (n > 0n) last += (n - 1n) * BigInt(t.stride[d]!);
  }
  const shapeText = `[${t.shape.join(',')}]`;
  if (count === 0n) return 0;
  if (last >= BigInt(t.storage.numel)) {
    fail(
      `shape ${shapeText}, stride [${t.stride.join(',')}] and offset ${t.offset} reach element ${last}, outside its storage of ${
        t.storage.numel
      }`,
    );
  }
  if (count > BigInt(t.storage.numel) && count > BigInt(TORCH_MAX_BROADCAST_ELEMENTS)) {
    fail(`shape ${shapeText} declares ${count} elements on a storage of ${t.storage.numel} (a broadcast view that large is refused)`);
  }
  return Number(count);
}

export interface StorageReader {
  /** The storage's bytes, exactly numel × element size (fails when the entry is missing or of another size). */
  (storage: TorchStorageRef): Promise<Uint8Array>;
}

/** Reads each storage entry once per call, checking its size against the pickle's declaration. */
export function storageReader(archive: TorchArchive, options: OpenTorchOptions = {}): StorageReader {
  const { zip, prefix } = archive;
  return async (storage) => {
    const name = `${prefix}data/${storage.key}`;
    const entry: ZipEntry | undefined = zip.entries.get(name);
    if (!entry)
      throw archiveError(zip.source, name, `storage ${storage.key} is referenced by the pickle but the archive has no entry ${name}`);
    const dtype = storage.type.dtype;
    const bytes = storage.numel * (dtype ? ELEMENT_SIZE[dtype] : 1);
    if (entry.size !== bytes) {
      const rel = entry.size < bytes ? 'shorter than' : 'longer than';
      throw archiveError(
        zip.source,
        name,
        `the entry is ${entry.size} bytes, ${rel} the ${bytes} bytes of ${storage.type.name}×${storage.numel} the pickle declares`,
      );
    }
    return readZipEntry(zip, entry, { maxBytes: bytes, verifyCrc: options.verifyCrc });
  };
}

/** Decodes one view of a storage's bytes into a HostTensor (C order, float32/int32 in memory). */
export function materializeTensor(archive: TorchArchive, name: string, t: TorchTensorRef, storageBytes: Uint8Array): HostTensor {
  const entryName = `${archive.prefix}data/${t.storage.key}`;
  const fail = (message: string): never => {
    throw archiveError(archive.zip.source, entryName, `tensor ${JSON.stringify(name)}: ${message}`);
  };
  const dtype = t.storage.type.dtype;
  if (!dtype || t.storage.type.name === 'UntypedStorage') {
    throw new VlError(
      'CHECKPOINT_UNSUPPORTED',
      `tensor ${JSON.stringify(name)} is stored as ${t.storage.type.name}, which this reader cannot decode`,
      {
        subject: `${archive.zip.source.name}: ${entryName}`,
        hint: 'convert it in PyTorch first (e.g. t.float() for complex or quantized tensors), or leave it out of the state dict',
      },
    );
  }
  const count = checkView(t, fail);
  const size = ELEMENT_SIZE[dtype];
  const bytes = gather(storageBytes, size, t.offset, t.shape, t.stride, count);
  if (archive.byteorder === 'big' && size > 1) swapBytes(bytes, size);
  if ((dtype === 'F32' || dtype === 'I32') && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) {
    // gather returned fresh memory of exactly this tensor: use it as the tensor's data instead of copying again.
    const data = dtype === 'F32' ? new Float32Array(bytes.buffer) : new Int32Array(bytes.buffer);
    return { dtype: dtype === 'F32' ? 'float32' : 'int32', shape: [...t.shape], data, fileDtype: dtype };
  }
  try {
    return decodeTensor(
      name,
      { dtype, shape: [...t.shape], dataOffsets: [0, bytes.length] },
      bytes,
      `${archive.zip.source.name}: ${entryName}`,
    );
  } catch (cause) {
    if (cause instanceof VlError)
      throw new VlError('CHECKPOINT_INVALID', cause.message.replace(/^SAFETENSORS_INVALID \[[^\]]*\]: /, ''), {
        subject: `${archive.zip.source.name}: ${entryName}`,
        hint: cause.hint,
        cause,
      });
    throw cause;
  }
}

// ---------------------------------------------------------------------------------------------
// One call: the state dict of a torch.save archive

export interface CheckpointReport {
  /** 'torch' (torch.save zip), 'safetensors' or 'safetensors-sharded'. */
  format: 'torch' | 'safetensors' | 'safetensors-sharded';
  /** The files read. */
  files: string[];
  /** Where the state dict was found: '(root)', or the key holding it (e.g. 'model', 'state_dict'). */
  container: string;
  /** The prefix removed from every key (Lightning's module attribute, DDP's `module.`), or ''. */
  strippedPrefix: string;
  /** The top-level keys next to the state dict (e.g. 'optimizer', 'config', 'epoch'). */
  otherKeys: string[];
  /** Off-list globals in the file (never run), e.g. 'argparse.Namespace ×1'. */
  placeholders: string[];
  /** Entries of the state dict that are not tensors and were left out (name: what it is). */
  skipped: string[];
}

export interface ReadTorchOptions extends OpenTorchOptions, StateDictOptions {
  /** Only these keys (after prefix stripping) are read; the others are not touched. */
  filter?: (name: string) => boolean;
}

export interface CheckpointTensors {
  tensors: Map<string, HostTensor>;
  report: CheckpointReport;
}

export function placeholderList(placeholders: Map<string, number>): string[] {
  return [...placeholders].map(([name, n]) => `${name} ×${n}`);
}

/** Reads the state dict of a torch.save zip from any ByteSource; see readCheckpoint for files and folders. */
export async function readTorchCheckpoint(source: ByteSource, options: ReadTorchOptions = {}): Promise<CheckpointTensors> {
  const zip = await readZipDirectory(source, { crc32: options.crc32 });
  const archive = await openTorchArchive(zip, options);
  const location: StateDictLocation = locateStateDict(archive.root, options, `${source.name}: ${archive.prefix}data.pkl`);
  const tensors = await materializeStateDict(archive, location, options);
  return {
    tensors,
    report: {
      format: 'torch',
      files: [source.name],
      container: location.container,
      strippedPrefix: location.strippedPrefix,
      otherKeys: location.otherKeys,
      placeholders: placeholderList(archive.placeholders),
      skipped: location.skipped,
    },
  };
}

/** Reads every selected tensor, one storage at a time (views of one storage share a single read). */
export async function materializeStateDict(
  archive: TorchArchive,
  location: StateDictLocation,
  options: ReadTorchOptions = {},
): Promise<Map<string, HostTensor>> {
  const byStorage = new Map<string, Array<[string, TorchTensorRef]>>();
  for (const [name, ref] of location.tensors) {
    if (options.filter && !options.filter(name)) continue;
    const group = byStorage.get(ref.storage.key);
    if (group) group.push([name, ref]);
    else byStorage.set(ref.storage.key, [[name, ref]]);
  }
  const read = storageReader(archive, options);
  const decoded = new Map<string, HostTensor>();
  for (const group of byStorage.values()) {
    const bytes = await read(group[0]![1].storage);
    for (const [name, ref] of group) decoded.set(name, materializeTensor(archive, name, ref, bytes));
  }
  // Keep the state dict's own order.
  const ordered = new Map<string, HostTensor>();
  for (const name of location.tensors.keys()) {
    const t = decoded.get(name);
    if (t) ordered.set(name, t);
  }
  return ordered;
}
