// A generic, exact fallback for kernels the wasm backend lacks: copy the inputs off the wasm heap
// into the cpu backend, run its kernel, copy the results back. Slow (pure JS, two copies) but
// only used for rare kernels; hot ones get direct implementations beside this file.
import * as tf from '@tensorflow/tfjs-core';
import { asWasmBackend } from './wasm-internals.js';

/**
 * Kernels that cannot go through a value copy: complex64 tensors do not exist on wasm, Draw
 * paints a canvas. They stay unregistered (and are reported as gaps).
 */
export const NO_CPU_FALLBACK: ReadonlySet<string> = new Set(['Complex', 'ComplexAbs', 'FFT', 'IFFT', 'Imag', 'Real', 'Draw']);

function cpuBackend(): tf.KernelBackend {
  const cpu = tf.findBackend('cpu');
  if (!cpu) throw new Error('wasm kernels: the cpu backend (needed by a fallback kernel) is not registered');
  // The cpu backend prints an advert for tfjs-node on its first write; a fallback is not a choice of backend.
  (cpu as unknown as { firstUse?: boolean }).firstUse = false;
  return cpu;
}

/**
 * The cpu backend sometimes stores values in another array type than the dtype says (e.g.
 * MaxPoolWithArgmax keeps int32 indexes in a Float32Array); wasm copies raw bytes, so convert.
 */
function asDtype(values: tf.backend_util.BackendValues, dtype: tf.DataType): tf.backend_util.BackendValues {
  if (dtype === 'float32' && !(values instanceof Float32Array)) return Float32Array.from(values as ArrayLike<number>);
  if (dtype === 'int32' && !(values instanceof Int32Array)) return Int32Array.from(values as ArrayLike<number>);
  if (dtype === 'bool' && !(values instanceof Uint8Array)) return Uint8Array.from(values as ArrayLike<number>);
  return values;
}

export function cpuFallbackConfig(kernelName: string): tf.KernelConfig | null {
  const cpuConfig = tf.getKernel(kernelName, 'cpu');
  if (!cpuConfig || NO_CPU_FALLBACK.has(kernelName)) return null;
  const kernelFunc: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const wasm = asWasmBackend(backend);
    const cpu = cpuBackend();
    const written: object[] = [];
    const toCpu = (t: tf.TensorInfo) => {
      const dataId = cpu.write(wasm.readSync(t.dataId), t.shape, t.dtype);
      written.push(dataId);
      // Kernels receive Tensors from the engine and some read `rank`/`size`/`strides` off them.
      return {
        dataId,
        shape: t.shape,
        dtype: t.dtype,
        rank: t.shape.length,
        size: tf.util.sizeFromShape(t.shape),
        strides: tf.util.computeStrides(t.shape),
      };
    };
    // Inputs come as a named map, as an array (Einsum), or as a map holding a list (the Ragged ones).
    const cpuInputs = (Array.isArray(inputs) ? [] : {}) as Record<string, unknown>;
    try {
      for (const [name, value] of Object.entries(inputs as Record<string, tf.TensorInfo | tf.TensorInfo[] | undefined>)) {
        if (!value) continue;
        cpuInputs[name] = Array.isArray(value) ? value.map(toCpu) : toCpu(value);
      }
      const result = cpuConfig.kernelFunc({ inputs: cpuInputs as tf.NamedTensorInfoMap, backend: cpu, attrs });
      const outputs = Array.isArray(result) ? result : [result];
      const copied = outputs.map((o) => {
        const values = asDtype(cpu.readSync(o.dataId), o.dtype);
        cpu.disposeData(o.dataId);
        return wasm.makeOutput(o.shape, o.dtype, undefined, values);
      });
      return Array.isArray(result) ? copied : (copied[0] as tf.TensorInfo);
    } finally {
      for (const dataId of written) cpu.disposeData(dataId);
    }
  };
  return { kernelName, backendName: 'wasm', kernelFunc };
}
