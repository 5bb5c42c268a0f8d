// Module ⇄ safetensors file: the state dict under PyTorch keys, int64 buffers written back as I64.
import type * as tf from '@tensorflow/tfjs-core';
import { readSafetensorsFile, writeSafetensorsFile, type HostTensor } from '../io/index.js';
import type { LoadOptions, LoadReport, Module } from './module.js';

/** Copies a module's state dict to host memory, each tensor tagged with the dtype it is stored as. */
export async function stateDictToHost(module: Module): Promise<Record<string, HostTensor>> {
  const stored = module.storedDtypes();
  const out: Record<string, HostTensor> = {};
  for (const [key, tensor] of module.stateDict()) out[key] = await toHost(tensor, stored.get(key));
  return out;
}

async function toHost(tensor: tf.Tensor, storedAs: string | undefined): Promise<HostTensor> {
  if (tensor.dtype === 'int32' || tensor.dtype === 'bool') {
    const data = Int32Array.from(await tensor.data());
    return { dtype: 'int32', shape: [...tensor.shape], data, fileDtype: storedAs === 'I64' ? 'I64' : 'I32' };
  }
  const data = (await tensor.data()) as Float32Array;
  return { dtype: 'float32', shape: [...tensor.shape], data, fileDtype: 'F32' };
}

/** Writes the module's state dict as safetensors (atomically); metadata goes in `__metadata__`. */
export async function saveModuleFile(module: Module, path: string, metadata?: Record<string, string>): Promise<void> {
  await writeSafetensorsFile(path, await stateDictToHost(module), metadata);
}

/** Loads a safetensors file into the module; strict by default (see `Module.loadStateDict`). */
export async function loadModuleFile(module: Module, path: string, options: LoadOptions = {}): Promise<LoadReport> {
  const { tensors } = await readSafetensorsFile(path);
  return module.loadStateDict(tensors, { source: path, ...options });
}
