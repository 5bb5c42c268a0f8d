// The slice of tfjs-backend-wasm's internals the native kernels use: where a tensor's bytes sit in
// the WebAssembly heap. Typed structurally so this package needs no emscripten typings.
import type * as tfc from '@tensorflow/tfjs-core';

export type Tf = typeof tfc;
export type TensorInfo = tfc.TensorInfo;

export interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number; shape: number[]; dtype: string } | undefined };
  makeOutput(shape: number[], dtype: tfc.DataType): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
  /** Adds a reference to a tensor's data (how the wasm Reshape shares a buffer). */
  incRef(dataId: object): void;
}

function isWasmBackend(backend: unknown): backend is WasmBackendLike {
  const b = backend as Partial<WasmBackendLike> | null;
  return (
    !!b && typeof b === 'object' && !!b.wasm && b.wasm.HEAPU8 instanceof Uint8Array && !!b.dataIdMap && typeof b.makeOutput === 'function'
  );
}

export function asWasm(backend: unknown): WasmBackendLike {
  if (!isWasmBackend(backend)) throw new Error('@vl/accel: kernels run on the tfjs wasm backend only');
  return backend;
}

/** Byte offset of a tensor's data in the heap. */
export function offsetOf(backend: WasmBackendLike, t: TensorInfo): number {
  const data = backend.dataIdMap.get(t.dataId);
  if (!data) throw new Error(`@vl/accel: tensor ${t.shape.join('x')} is not on the wasm backend`);
  return data.memoryOffset;
}

/** The heap's current buffer; read it after the last allocation of a kernel (the heap may grow). */
export function heapOf(backend: WasmBackendLike): ArrayBuffer {
  return backend.wasm.HEAPU8.buffer as ArrayBuffer;
}

export function sizeOf(shape: readonly number[]): number {
  let size = 1;
  for (const d of shape) size *= d;
  return size;
}
