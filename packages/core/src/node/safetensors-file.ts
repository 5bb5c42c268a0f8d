// safetensors files on disk: read the header first and validate it against the file size before
// allocating anything, then read each tensor straight into its own memory; write atomically.
import { open, type FileHandle } from 'node:fs/promises';
import { writeFileAtomic } from './atomic.js';
import {
  assertLittleEndianHost,
  adoptTensor,
  encodeTensorData,
  parseSafetensorsHeader,
  planSafetensors,
  readHeaderLength,
  safetensorsError,
  type HostTensor,
  type SafetensorsContents,
  type SafetensorsHeader,
  type SafetensorsTensors,
} from '../io/safetensors.js';
import { isVlError } from '../errors.js';

const IO_HINT = 'check that the path exists, is a regular file and is readable';

/** Fills `dst` from `position`; a short read means the file shrank since fstat. */
async function readExactly(handle: FileHandle, dst: Uint8Array, position: number, subject: string): Promise<void> {
  let done = 0;
  while (done < dst.length) {
    const { bytesRead } = await handle.read(dst, done, dst.length - done, position + done);
    if (bytesRead === 0) {
      throw safetensorsError(
        subject,
        `file ended at byte ${position + done} while reading bytes [${position}, ${position + dst.length})`,
        'the file changed while being read (still downloading?); retry when it is complete',
      );
    }
    done += bytesRead;
  }
}

/** Allocation that reports an engine limit (a huge but honest tensor) as a typed error. */
function allocate(length: number, subject: string, what: string): Uint8Array {
  try {
    return new Uint8Array(length);
  } catch (cause) {
    throw safetensorsError(
      subject,
      `cannot allocate ${length} bytes for ${what}`,
      'the tensor is larger than this JavaScript engine allows; split or shard the checkpoint',
      cause,
    );
  }
}

async function withFile<T>(path: string, body: (handle: FileHandle, size: number) => Promise<T>): Promise<T> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (cause) {
    throw safetensorsError(path, `cannot open: ${(cause as Error).message}`, IO_HINT, cause);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw safetensorsError(path, 'not a regular file', IO_HINT);
    return await body(handle, stat.size);
  } catch (cause) {
    if (isVlError(cause)) throw cause;
    throw safetensorsError(path, `read failed: ${(cause as Error).message}`, IO_HINT, cause);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** Reads and validates the header: N is checked against the file size and the cap before the N-byte read. */
async function readHeader(handle: FileHandle, size: number, subject: string): Promise<SafetensorsHeader> {
  const prefix = new Uint8Array(8);
  if (size >= 8) await readExactly(handle, prefix, 0, subject);
  const n = readHeaderLength(prefix, size, subject);
  const headerBytes = allocate(n, subject, 'the header');
  await readExactly(handle, headerBytes, 8, subject);
  return parseSafetensorsHeader(headerBytes, size - 8 - n, subject);
}

/**
 * Lists a file's tensors (dtype, shape, offsets) and metadata without reading tensor data.
 * The header is validated fully, so a header that passes here also loads.
 */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  return withFile(path, (handle, size) => readHeader(handle, size, path));
}

/**
 * Reads a safetensors file: validates the header completely against the file size, then reads
 * each tensor into memory of its own (F32/I32 straight into the result, others through one
 * scratch buffer per tensor), so peak memory is about the decoded model.
 */
export async function readSafetensorsFile(path: string): Promise<SafetensorsContents> {
  assertLittleEndianHost(path);
  return withFile(path, async (handle, size) => {
    const header = await readHeader(handle, size, path);
    const dataStart = 8 + header.headerByteLength;
    const tensors = new Map<string, HostTensor>();
    for (const [name, entry] of header.entries) {
      const [b, e] = entry.dataOffsets;
      const bytes = allocate(e - b, path, `tensor ${JSON.stringify(name)}`);
      await readExactly(handle, bytes, dataStart + b, path);
      // Fresh buffer, aligned and exactly sized: F32/I32 become the tensor's memory without a copy.
      tensors.set(name, adoptTensor(name, entry, bytes, path));
    }
    return { tensors, metadata: header.metadata };
  });
}

/**
 * Writes tensors to `path` atomically (temp file in the same folder, fsync, rename), streaming one
 * tensor at a time so the file is never assembled in memory. Layout and dtypes as writeSafetensors.
 */
export async function writeSafetensorsFile(
  path: string,
  tensors: SafetensorsTensors,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  const plan = planSafetensors(tensors, metadata, path); // validation errors surface before any file is created
  try {
    await writeFileAtomic(path, async (write) => {
      await write(plan.head);
      for (const p of plan.tensors) await write(encodeTensorData(p, path));
    });
  } catch (cause) {
    if (isVlError(cause)) throw cause;
    throw safetensorsError(
      path,
      `write failed: ${(cause as Error).message}`,
      'check that the folder exists and is writable, and that the disk has room',
      cause,
    );
  }
}
