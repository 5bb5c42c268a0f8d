// Dynamic int8 quantisation of a model's linear layers for inference, as PyTorch's
// `torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)` and ONNX Runtime's
// dynamic quantisation do: each Linear's weight gets an int8 copy (one scale per output row), and its
// inputs are quantised per row at every call (@vl/accel's VlInt8Linear: int8 products summed in int32).
// The float weights stay: training, gradients and other backends keep using them, and a weight that
// changes after quantising (an optimizer step, a checkpoint load) falls back to float until quantised
// again. Needs @vl/accel's native kernels on the wasm backend.
import { VlError } from '../errors.js';
import { dropInt8Weight, hasInt8Weight, int8KernelsAvailable, packInt8Weight } from './int8-weights.js';
import { Linear } from './layers.js';
import type { Module } from './module.js';

export interface Int8Report {
  /** Linear layers given an int8 copy. */
  layers: number;
  /** Their weights' elements. */
  weights: number;
  /** Bytes of the int8 copies (weights, scales and row sums), on top of the float weights. */
  packedBytes: number;
  /** Linear layers left in float because `skip` said so, by name. */
  skipped: string[];
}

export interface QuantizeInt8Options {
  /** Leaves a Linear (by its dotted name) in float when this returns true. */
  skip?: (name: string) => boolean;
}

/** Gives every Linear of `model` an int8 copy of its weight (again, if it had one). Throws without the kernels. */
export function quantizeInt8(model: Module, options: QuantizeInt8Options = {}): Int8Report {
  if (!int8KernelsAvailable()) {
    throw new VlError('BACKEND_UNAVAILABLE', 'int8 inference needs the native int8 kernels of @vl/accel on the wasm backend', {
      subject: 'quantizeInt8',
      hint: 'install @vl/accel (npm i @vl/accel; a prebuilt binary ships for linux-x64-gnu) and run on wasm (VL_BACKEND=wasm), or leave int8 off',
    });
  }
  const report: Int8Report = { layers: 0, weights: 0, packedBytes: 0, skipped: [] };
  for (const [name, m] of model.namedModules()) {
    if (!(m instanceof Linear)) continue;
    if (options.skip?.(name)) {
      report.skipped.push(name);
      continue;
    }
    report.packedBytes += packInt8Weight(m.weight);
    report.layers++;
    report.weights += m.weight.size;
  }
  return report;
}

/** Frees the int8 copies of `model`'s Linear weights; they run in float again. Returns how many were freed. */
export function releaseInt8(model: Module): number {
  let freed = 0;
  for (const [, m] of model.namedModules()) if (m instanceof Linear && dropInt8Weight(m.weight)) freed++;
  return freed;
}

/** How many of `model`'s Linear layers hold an int8 copy. */
export function int8LayerCount(model: Module): number {
  let n = 0;
  for (const [, m] of model.namedModules()) if (m instanceof Linear && hasInt8Weight(m.weight)) n++;
  return n;
}
