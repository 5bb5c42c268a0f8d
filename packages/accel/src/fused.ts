// Fused element-wise kernels on the wasm heap: LayerNorm, GELU and softmax as one native pass each
// (forward and backward), where tfjs would run 4-10 single-threaded wasm kernels with a tensor
// between each. They are custom kernels (VlLayerNorm, VlGelu, VlSoftmax) with registered gradients,
// called through `tf.engine().runKernel` by code that checks they exist for the active backend;
// the stock Softmax kernel, Sum over leading axes (a bias gradient), Identity (tensors saved for
// the backward pass) and Transpose (transpose.ts) are replaced in place.
import { attentionKernel } from './attention.js';
import { int8LinearKernel, int8PackKernel } from './int8.js';
import { transposeKernel } from './transpose.js';
import type { NativeBinding } from './binding.js';
import { asWasm, heapOf, offsetOf, sizeOf, type TensorInfo, type Tf, type WasmBackendLike } from './wasm.js';
import type * as tfc from '@tensorflow/tfjs-core';

/** Custom kernel names; core's nn/functional.ts dispatches to them when they are registered. */
export const ACCEL_KERNELS = {
  layerNorm: 'VlLayerNorm',
  layerNormGrad: 'VlLayerNormGrad',
  gelu: 'VlGelu',
  geluGrad: 'VlGeluGrad',
  softmax: 'VlSoftmax',
  softmaxGrad: 'VlSoftmaxGrad',
  attention: 'VlAttention',
  int8Pack: 'VlInt8Pack',
  int8Linear: 'VlInt8Linear',
} as const;

function requireFloat32(name: string, ...ts: TensorInfo[]): void {
  for (const t of ts) {
    if (t.dtype !== 'float32') throw new Error(`${name}: expected float32 tensors, got ${t.dtype}`);
  }
}

/** Rows × d of a tensor normalised over its last axis. */
function rowsOf(t: TensorInfo): { rows: number; d: number } {
  const d = t.shape.length === 0 ? 1 : (t.shape[t.shape.length - 1] as number);
  return { rows: d === 0 ? 0 : sizeOf(t.shape) / d, d };
}

const p4 = new Float64Array(4);
const p5 = new Float64Array(5);
const p9 = new Float64Array(9);
const p11 = new Float64Array(11);

function layerNormKernel(native: NativeBinding): tfc.KernelFunc {
  return (args) => {
    const backend = asWasm(args.backend);
    const { x, gamma, beta } = args.inputs as Record<'x' | 'gamma' | 'beta', TensorInfo>;
    const { eps } = args.attrs as unknown as { eps: number };
    requireFloat32('VlLayerNorm', x, gamma, beta);
    const { rows, d } = rowsOf(x);
    if (sizeOf(gamma.shape) !== d || sizeOf(beta.shape) !== d) {
      throw new Error(
        `VlLayerNorm: weight and bias need ${d} values (the last axis of x ${x.shape}), got ${gamma.shape} and ${beta.shape}`,
      );
    }
    const y = backend.makeOutput([...x.shape], 'float32');
    p9.set([rows, d, offsetOf(backend, x), offsetOf(backend, gamma), offsetOf(backend, beta), offsetOf(backend, y), -1, -1, eps]);
    native.layerNormFwd(heapOf(backend), p9);
    return y;
  };
}

function layerNormGradKernel(native: NativeBinding): tfc.KernelFunc {
  return (args) => {
    const backend = asWasm(args.backend);
    const { dy, x, gamma } = args.inputs as Record<'dy' | 'x' | 'gamma', TensorInfo>;
    const { eps } = args.attrs as unknown as { eps: number };
    requireFloat32('VlLayerNormGrad', dy, x, gamma);
    const { rows, d } = rowsOf(x);
    const dx = backend.makeOutput([...x.shape], 'float32');
    const dgamma = backend.makeOutput([...gamma.shape], 'float32');
    const dbeta = backend.makeOutput([...gamma.shape], 'float32');
    p11.set([
      rows,
      d,
      offsetOf(backend, dy),
      offsetOf(backend, x),
      -1,
      -1,
      offsetOf(backend, gamma),
      offsetOf(backend, dx),
      offsetOf(backend, dgamma),
      offsetOf(backend, dbeta),
      eps,
    ]);
    native.layerNormBwd(heapOf(backend), p11);
    return [dx, dgamma, dbeta];
  };
}

function geluKernel(native: NativeBinding): tfc.KernelFunc {
  return (args) => {
    const backend = asWasm(args.backend);
    const { x } = args.inputs as Record<'x', TensorInfo>;
    const approximate = (args.attrs as { approximate?: boolean } | undefined)?.approximate === true;
    requireFloat32('VlGelu', x);
    const y = backend.makeOutput([...x.shape], 'float32');
    p4.set([sizeOf(x.shape), offsetOf(backend, x), offsetOf(backend, y), approximate ? 1 : 0]);
    native.geluFwd(heapOf(backend), p4);
    return y;
  };
}

function geluGradKernel(native: NativeBinding): tfc.KernelFunc {
  return (args) => {
    const backend = asWasm(args.backend);
    const { dy, x } = args.inputs as Record<'dy' | 'x', TensorInfo>;
    const approximate = (args.attrs as { approximate?: boolean } | undefined)?.approximate === true;
    requireFloat32('VlGeluGrad', dy, x);
    const dx = backend.makeOutput([...x.shape], 'float32');
    p5.set([sizeOf(x.shape), offsetOf(backend, dy), offsetOf(backend, x), offsetOf(backend, dx), approximate ? 1 : 0]);
    native.geluBwd(heapOf(backend), p5);
    return dx;
  };
}

function softmaxOnWasm(native: NativeBinding, backend: WasmBackendLike, logits: TensorInfo): TensorInfo {
  const { rows, d } = rowsOf(logits);
  const y = backend.makeOutput([...logits.shape], 'float32');
  p4.set([rows, d, offsetOf(backend, logits), offsetOf(backend, y)]);
  native.softmaxFwd(heapOf(backend), p4);
  return y;
}

function softmaxKernel(native: NativeBinding): tfc.KernelFunc {
  return (args) => {
    const { logits } = args.inputs as Record<'logits', TensorInfo>;
    requireFloat32('VlSoftmax', logits);
    return softmaxOnWasm(native, asWasm(args.backend), logits);
  };
}

function softmaxGradKernel(native: NativeBinding): tfc.KernelFunc {
  return (args) => {
    const backend = asWasm(args.backend);
    const { dy, y } = args.inputs as Record<'dy' | 'y', TensorInfo>;
    requireFloat32('VlSoftmaxGrad', dy, y);
    const { rows, d } = rowsOf(y);
    const dx = backend.makeOutput([...y.shape], 'float32');
    p5.set([rows, d, offsetOf(backend, dy), offsetOf(backend, y), offsetOf(backend, dx)]);
    native.softmaxBwd(heapOf(backend), p5);
    return dx;
  };
}

/** The stock Softmax kernel (tf.softmax, inference paths): same native pass; its tfjs gradient stays. */
function stockSoftmaxKernel(native: NativeBinding, previous: tfc.KernelConfig): tfc.KernelFunc {
  return (args) => {
    const { logits } = args.inputs as Record<'logits', TensorInfo>;
    const { dim } = args.attrs as unknown as { dim: number };
    const rank = logits.shape.length;
    const lastAxis = dim === -1 || dim === rank - 1;
    if (logits.dtype !== 'float32' || !lastAxis || rank === 0) return previous.kernelFunc(args);
    return softmaxOnWasm(native, asWasm(args.backend), logits);
  };
}

/**
 * Sum over leading axes (how tfjs reduces a broadcast bias's gradient) as one native column sum;
 * the stock kernel transposes first. Every other reduction goes to `previous`.
 */
function sumKernel(native: NativeBinding, previous: tfc.KernelConfig): tfc.KernelFunc {
  return (args) => {
    const { x } = args.inputs as Record<'x', TensorInfo>;
    const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
    const rank = x.shape.length;
    const axes = (Array.isArray(axis) ? axis : [axis]).map((a) => (a < 0 ? a + rank : a)).sort((p, q) => p - q);
    const prefix = axes.length > 0 && axes.length < rank && axes.every((a, i) => a === i);
    if (x.dtype !== 'float32' || !prefix) return previous.kernelFunc(args);
    const backend = asWasm(args.backend);
    const lead = x.shape.slice(0, axes.length);
    const rest = x.shape.slice(axes.length);
    const rows = sizeOf(lead);
    const d = sizeOf(rest);
    const out = backend.makeOutput(keepDims ? [...lead.map(() => 1), ...rest] : [...rest], 'float32');
    if (d === 0) return out;
    p4.set([rows, d, offsetOf(backend, x), offsetOf(backend, out)]);
    native.colSum(heapOf(backend), p4);
    return out;
  };
}

/**
 * Identity (what tfjs runs to save every tensor a gradient needs) as a shared reference, as the cpu
 * backend does, instead of the stock wasm copy: tensors are immutable, and a training step saves
 * tens of megabytes of activations this way.
 */
function identityKernel(previous: tfc.KernelConfig): tfc.KernelFunc {
  return (args) => {
    const { x } = args.inputs as Record<'x', TensorInfo>;
    const backend = args.backend as Partial<WasmBackendLike>;
    if (x.dtype === 'string' || typeof backend.incRef !== 'function') return previous.kernelFunc(args);
    backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
  };
}

export function createFusedKernels(native: NativeBinding): tfc.KernelConfig[] {
  const wasm = (kernelName: string, kernelFunc: tfc.KernelFunc): tfc.KernelConfig => ({ kernelName, backendName: 'wasm', kernelFunc });
  return [
    wasm(ACCEL_KERNELS.layerNorm, layerNormKernel(native)),
    wasm(ACCEL_KERNELS.layerNormGrad, layerNormGradKernel(native)),
    wasm(ACCEL_KERNELS.gelu, geluKernel(native)),
    wasm(ACCEL_KERNELS.geluGrad, geluGradKernel(native)),
    wasm(ACCEL_KERNELS.softmax, softmaxKernel(native)),
    wasm(ACCEL_KERNELS.softmaxGrad, softmaxGradKernel(native)),
    wasm(ACCEL_KERNELS.attention, attentionKernel(native)),
    wasm(ACCEL_KERNELS.int8Pack, int8PackKernel(native)),
    wasm(ACCEL_KERNELS.int8Linear, int8LinearKernel(native)),
  ];
}

/** Replacements for stock wasm kernels; `previous` gives the config each one falls back to. */
export function createReplacementKernels(
  native: NativeBinding,
  previous: (name: string) => tfc.KernelConfig | undefined,
): tfc.KernelConfig[] {
  const out: tfc.KernelConfig[] = [];
  const softmax = previous('Softmax');
  if (softmax) out.push({ kernelName: 'Softmax', backendName: 'wasm', kernelFunc: stockSoftmaxKernel(native, softmax) });
  const sum = previous('Sum');
  if (sum) out.push({ kernelName: 'Sum', backendName: 'wasm', kernelFunc: sumKernel(native, sum) });
  const identity = previous('Identity');
  if (identity) out.push({ kernelName: 'Identity', backendName: 'wasm', kernelFunc: identityKernel(identity) });
  const transpose = previous('Transpose');
  if (transpose) out.push({ kernelName: 'Transpose', backendName: 'wasm', kernelFunc: transposeKernel(native, transpose) });
  return out;
}

/**
 * Gradients of the custom kernels, registered once per tfjs engine (they are backend-independent
 * by design in tfjs; the kernels they call exist wherever the forward kernel ran).
 */
export function registerFusedGradients(tf: Tf): void {
  if (!tf.getGradient(ACCEL_KERNELS.layerNorm)) {
    tf.registerGradient({
      kernelName: ACCEL_KERNELS.layerNorm,
      inputsToSave: ['x', 'gamma'],
      gradFunc: (dy, saved, attrs) => {
        const [x, gamma] = saved as [tfc.Tensor, tfc.Tensor];
        const [dx, dgamma, dbeta] = tf
          .engine()
          .runKernel(ACCEL_KERNELS.layerNormGrad, { dy: dy as tfc.Tensor, x, gamma }, attrs) as tfc.Tensor[];
        return { x: () => dx as tfc.Tensor, gamma: () => dgamma as tfc.Tensor, beta: () => dbeta as tfc.Tensor };
      },
    });
  }
  if (!tf.getGradient(ACCEL_KERNELS.gelu)) {
    tf.registerGradient({
      kernelName: ACCEL_KERNELS.gelu,
      inputsToSave: ['x'],
      gradFunc: (dy, saved, attrs) => {
        const [x] = saved as [tfc.Tensor];
        return { x: () => tf.engine().runKernel(ACCEL_KERNELS.geluGrad, { dy: dy as tfc.Tensor, x }, attrs) as tfc.Tensor };
      },
    });
  }
  if (!tf.getGradient(ACCEL_KERNELS.softmax)) {
    tf.registerGradient({
      kernelName: ACCEL_KERNELS.softmax,
      outputsToSave: [true],
      gradFunc: (dy, saved) => {
        const [y] = saved as [tfc.Tensor];
        return { logits: () => tf.engine().runKernel(ACCEL_KERNELS.softmaxGrad, { dy: dy as tfc.Tensor, y }) as tfc.Tensor };
      },
    });
  }
}
