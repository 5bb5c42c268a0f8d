// Dynamically quantised int8 linear layers (src/native/int8.c): VlInt8Pack turns a float [N, K] weight
// into one int32 tensor holding the int8 weights in the kernel's layout, a scale per output and the
// weight row sums (packedInt8Length gives its size); VlInt8Linear computes x·Wᵀ + b from it with the
// activations quantised per row at every call. Inference only: no gradient is registered, and core
// calls it only when no tape is recording.
import type { NativeBinding } from './binding.js';
import { asWasm, heapOf, offsetOf, sizeOf, type TensorInfo } from './wasm.js';
import type * as tfc from '@tensorflow/tfjs-core';

const OUT_BLOCK = 32;

/** Int32 elements of a packed [n, k] weight (n rounded up to 32, k to 4; + a scale and a row sum per output). */
export function packedInt8Length(n: number, k: number): number {
  const np = Math.ceil(n / OUT_BLOCK) * OUT_BLOCK;
  const kp = Math.ceil(k / 4) * 4;
  return (np * kp + 8 * np) / 4;
}

export interface Int8LinearAttrs {
  outFeatures: number;
  inFeatures: number;
}

const packParams = new Float64Array(4);
const linearParams = new Float64Array(7);

export function int8PackKernel(native: NativeBinding): tfc.KernelFunc {
  return (args) => {
    const backend = asWasm(args.backend);
    const { weight } = args.inputs as { weight: TensorInfo };
    if (weight.dtype !== 'float32' || weight.shape.length !== 2) {
      throw new Error(`VlInt8Pack: expected a float32 [out, in] weight, got ${weight.dtype} [${weight.shape.join(', ')}]`);
    }
    const [n, k] = weight.shape as [number, number];
    const out = backend.makeOutput([packedInt8Length(n, k)], 'int32');
    packParams.set([n, k, offsetOf(backend, weight), offsetOf(backend, out)]);
    native.int8Pack(heapOf(backend), packParams);
    return out;
  };
}

export function int8LinearKernel(native: NativeBinding): tfc.KernelFunc {
  return (args) => {
    const backend = asWasm(args.backend);
    const { x, packed, bias } = args.inputs as { x: TensorInfo; packed: TensorInfo; bias?: TensorInfo };
    const { outFeatures: n, inFeatures: k } = args.attrs as unknown as Int8LinearAttrs;
    const rank = x.shape.length;
    if (x.dtype !== 'float32' || rank < 1 || x.shape[rank - 1] !== k) {
      throw new Error(`VlInt8Linear: expected float32 [..., ${k}] input, got ${x.dtype} [${x.shape.join(', ')}]`);
    }
    if (packed.dtype !== 'int32' || sizeOf(packed.shape) !== packedInt8Length(n, k)) {
      throw new Error(`VlInt8Linear: the packed weight does not hold a [${n}, ${k}] layer (pack it with VlInt8Pack)`);
    }
    if (bias && (bias.dtype !== 'float32' || sizeOf(bias.shape) !== n)) {
      throw new Error(`VlInt8Linear: bias must be ${n} float32 values, got ${bias.dtype} [${bias.shape.join(', ')}]`);
    }
    const m = k === 0 ? 0 : sizeOf(x.shape) / k;
    const out = backend.makeOutput([...x.shape.slice(0, -1), n], 'float32');
    linearParams.set([
      m,
      n,
      k,
      offsetOf(backend, x),
      offsetOf(backend, packed),
      bias ? offsetOf(backend, bias) : -1,
      offsetOf(backend, out),
    ]);
    native.int8Linear(heapOf(backend), linearParams);
    return out;
  };
}
