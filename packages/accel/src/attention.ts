// VlAttention: inference multi-head attention as one native pass per (batch, head) — scale·Q·Kᵀ, an
// additive mask or bias, row softmax, ·V — reading Q, K and V where the projections left them
// (strided views of [B, T, 3D] qkv or [B, T, D] q/k/v, or cached [B, H, T, Dh]) and writing the merged
// [B, Tq, H·Dh] output. What it saves against the composed ops: splitting qkv, four head transposes,
// the [B, H, Tq, Tk] score tensor's scale/add/softmax passes. No gradient: core calls it only when
// no tape is recording, dropout is off and the probabilities are not asked for.
import type { NativeBinding } from './binding.js';
import { asWasm, heapOf, offsetOf, sizeOf, type TensorInfo } from './wasm.js';
import type * as tfc from '@tensorflow/tfjs-core';

/** Where a head's rows sit inside a tensor's data, in floats: offset, then batch, head and row strides. */
export type AttentionView = readonly [offset: number, batch: number, head: number, row: number];

export interface AttentionAttrs {
  heads: number;
  headDim: number;
  scale: number;
  queryBatch: number;
  queryLength: number;
  keyLength: number;
  /** Batches of k and v; query batch b reads kvRows[b] (or b when kvRows is absent). */
  kvBatch: number;
  qView: AttentionView;
  kView: AttentionView;
  vView: AttentionView;
  /** The mask's batch dimension follows the key/value rows (one padding row per image), not the queries. */
  maskByKvRow?: boolean;
}

/** Element strides of a rank-4 mask broadcast to [B, H, Tq, Tk] (0 on size-1 dims), or an error. */
export function maskStrides(shape: readonly number[], want: readonly [number, number, number, number]): [number, number, number, number] {
  if (shape.length > 4) throw new Error(`VlAttention: mask of rank ${shape.length}, at most 4`);
  const dims = [...new Array<number>(4 - shape.length).fill(1), ...shape];
  const strides = [0, 0, 0, 0];
  let stride = 1;
  for (let d = 3; d >= 0; d--) {
    const size = dims[d] as number;
    if (size !== 1 && size !== want[d]) throw new Error(`VlAttention: mask ${shape} does not broadcast to [${want}]`);
    strides[d] = size === 1 ? 0 : stride;
    stride *= size;
  }
  return strides as [number, number, number, number];
}

const params = new Float64Array(30);

export function attentionKernel(native: NativeBinding): tfc.KernelFunc {
  return (args) => {
    const backend = asWasm(args.backend);
    const { q, k, v, mask, kvRows } = args.inputs as Record<'q' | 'k' | 'v', TensorInfo> & Partial<Record<'mask' | 'kvRows', TensorInfo>>;
    const a = args.attrs as unknown as AttentionAttrs;
    for (const t of [q, k, v, ...(mask ? [mask] : [])]) {
      if (t.dtype !== 'float32') throw new Error(`VlAttention: expected float32 tensors, got ${t.dtype}`);
    }
    if (kvRows && (kvRows.dtype !== 'int32' || sizeOf(kvRows.shape) !== a.queryBatch)) {
      throw new Error(`VlAttention: kvRows must be ${a.queryBatch} int32 values, got ${kvRows.dtype} ${kvRows.shape}`);
    }
    const d = a.heads * a.headDim;
    const out = backend.makeOutput([a.queryBatch, a.queryLength, d], 'float32');
    const maskBatch = a.maskByKvRow ? a.kvBatch : a.queryBatch;
    const m = mask ? maskStrides(mask.shape, [maskBatch, a.heads, a.queryLength, a.keyLength]) : [0, 0, 0, 0];
    const at = (t: TensorInfo, view: AttentionView) => offsetOf(backend, t) + 4 * view[0];
    params.set([
      a.queryBatch,
      a.heads,
      a.queryLength,
      a.keyLength,
      a.headDim,
      a.kvBatch,
      at(q, a.qView),
      a.qView[1],
      a.qView[2],
      a.qView[3],
      at(k, a.kView),
      a.kView[1],
      a.kView[2],
      a.kView[3],
      at(v, a.vView),
      a.vView[1],
      a.vView[2],
      a.vView[3],
      offsetOf(backend, out),
      a.queryLength * d,
      a.headDim,
      d,
      kvRows ? offsetOf(backend, kvRows) : -1,
      mask ? offsetOf(backend, mask) : -1,
      ...m,
      a.scale,
      a.maskByKvRow ? 1 : 0,
    ]);
    native.attention(heapOf(backend), params);
    return out;
  };
}
