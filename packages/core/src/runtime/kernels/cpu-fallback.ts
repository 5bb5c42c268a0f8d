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

export function cpuFallbackConfig(kernelName: string): tf.KernelConfig | null {
  const cpuConfig = tf.getKernel(kernelName, 'cpu');
  if (!cpuConfig || NO_CPU_FALLBACK.has(kernelName)) return null;
  const kernelFunc: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const wasm = asWasmBackend(backend);
    const cpu = cpuBackend();
    // Some kernels (Einsum, Concat-like ones) take their inputs as an array, not a named map.
    const cpuInputs = (Array.isArray(inputs) ? [] : {}) as tf.NamedTensorInfoMap;
    const written: object[] = [];
    try {
      for (const [name, t] of Object.entries(inputs)) {
        if (!t) continue;
        const dataId = cpu.write(wasm.readSync(t.dataId), t.shape, t.dtype);
        written.push(dataId);
        cpuInputs[name] = { dataId, shape: t.shape, dtype: t.dtype };
      }
      const result = cpuConfig.kernelFunc({ inputs: cpuInputs, backend: cpu, attrs });
      const outputs = Array.isArray(result) ? result : [result];
      const copied = outputs.map((o) => {
        const values = cpu.readSync(o.dataId);
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
