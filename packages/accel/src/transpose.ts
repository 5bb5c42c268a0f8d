// Transpose on the wasm heap with the native kernel (src/native/transpose.c), replacing stock wasm's
// Transpose: its generic strided loop takes ~0.2 s on the ViT patch embedding of 8 images at 384 px
// ([B,C,gh,P,gw,P] → [B,gh,gw,C,P,P]), and decoding runs hundreds of small head splits per batch.
// The shape is simplified first (size-1 dims dropped, dims that stay adjacent merged), so most calls
// reach the kernel as a rank-2 to rank-4 problem; a permutation that moves nothing shares the input's
// buffer, as Reshape does. 4-byte dtypes (float32, int32) only: bool and the rest go to the kernel
// registered before.
import type { NativeBinding } from './binding.js';
import { asWasm, heapOf, offsetOf, sizeOf, type TensorInfo } from './wasm.js';
import type * as tfc from '@tensorflow/tfjs-core';

/** Ranks the native kernel takes after simplification (VL_TRANSPOSE_MAX_RANK in kernels.h). */
export const MAX_TRANSPOSE_RANK = 8;

/**
 * The same transpose on fewer dims: size-1 dims dropped, and input dims `d`, `d+1` that stay next
 * to each other, in order, in the output merged into one. `perm` is then the identity exactly when
 * the transpose moves no element.
 */
export function simplifyTranspose(shape: readonly number[], perm: readonly number[]): { shape: number[]; perm: number[] } {
  // Keep only dims of size > 1, renumbered in input order.
  const kept: number[] = [];
  const renumber = new Map<number, number>();
  shape.forEach((size, d) => {
    if (size !== 1) {
      renumber.set(d, kept.length);
      kept.push(size);
    }
  });
  const reducedPerm = perm.filter((d) => renumber.has(d)).map((d) => renumber.get(d) as number);
  // Runs of consecutive input dims in the output order become one dim each.
  const groups: number[][] = [];
  for (const d of reducedPerm) {
    const last = groups[groups.length - 1];
    if (last && last[last.length - 1] === d - 1) last.push(d);
    else groups.push([d]);
  }
  // Merged input dims, in input order; the output order lists them by their first input dim.
  const byInput = [...groups].sort((a, b) => (a[0] as number) - (b[0] as number));
  const index = new Map(byInput.map((g, i) => [g, i]));
  return {
    shape: byInput.map((g) => g.reduce((size, d) => size * (kept[d] as number), 1)),
    perm: groups.map((g) => index.get(g) as number),
  };
}

const params = new Float64Array(3 + 2 * MAX_TRANSPOSE_RANK);

/** The Transpose kernel; `previous` (stock wasm or core's) takes the dtypes and ranks it does not. */
export function transposeKernel(native: Pick<NativeBinding, 'transpose'>, previous: tfc.KernelConfig): tfc.KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { perm } = args.attrs as unknown as { perm: number[] };
    if (x.dtype !== 'float32' && x.dtype !== 'int32') return previous.kernelFunc(args);
    const simple = simplifyTranspose(x.shape, perm);
    if (simple.shape.length > MAX_TRANSPOSE_RANK) return previous.kernelFunc(args);
    const backend = asWasm(args.backend);
    const outShape = perm.map((d) => x.shape[d] as number);
    const size = sizeOf(x.shape);
    if (size > 0 && simple.perm.every((d, i) => d === i)) {
      // Nothing moves (e.g. [B, 1, H, dh] → [B, H, 1, dh] in one-token decoding): share the buffer.
      backend.incRef(x.dataId);
      return { dataId: x.dataId, shape: outShape, dtype: x.dtype };
    }
    const out = backend.makeOutput(outShape, x.dtype);
    if (size === 0) return out;
    params.fill(0);
    params[0] = simple.shape.length;
    params[1] = offsetOf(backend, x);
    params[2] = offsetOf(backend, out);
    params.set(simple.shape, 3);
    params.set(simple.perm, 3 + MAX_TRANSPOSE_RANK);
    native.transpose(heapOf(backend), params);
    return out;
  };
}
