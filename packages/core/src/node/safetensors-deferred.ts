// F32/I32 tensors of a safetensors file whose bytes stay in the file until used (readCheckpoint's
// `deferData`): loadStateDict on wasm reads them straight into each variable's heap memory, so a
// 1 GB checkpoint never exists as JS arrays (no 1 GB of transient buffers to fault in, copy and
// collect). Reads are synchronous (a heap view must not move mid-read) and reopen the file each
// time, so nothing is left open; a file replaced since its header was read is an error. Node-only.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { VlError } from '../errors.js';
import type { DeferredHostTensor, SafetensorsEntry } from '../io/safetensors.js';
import { IO_HINT } from './file-source.js';

/** What the file looked like when its header was read. */
export interface FileStamp {
  size: number;
  mtimeMs: number;
}

/** readSync stops at 2 GiB per call; larger tensors are read in pieces. */
const MAX_READ = 1 << 30;

/** Reads bytes [position, position + dst.length) of `path` into `dst`, checking the file is the one stamped. */
function readRangeSync(path: string, stamp: FileStamp, position: number, dst: Uint8Array, what: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (cause) {
    throw new VlError('CHECKPOINT_INVALID', `cannot reopen to read ${what}: ${(cause as Error).message}`, {
      subject: path,
      hint: IO_HINT,
      cause,
    });
  }
  try {
    const info = fstatSync(fd);
    if (info.size !== stamp.size || info.mtimeMs !== stamp.mtimeMs) {
      throw new VlError('CHECKPOINT_INVALID', `the file changed after its header was read, before ${what} was read`, {
        subject: path,
        hint: 'do not replace a checkpoint while it loads; load it again',
      });
    }
    let done = 0;
    while (done < dst.length) {
      const n = readSync(fd, dst, done, Math.min(dst.length - done, MAX_READ), position + done);
      if (n === 0) {
        throw new VlError('CHECKPOINT_INVALID', `file ended at byte ${position + done} while reading ${what}`, {
          subject: path,
          hint: IO_HINT,
        });
      }
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * An F32 or I32 tensor at byte `position` of `path` (the caller validated the header against the
 * stamped size). `data` is an own enumerable getter, so a spread copy `{...t}` reads and keeps the
 * values; `readInto` is non-enumerable and is not copied.
 */
export function deferredTensor(
  path: string,
  stamp: FileStamp,
  name: string,
  entry: SafetensorsEntry,
  position: number,
): DeferredHostTensor {
  if (entry.dtype !== 'F32' && entry.dtype !== 'I32') throw new Error(`deferredTensor: ${entry.dtype} needs decoding`);
  const f32 = entry.dtype === 'F32';
  const byteLength = entry.dataOffsets[1] - entry.dataOffsets[0];
  const what = `tensor ${JSON.stringify(name)}`;
  let data: Float32Array | Int32Array | null = null;
  const tensor = { dtype: f32 ? 'float32' : 'int32', shape: [...entry.shape], fileDtype: entry.dtype } as DeferredHostTensor;
  Object.defineProperty(tensor, 'data', {
    enumerable: true,
    get() {
      if (!data) {
        const bytes = new Uint8Array(byteLength);
        readRangeSync(path, stamp, position, bytes, what);
        data = f32 ? new Float32Array(bytes.buffer) : new Int32Array(bytes.buffer);
      }
      return data;
    },
    set(value: Float32Array | Int32Array) {
      data = value;
    },
  });
  Object.defineProperty(tensor, 'readInto', {
    enumerable: false,
    value(dst: Uint8Array): void {
      if (dst.length !== byteLength) throw new Error(`readInto: ${what} has ${byteLength} bytes, the destination ${dst.length}`);
      if (data) dst.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      else readRangeSync(path, stamp, position, dst, what);
    },
  });
  return tensor;
}
