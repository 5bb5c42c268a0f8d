// Writing host values into a tensor's existing backend memory (what loadStateDict does on wasm):
// one copy into the heap, no malloc/free per weight, instead of tf.tensor (a fresh heap copy) +
// assign (which frees the placeholder). Browser-safe: wasm internals are read structurally.
import * as tf from '@tensorflow/tfjs-core';
import { asWasmBackend } from '../runtime/kernels/wasm-internals.js';

/** Host data as loadStateDict receives it. */
export interface HostValues {
  dtype: 'float32' | 'int32';
  data: Float32Array | Int32Array;
  /** A value still in its file: read straight into the heap, never held as a JS array. */
  readInto?: (dst: Uint8Array) => void;
}

/**
 * Copies `value` over `target`'s memory in place and returns true, when that is safe: the wasm
 * backend, the same dtype (no cast), the same element count, and memory that no other tensor
 * shares (refCount 1: a reshape or an identity shares memory and must not see the write).
 * Otherwise changes nothing and returns false; the caller takes the ordinary path.
 */
export function writeHostInPlace(target: tf.Tensor, value: HostValues): boolean {
  if (tf.getBackend() !== 'wasm' || target.dtype !== value.dtype) return false;
  const backend = asWasmBackend(tf.backend());
  const info = backend.dataIdMap.get(target.dataId);
  if (!info || info.refCount !== 1 || info.dtype !== target.dtype) return false;
  const byteLength = target.size * 4; // float32 and int32 alike
  if (!value.readInto && value.data.byteLength !== byteLength) return false;
  try {
    if (value.readInto) {
      // Synchronous, so the heap cannot grow (and the view go stale) while the file is read into it.
      // A failed read (the file changed) throws with the values partly written: loaders dispose the model.
      value.readInto(new Uint8Array(backend.wasm.HEAPU8.buffer, info.memoryOffset, byteLength));
    } else {
      backend.wasm.HEAPU8.set(new Uint8Array(value.data.buffer, value.data.byteOffset, byteLength), info.memoryOffset);
    }
  } finally {
    // The C side caches work per tensor id (XNNPACK packs a matmul's constant weights once per id):
    // forget this id and register it again, so nothing computed from the old values survives.
    backend.wasm.tfjs.disposeData(info.id);
    backend.wasm.tfjs.registerTensor(info.id, target.size, info.memoryOffset);
  }
  return true;
}
