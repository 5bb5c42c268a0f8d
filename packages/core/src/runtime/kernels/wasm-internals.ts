// The slice of the tfjs wasm backend's internals that core's kernels use: heap offsets, tensor
// ids, raw exports. Typed structurally so core does not depend on the emscripten typings.
import * as tf from '@tensorflow/tfjs-core';

/** What the backend keeps per tensor (tfjs-backend-wasm's `TensorData`). */
export interface WasmTensorData {
  id: number;
  memoryOffset: number;
  shape: number[];
  dtype: tf.DataType;
  refCount: number;
}

export interface WasmModuleLike {
  HEAPU8: Uint8Array;
  _malloc(bytes: number): number;
  _free(ptr: number): void;
  tfjs: {
    registerTensor(id: number, size: number, memoryOffset: number): void;
    disposeData(id: number): void;
    getThreadsCount(): number;
  };
  [exported: string]: unknown;
}

export interface WasmBackendLike {
  wasm: WasmModuleLike;
  dataIdMap: { get(dataId: object): WasmTensorData | undefined };
  /** Private in the typings; read to hand out ids for heap views that cannot collide. */
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: tf.backend_util.BackendValues): tf.TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
  readSync(dataId: object): tf.backend_util.BackendValues;
}

/** The raw `_FusedMatMul` export (also what the stock `BatchMatMul` runs, with no epilogue). */
export type RawFusedMatMul = (
  aId: number,
  aShapePtr: number,
  aRank: number,
  bId: number,
  bShapePtr: number,
  bRank: number,
  transposeA: number,
  transposeB: number,
  activation: number,
  biasId: number,
  preluId: number,
  leakyreluAlpha: number,
  outId: number,
) => void;

export function asWasmBackend(backend: unknown): WasmBackendLike {
  return backend as WasmBackendLike;
}

export function tensorData(backend: WasmBackendLike, t: tf.TensorInfo): WasmTensorData {
  const data = backend.dataIdMap.get(t.dataId);
  if (!data) throw new Error(`wasm kernels: tensor ${t.shape.join('x')} is not on the wasm backend`);
  return data;
}

export function memoryOffset(backend: WasmBackendLike, t: tf.TensorInfo): number {
  return tensorData(backend, t).memoryOffset;
}

export function heapId(backend: WasmBackendLike, t: tf.TensorInfo): number {
  return tensorData(backend, t).id;
}

/** A fresh Float32Array over a tensor's bytes (re-create after any allocation: the heap may grow). */
export function f32View(backend: WasmBackendLike, t: tf.TensorInfo): Float32Array {
  return new Float32Array(backend.wasm.HEAPU8.buffer, memoryOffset(backend, t), tf.util.sizeFromShape(t.shape));
}

export function i32View(backend: WasmBackendLike, t: tf.TensorInfo): Int32Array {
  return new Int32Array(backend.wasm.HEAPU8.buffer, memoryOffset(backend, t), tf.util.sizeFromShape(t.shape));
}

/**
 * Registers `size` floats at `offset` as a C-side tensor without owning them, so a C kernel can
 * read or write a slice of a larger buffer in place. Release with `releaseView`, never `_free`.
 */
export function registerView(backend: WasmBackendLike, offset: number, size: number): number {
  const id = backend.dataIdNextNumber++;
  backend.wasm.tfjs.registerTensor(id, size, offset);
  return id;
}

/** Forgets a view id; the C side also drops any operator it cached on it (xnn packs weights per id). */
export function releaseView(backend: WasmBackendLike, id: number): void {
  backend.wasm.tfjs.disposeData(id);
}

/** A TensorInfo over the same data with another shape of equal size; owns nothing, never dispose it. */
export function reshapedInfo(t: tf.TensorInfo, shape: number[]): tf.TensorInfo {
  return { dataId: t.dataId, shape, dtype: t.dtype };
}

/** Calls another wasm kernel directly, the way tfjs kernels compose (no engine, no tape). */
export function runKernel(
  name: string,
  args: { inputs: tf.NamedTensorInfoMap; backend: WasmBackendLike; attrs?: tf.NamedAttrMap },
): tf.TensorInfo {
  const config = tf.getKernel(name, 'wasm');
  if (!config) throw new Error(`wasm kernels: kernel ${name} is not registered for wasm`);
  return config.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
}
