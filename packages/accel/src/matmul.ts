// BatchMatMul and _FusedMatMul for the wasm backend on OpenBLAS sgemm, reading and writing the
// wasm heap in place. Every transpose form goes straight to sgemm (no transpose copies); batches
// become one strided call (split over the thread pool), a B shared by all batches folds the
// batches into rows, and only a mixed broadcast ([2,1]×[1,3]) loops over batches in JS.
import type { NativeBinding } from './binding.js';
import { asWasm, heapOf, offsetOf, sizeOf, type TensorInfo, type WasmBackendLike } from './wasm.js';
import type * as tfc from '@tensorflow/tfjs-core';

/** tfjs-backend-wasm's FusableActivation codes, which the C epilogue shares. */
const ACTIVATION_CODE: Record<string, number> = {
  linear: 0,
  relu: 1,
  relu6: 2,
  prelu: 3,
  leakyrelu: 4,
  sigmoid: 5,
  elu: 6,
};

interface Epilogue {
  activation: number;
  bias?: TensorInfo;
  prelu?: TensorInfo;
  leakyAlpha: number;
}

/** Strides of a bias the caller has checked with `biasStrides`. */
function strides(epi: Epilogue, outBatchShape: readonly number[], m: number, n: number): BiasStrides {
  if (!epi.bias) return { batch: 0, row: 0, col: 0 };
  const s = biasStrides(epi.bias.shape, outBatchShape, m, n);
  if (!s) throw new Error(`_FusedMatMul: bias ${epi.bias.shape} does not broadcast to [${outBatchShape}, ${m}, ${n}]`);
  return s;
}

const NO_EPILOGUE: Epilogue = { activation: 0, leakyAlpha: 0 };

/** Right-aligned broadcast of two batch shapes, or null when they do not broadcast. */
function broadcastShape(a: readonly number[], b: readonly number[]): number[] | null {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return null;
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Flat batch index into `shape` (right-aligned, size-1 dims broadcast) of output batch `flat`. */
function broadcastIndex(flat: number, outShape: readonly number[], shape: readonly number[]): number {
  let index = 0;
  let stride = 1;
  for (let d = outShape.length - 1, s = shape.length - 1; d >= 0; d--, s--) {
    const outSize = outShape[d] as number;
    const i = flat % outSize;
    flat = Math.floor(flat / outSize);
    if (s >= 0) {
      const size = shape[s] as number;
      index += (size === 1 ? 0 : i) * stride;
      stride *= size;
    }
  }
  return index;
}

/** One reusable params array: the C side reads it synchronously, so sharing it is safe. */
const params = new Float64Array(20);

interface BiasStrides {
  batch: number;
  row: number;
  col: number;
}

/**
 * Element strides (0 where broadcast) of a bias added to an output [...outBatch, m, n], or null
 * when its batch dims broadcast only partly (e.g. [2,1,m,n] against [2,3,m,n]) or do not fit.
 */
function biasStrides(biasShape: readonly number[], outBatchShape: readonly number[], m: number, n: number): BiasStrides | null {
  const outShape = [...outBatchShape, m, n];
  if (biasShape.length > outShape.length) {
    if (biasShape.slice(0, biasShape.length - outShape.length).some((d) => d !== 1)) return null;
    biasShape = biasShape.slice(biasShape.length - outShape.length);
  }
  const shape = [...Array<number>(outShape.length - biasShape.length).fill(1), ...biasShape];
  const strides = new Array<number>(shape.length).fill(0);
  let stride = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    const size = shape[d] as number;
    if (size !== 1 && size !== outShape[d]) return null;
    strides[d] = size === 1 ? 0 : stride;
    stride *= size;
  }
  const batchDims = shape.slice(0, -2);
  const batchBroadcast = batchDims.every((d) => d === 1);
  const batchFull = batchDims.every((d, i) => d === outBatchShape[i]);
  if (!batchBroadcast && !batchFull) return null;
  return {
    batch: batchBroadcast ? 0 : (shape[shape.length - 2] as number) * (shape[shape.length - 1] as number),
    row: strides[shape.length - 2] as number,
    col: strides[shape.length - 1] as number,
  };
}

/**
 * out = act(op(a)·op(b) + bias) as a new wasm tensor [...batch, m, n]. The epilogue is applied by
 * the C side; `epi` must already be checked to fit (bias and prelu of 1 or n values).
 */
function gemmOnWasm(
  native: NativeBinding,
  backend: WasmBackendLike,
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  epi: Epilogue,
): TensorInfo {
  const aRank = a.shape.length;
  const bRank = b.shape.length;
  const m = a.shape[transposeA ? aRank - 1 : aRank - 2] as number;
  const k = a.shape[transposeA ? aRank - 2 : aRank - 1] as number;
  const kB = b.shape[transposeB ? bRank - 1 : bRank - 2] as number;
  const n = b.shape[transposeB ? bRank - 2 : bRank - 1] as number;
  if (k !== kB) {
    throw new Error(
      `Error in matMul: inner shapes (${k}) and (${kB}) of Tensors with shapes ${a.shape} and ${b.shape} ` +
        `and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
    );
  }
  const batchShapeA = a.shape.slice(0, -2);
  const batchShapeB = b.shape.slice(0, -2);
  const outBatchShape = broadcastShape(batchShapeA, batchShapeB);
  if (!outBatchShape) {
    throw new Error(`Error in matMul: batch dimensions ${batchShapeA} and ${batchShapeB} do not broadcast.`);
  }
  const batchA = sizeOf(batchShapeA);
  const batchB = sizeOf(batchShapeB);
  const batchOut = sizeOf(outBatchShape);
  const out = backend.makeOutput([...outBatchShape, m, n], 'float32');
  if (batchOut * m * n === 0) return out;

  const aOff = offsetOf(backend, a);
  const bOff = offsetOf(backend, b);
  const outOff = offsetOf(backend, out);
  params[0] = transposeA ? 1 : 0;
  params[1] = transposeB ? 1 : 0;
  params[3] = n;
  params[4] = k;
  const bias = strides(epi, outBatchShape, m, n);
  const biasOff = epi.bias ? offsetOf(backend, epi.bias) : -1;
  params[12] = biasOff;
  params[13] = bias.batch;
  params[18] = bias.row;
  params[19] = bias.col;
  params[14] = epi.activation;
  params[15] = epi.leakyAlpha;
  params[16] = epi.prelu ? offsetOf(backend, epi.prelu) : -1;
  params[17] = epi.prelu ? sizeOf(epi.prelu.shape) : 0;
  // Read after makeOutput: an allocation can grow the heap and detach the old buffer.
  const heap = heapOf(backend);

  const call = (rows: number, batch: number, aAt: number, strideA: number, bAt: number, strideB: number, cAt: number) => {
    params[2] = rows;
    params[5] = batch;
    params[6] = aAt;
    params[7] = strideA;
    params[8] = bAt;
    params[9] = strideB;
    params[10] = cAt;
    params[11] = rows * n;
    native.gemm(heap, params);
  };

  if (batchB === 1 && !transposeA && bias.batch === 0 && bias.row === 0) {
    // One B for every batch: A's batches stacked as rows make a single large product.
    call(batchA * m, 1, aOff, 0, bOff, 0, outOff);
  } else if ((batchA === batchOut || batchA === 1) && (batchB === batchOut || batchB === 1)) {
    // Equal batches, or one side shared (stride 0): one strided batched call.
    call(m, batchOut, aOff, batchA === 1 ? 0 : m * k, bOff, batchB === 1 ? 0 : k * n, outOff);
  } else {
    // Mixed broadcast ([1,12]×[8,12], [2,1]×[1,3]): the trailing batch dims where each operand is whole or
    // entirely broadcast make one strided call (threaded over its batches); only the leading dims loop here.
    const { outer, inner, aWhole, bWhole } = splitBroadcast(outBatchShape, batchShapeA, batchShapeB);
    for (let o = 0; o < outer; o++) {
      const first = o * inner;
      const ia = broadcastIndex(first, outBatchShape, batchShapeA);
      const ib = broadcastIndex(first, outBatchShape, batchShapeB);
      if (biasOff >= 0) params[12] = biasOff + first * bias.batch * 4;
      call(m, inner, aOff + ia * m * k * 4, aWhole ? m * k : 0, bOff + ib * k * n * 4, bWhole ? k * n : 0, outOff + first * m * n * 4);
    }
  }
  return out;
}

/**
 * The largest suffix of the output batch dims over which each operand is either whole (its dims equal
 * the output's) or entirely broadcast (all 1): `inner` batches per strided call, `outer` calls.
 */
export function splitBroadcast(
  outShape: readonly number[],
  aShape: readonly number[],
  bShape: readonly number[],
): { outer: number; inner: number; aWhole: boolean; bWhole: boolean } {
  const rank = outShape.length;
  const pad = (s: readonly number[]) => [...new Array<number>(rank - s.length).fill(1), ...s];
  const a = pad(aShape);
  const b = pad(bShape);
  // Per operand, whether the suffix from `d` is whole / broadcast; a size-1 output dim suits both.
  let aWhole = true;
  let aOne = true;
  let bWhole = true;
  let bOne = true;
  let split = rank;
  for (let d = rank - 1; d >= 0; d--) {
    const o = outShape[d] as number;
    const na: { whole: boolean; one: boolean } = { whole: aWhole && a[d] === o, one: aOne && a[d] === 1 };
    const nb: { whole: boolean; one: boolean } = { whole: bWhole && b[d] === o, one: bOne && b[d] === 1 };
    if (!(na.whole || na.one) || !(nb.whole || nb.one)) break;
    [aWhole, aOne, bWhole, bOne] = [na.whole, na.one, nb.whole, nb.one];
    split = d;
  }
  const inner = sizeOf(outShape.slice(split));
  // With every suffix dim of size 1 both flags hold; whole (stride) and broadcast (0) then agree.
  return {
    outer: sizeOf(outShape.slice(0, split)),
    inner,
    aWhole: aWhole && !(aOne && inner === 1),
    bWhole: bWhole && !(bOne && inner === 1),
  };
}

/** Whether a PReLU alpha maps onto the C side's forms: one value, or one per output column. */
function fitsPrelu(t: TensorInfo | undefined, n: number): boolean {
  if (!t || t.dtype !== 'float32') return false;
  const size = sizeOf(t.shape);
  return size === 1 || (size === n && t.shape[t.shape.length - 1] === n);
}

/** The output batch shape of a·b, for checking a bias against it before any allocation. */
function outBatchOf(a: TensorInfo, b: TensorInfo): number[] | null {
  return broadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
}

/**
 * Kernel configs replacing the wasm BatchMatMul and _FusedMatMul. Anything the native path does
 * not cover (non-float32 operands, a bias whose batch dims broadcast only partly, a PReLU alpha
 * other than one value or one per column) goes to `previous`, the kernel registered before (core's
 * JS fast path or the stock one).
 */
export function createMatMulKernels(
  native: NativeBinding,
  previous: { batchMatMul: tfc.KernelConfig; fusedMatMul: tfc.KernelConfig },
): tfc.KernelConfig[] {
  const batchMatMul: tfc.KernelFunc = (args) => {
    const { a, b } = args.inputs as Record<'a' | 'b', TensorInfo>;
    const { transposeA, transposeB } = args.attrs as unknown as { transposeA: boolean; transposeB: boolean };
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return previous.batchMatMul.kernelFunc(args);
    return gemmOnWasm(native, asWasm(args.backend), a, b, !!transposeA, !!transposeB, NO_EPILOGUE);
  };

  const fusedMatMul: tfc.KernelFunc = (args) => {
    const inputs = args.inputs as Partial<Record<'a' | 'b' | 'bias' | 'preluActivationWeights', TensorInfo>>;
    const { a, b, bias, preluActivationWeights: prelu } = inputs;
    if (!a || !b) throw new Error('_FusedMatMul: inputs a and b are required');
    const attrs = args.attrs as unknown as { transposeA: boolean; transposeB: boolean; activation?: string; leakyreluAlpha?: number };
    const activation = attrs.activation ?? 'linear';
    const code = ACTIVATION_CODE[activation];
    const n = b.shape[attrs.transposeB ? b.shape.length - 2 : b.shape.length - 1] as number;
    const m = a.shape[attrs.transposeA ? a.shape.length - 1 : a.shape.length - 2] as number;
    const usesPrelu = activation === 'prelu';
    const outBatch = outBatchOf(a, b);
    const biasFits = !bias || (bias.dtype === 'float32' && outBatch !== null && biasStrides(bias.shape, outBatch, m, n) !== null);
    if (a.dtype !== 'float32' || b.dtype !== 'float32' || code === undefined || !biasFits || (usesPrelu && !fitsPrelu(prelu, n))) {
      return previous.fusedMatMul.kernelFunc(args);
    }
    const epi: Epilogue = {
      activation: code,
      leakyAlpha: attrs.leakyreluAlpha ?? 0.2,
      ...(bias ? { bias } : {}),
      ...(usesPrelu && prelu ? { prelu } : {}),
    };
    return gemmOnWasm(native, asWasm(args.backend), a, b, !!attrs.transposeA, !!attrs.transposeB, epi);
  };

  return [
    { kernelName: 'BatchMatMul', backendName: 'wasm', kernelFunc: batchMatMul },
    { kernelName: '_FusedMatMul', backendName: 'wasm', kernelFunc: fusedMatMul },
  ];
}
