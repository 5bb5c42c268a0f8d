// BatchMatMul and _FusedMatMul for the wasm backend that stay on XNNPACK's fast path for every
// transpose and batch form. The stock kernel is fast only for untransposed operands with batch 1
// and otherwise runs a scalar loop at ~1 GFLOP/s (measurements: /work/shared/PERF-NOTES.md).
// Here transposed operands are first laid out plainly with the wasm Transpose kernel, a B shared
// by every batch is multiplied once with the batches stacked as rows, and other batches run one
// fast call per slice through heap views (no copies). When few rows meet a big right operand (a
// decoding step, x·Wᵀ with m = 1), Cᵀ = Bᵀ·Aᵀ is computed instead so W is neither copied nor
// transposed.
import * as tf from '@tensorflow/tfjs-core';
import {
  asWasmBackend,
  f32View,
  heapId,
  memoryOffset,
  registerView,
  releaseView,
  reshapedInfo,
  runKernel,
  tensorData,
  type RawFusedMatMul,
  type WasmBackendLike,
  type WasmModuleLike,
} from './wasm-internals.js';

/** tfjs-backend-wasm's `FusableActivation` enum (cc/fusable_activations.h). */
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
  biasId: number;
  preluId: number;
  leakyreluAlpha: number;
}

const NO_EPILOGUE: Epilogue = { activation: 0, biasId: 0, preluId: 0, leakyreluAlpha: 0 };

/** Scratch space for the two rank-3 shapes a raw call takes; one per wasm module, kept for its life. */
const shapeScratch = new WeakMap<WasmModuleLike, number>();

function shapePointer(wasm: WasmModuleLike): number {
  let ptr = shapeScratch.get(wasm);
  if (ptr === undefined) {
    ptr = wasm._malloc(6 * 4) >>> 0;
    shapeScratch.set(wasm, ptr);
  }
  return ptr;
}

function rawFusedMatMul(wasm: WasmModuleLike): RawFusedMatMul {
  const fn = wasm['__FusedMatMul'];
  if (typeof fn !== 'function') throw new Error('wasm kernels: this tfjs-backend-wasm build has no _FusedMatMul export');
  return fn as RawFusedMatMul;
}

/**
 * One XNNPACK call: out[rows, n] = a[rows, k] · b[k, n] (+ epilogue). The C side takes the fast
 * path because both shapes say batch 1 and nothing is transposed.
 */
function fastCall(
  backend: WasmBackendLike,
  aId: number,
  rows: number,
  k: number,
  bId: number,
  n: number,
  outId: number,
  epi: Epilogue,
): void {
  const wasm = backend.wasm;
  const ptr = shapePointer(wasm);
  new Int32Array(wasm.HEAPU8.buffer, ptr, 6).set([1, rows, k, 1, k, n]);
  rawFusedMatMul(wasm)(aId, ptr, 3, bId, ptr + 12, 3, 0, 0, epi.activation, epi.biasId, epi.preluId, epi.leakyreluAlpha, outId);
}

/** [batch, r, c] → [batch, c, r] with the wasm Transpose kernel (fast, and it drops size-1 dims). */
function swapLastTwo(backend: WasmBackendLike, t: tf.TensorInfo, batch: number, r: number, c: number): tf.TensorInfo {
  return runKernel('Transpose', { inputs: { x: reshapedInfo(t, [batch, r, c]) }, backend, attrs: { perm: [0, 2, 1] } });
}

/** Flat batch index into `shape` (right-aligned, size-1 dims broadcast) of the output's multi-index. */
function broadcastOffset(outIndex: readonly number[], shape: readonly number[]): number {
  let flat = 0;
  const lead = outIndex.length - shape.length;
  for (let d = 0; d < shape.length; d++) {
    const size = shape[d] as number;
    flat = flat * size + (size === 1 ? 0 : (outIndex[lead + d] as number));
  }
  return flat;
}

function unravel(i: number, shape: readonly number[]): number[] {
  const index = new Array<number>(shape.length).fill(0);
  for (let d = shape.length - 1; d >= 0; d--) {
    const size = shape[d] as number;
    index[d] = i % size;
    i = Math.floor(i / size);
  }
  return index;
}

/**
 * Whether XNNPACK may cache its packed copy of `b` under b's own id. The C side keys that cache by
 * tensor id alone, so an id must always be read as the same [k, n]: true only when [k, n] is the
 * shape the tensor was created with. Other readings (a reshape, or [1, k] taken as [k, 1] to skip
 * a transpose) go through a fresh view id, packed for this call only.
 */
function packsAs(backend: WasmBackendLike, b: tf.TensorInfo, k: number, n: number): boolean {
  const stored = tensorData(backend, b).shape;
  return stored[stored.length - 1] === n && (stored[stored.length - 2] ?? 1) === k && tf.util.sizeFromShape(stored) === k * n;
}

interface MatMulDims {
  m: number;
  k: number;
  n: number;
  batchShapeA: number[];
  batchShapeB: number[];
  outBatchShape: number[];
  batchA: number;
  batchB: number;
  batchOut: number;
}

function matMulDims(a: tf.TensorInfo, b: tf.TensorInfo, transposeA: boolean, transposeB: boolean): MatMulDims {
  const aRank = a.shape.length;
  const bRank = b.shape.length;
  const m = a.shape[transposeA ? aRank - 1 : aRank - 2] as number;
  const k = a.shape[transposeA ? aRank - 2 : aRank - 1] as number;
  const kB = b.shape[transposeB ? bRank - 1 : bRank - 2] as number;
  const n = b.shape[transposeB ? bRank - 2 : bRank - 1] as number;
  tf.util.assert(
    k === kB,
    () =>
      `Error in matMul: inner shapes (${k}) and (${kB}) of Tensors with shapes ${a.shape} and ${b.shape} ` +
      `and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
  );
  const batchShapeA = a.shape.slice(0, -2);
  const batchShapeB = b.shape.slice(0, -2);
  const outBatchShape = tf.broadcast_util.assertAndGetBroadcastShape(batchShapeA, batchShapeB);
  return {
    m,
    k,
    n,
    batchShapeA,
    batchShapeB,
    outBatchShape,
    batchA: tf.util.sizeFromShape(batchShapeA),
    batchB: tf.util.sizeFromShape(batchShapeB),
    batchOut: tf.util.sizeFromShape(outBatchShape),
  };
}

/**
 * Whether Cᵀ = Bᵀ·Aᵀ (then one transpose of the result) moves fewer floats than C = A·B. XNNPACK
 * packs its right operand on every call and our transposes copy, so the overhead is O(k·n) for
 * the direct form and O(m·(k+n)) for the swapped one: swapping wins when m is small, e.g. one
 * decoding step x·Wᵀ (m = 1, no copy at all) where the direct form would transpose all of W.
 * Transposes and packing cost about the same per float (measured, 3-5 ns on wasm).
 */
function preferSwapped(d: MatMulDims, transposeA: boolean, transposeB: boolean): boolean {
  const { m, k, n, batchA, batchB, batchOut } = d;
  const direct = (transposeA ? batchA * m * k : 0) + (transposeB ? batchB * k * n : 0) + (batchB === 1 ? k * n : batchOut * k * n);
  const swapped =
    (transposeB ? 0 : batchB * k * n) +
    (transposeA ? 0 : batchA * m * k) +
    (m > 1 && n > 1 ? batchOut * m * n : 0) +
    (batchA === 1 ? m * k : batchOut * m * k);
  // Margin for the direct form: its XNNPACK calls also cache packed weights across calls.
  return swapped < 0.75 * direct;
}

/**
 * a·b for any transpose flags and broadcastable batch dims, float32, into a new wasm tensor
 * shaped [...batch, m, n]. `epi` is applied by the C side after each call.
 */
function directMatMul(
  backend: WasmBackendLike,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  epi: Epilogue,
  d: MatMulDims = matMulDims(a, b, transposeA, transposeB),
): tf.TensorInfo {
  const { m, k, n, batchShapeA, batchShapeB, outBatchShape, batchA, batchB, batchOut } = d;
  const out = backend.makeOutput([...outBatchShape, m, n], 'float32');
  if (batchOut * m * n === 0) return out;
  if (k === 0) {
    // An empty sum; XNNPACK rejects zero input channels, and malloc'd memory is not zeroed.
    f32View(backend, out).fill(0);
    return out;
  }

  // A [k, m] and [m, k] share one layout when either is 1 (e.g. one decoding step): no copy then.
  const aPlain = transposeA && k > 1 && m > 1 ? swapLastTwo(backend, a, batchA, k, m) : a;
  const bPlain = transposeB && k > 1 && n > 1 ? swapLastTwo(backend, b, batchB, n, k) : b;
  try {
    const outId = heapId(backend, out);
    if (batchB === 1) {
      // One B for every batch: stack A's batches as rows, one call (batchOut === batchA here).
      const cacheable = packsAs(backend, bPlain, k, n);
      const bId = cacheable ? heapId(backend, bPlain) : registerView(backend, memoryOffset(backend, bPlain), k * n);
      try {
        fastCall(backend, heapId(backend, aPlain), batchA * m, k, bId, n, outId, epi);
      } finally {
        if (!cacheable) releaseView(backend, bId);
      }
      return out;
    }
    const aOffset = memoryOffset(backend, aPlain);
    const bOffset = memoryOffset(backend, bPlain);
    const outOffset = memoryOffset(backend, out);
    // Views are fresh ids, so XNNPACK never reuses weights it packed for another slice; a slice
    // used by several output batches keeps its view (and its packed weights) until the end.
    const aViews = new Map<number, number>();
    const bViews = new Map<number, number>();
    const outViews: number[] = [];
    try {
      for (let i = 0; i < batchOut; i++) {
        const index = unravel(i, outBatchShape);
        const ia = broadcastOffset(index, batchShapeA);
        const ib = broadcastOffset(index, batchShapeB);
        let aId = batchA === 1 ? heapId(backend, aPlain) : aViews.get(ia);
        if (aId === undefined) {
          aId = registerView(backend, aOffset + ia * m * k * 4, m * k);
          aViews.set(ia, aId);
        }
        let bId = bViews.get(ib);
        if (bId === undefined) {
          bId = registerView(backend, bOffset + ib * k * n * 4, k * n);
          bViews.set(ib, bId);
        }
        const outId = registerView(backend, outOffset + i * m * n * 4, m * n);
        outViews.push(outId);
        fastCall(backend, aId, m, k, bId, n, outId, epi);
      }
    } finally {
      for (const id of outViews) releaseView(backend, id);
      for (const id of aViews.values()) releaseView(backend, id);
      for (const id of bViews.values()) releaseView(backend, id);
    }
    return out;
  } finally {
    if (aPlain !== a) backend.disposeData(aPlain.dataId);
    if (bPlain !== b) backend.disposeData(bPlain.dataId);
  }
}

/** C = (Bᵀ·Aᵀ)ᵀ: the direct kernel on swapped operands, then one transpose (none if m or n is 1). */
function swappedMatMul(
  backend: WasmBackendLike,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  d: MatMulDims,
): tf.TensorInfo {
  const { m, n, outBatchShape, batchOut } = d;
  const outT = directMatMul(backend, b, a, !transposeB, !transposeA, NO_EPILOGUE); // [...batch, n, m]
  if (m === 1 || n === 1) return { dataId: outT.dataId, shape: [...outBatchShape, m, n], dtype: 'float32' };
  try {
    const out = swapLastTwo(backend, outT, batchOut, n, m);
    return { dataId: out.dataId, shape: [...outBatchShape, m, n], dtype: 'float32' };
  } finally {
    backend.disposeData(outT.dataId);
  }
}

/** Whether the swapped form applies and copies less (never for empty products). */
function shouldSwap(d: MatMulDims, transposeA: boolean, transposeB: boolean): boolean {
  return d.k > 0 && d.batchOut * d.m * d.n > 0 && preferSwapped(d, transposeA, transposeB);
}

/** a·b with no epilogue, in whichever form copies less. */
function fastMatMul(backend: WasmBackendLike, a: tf.TensorInfo, b: tf.TensorInfo, transposeA: boolean, transposeB: boolean): tf.TensorInfo {
  const d = matMulDims(a, b, transposeA, transposeB);
  return shouldSwap(d, transposeA, transposeB)
    ? swappedMatMul(backend, a, b, transposeA, transposeB, d)
    : directMatMul(backend, a, b, transposeA, transposeB, NO_EPILOGUE, d);
}

/** Moves on to `next`, disposing the intermediate `current` (never a kernel input). */
function step(backend: WasmBackendLike, current: tf.TensorInfo, next: tf.TensorInfo): tf.TensorInfo {
  backend.disposeData(current.dataId);
  return next;
}

/**
 * Bias and activation done by separate wasm kernels, for the shapes the C epilogue would get
 * wrong: XNNPACK reads exactly n bias values, and the C PReLU treats alpha as per-column weights.
 */
function separateEpilogue(
  backend: WasmBackendLike,
  y: tf.TensorInfo,
  bias: tf.TensorInfo | undefined,
  activation: string,
  prelu: tf.TensorInfo | undefined,
  leakyreluAlpha: number,
): tf.TensorInfo {
  if (bias) y = step(backend, y, runKernel('Add', { inputs: { a: y, b: bias }, backend }));
  switch (activation) {
    case 'linear':
      return y;
    case 'relu':
      return step(backend, y, runKernel('Relu', { inputs: { x: y }, backend }));
    case 'relu6':
      return step(backend, y, runKernel('Relu6', { inputs: { x: y }, backend }));
    case 'elu':
      return step(backend, y, runKernel('Elu', { inputs: { x: y }, backend }));
    case 'sigmoid':
      return step(backend, y, runKernel('Sigmoid', { inputs: { x: y }, backend }));
    case 'leakyrelu':
      return step(backend, y, runKernel('LeakyRelu', { inputs: { x: y }, backend, attrs: { alpha: leakyreluAlpha } }));
    case 'prelu': {
      if (!prelu) throw new Error('_FusedMatMul: prelu activation needs preluActivationWeights');
      // prelu(y) = max(y, 0) + alpha·min(y, 0), with alpha broadcast like any binary op.
      const zero = backend.makeOutput([], 'float32', undefined, new Float32Array([0]));
      const positive = runKernel('Maximum', { inputs: { a: y, b: zero }, backend });
      const negative = runKernel('Minimum', { inputs: { a: y, b: zero }, backend });
      const scaled = runKernel('Multiply', { inputs: { a: negative, b: prelu }, backend });
      const result = runKernel('Add', { inputs: { a: positive, b: scaled }, backend });
      for (const t of [zero, positive, negative, scaled, y]) backend.disposeData(t.dataId);
      return result;
    }
    default:
      throw new Error(`_FusedMatMul: activation '${activation}' is not supported on wasm`);
  }
}

/** a·b on the wasm backend's fast path, for kernels built on matmul (e.g. a conv weight gradient). */
export function wasmMatMul(
  backend: WasmBackendLike,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
): tf.TensorInfo {
  return fastMatMul(backend, a, b, transposeA, transposeB);
}

export interface StockMatMulKernels {
  batchMatMul: tf.KernelConfig;
  fusedMatMul: tf.KernelConfig;
}

/** Kernel configs for BatchMatMul and _FusedMatMul; non-float32 inputs go to the stock kernels. */
export function createFastMatMulKernels(stock: StockMatMulKernels): tf.KernelConfig[] {
  const batchMatMul: tf.KernelFunc = (args) => {
    const { a, b } = args.inputs as unknown as tf.BatchMatMulInputs & Record<'a' | 'b', tf.TensorInfo>;
    const { transposeA, transposeB } = args.attrs as unknown as tf.BatchMatMulAttrs;
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return stock.batchMatMul.kernelFunc(args);
    return fastMatMul(asWasmBackend(args.backend), a, b, transposeA, transposeB);
  };

  const fusedMatMul: tf.KernelFunc = (args) => {
    const inputs = args.inputs as Partial<Record<'a' | 'b' | 'bias' | 'preluActivationWeights', tf.TensorInfo>>;
    const { a, b, bias, preluActivationWeights: prelu } = inputs;
    if (!a || !b) throw new Error('_FusedMatMul: inputs a and b are required');
    const attrs = args.attrs as unknown as tf._FusedMatMulAttrs;
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return stock.fusedMatMul.kernelFunc(args);
    const backend = asWasmBackend(args.backend);
    const activation = attrs.activation ?? 'linear';
    const code = ACTIVATION_CODE[activation];
    if (code === undefined) throw new Error(`_FusedMatMul: activation '${activation}' is not supported on wasm`);
    const leakyreluAlpha = attrs.leakyreluAlpha || 0;
    const n = b.shape[attrs.transposeB ? b.shape.length - 2 : b.shape.length - 1] as number;
    const biasFits = !bias || (bias.shape.length === 1 && bias.shape[0] === n && bias.dtype === 'float32');
    // The C PReLU tiles alpha over the flat output: right for a scalar or a per-column [n].
    const preluSize = prelu ? tf.util.sizeFromShape(prelu.shape) : 0;
    const preluFits =
      activation !== 'prelu' ||
      (prelu !== undefined &&
        prelu.dtype === 'float32' &&
        (preluSize === 1 || (preluSize === n && prelu.shape[prelu.shape.length - 1] === n)));
    const d = matMulDims(a, b, attrs.transposeA, attrs.transposeB);
    // The C epilogue needs the direct form; the swapped one gets bias and activation as kernels.
    if (biasFits && preluFits && d.k > 0 && !shouldSwap(d, attrs.transposeA, attrs.transposeB)) {
      const epi: Epilogue = {
        activation: code,
        biasId: bias ? heapId(backend, bias) : 0,
        preluId: prelu && activation === 'prelu' ? heapId(backend, prelu) : 0,
        leakyreluAlpha,
      };
      return directMatMul(backend, a, b, attrs.transposeA, attrs.transposeB, epi, d);
    }
    const y = fastMatMul(backend, a, b, attrs.transposeA, attrs.transposeB);
    return separateEpilogue(backend, y, bias, activation, prelu, leakyreluAlpha);
  };

  return [
    { kernelName: tf.BatchMatMul, backendName: 'wasm', kernelFunc: batchMatMul },
    { kernelName: tf._FusedMatMul, backendName: 'wasm', kernelFunc: fusedMatMul },
  ];
}
