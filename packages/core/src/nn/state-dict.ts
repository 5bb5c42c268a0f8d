// Module → host tensors: the state dict under PyTorch keys, int64 buffers tagged to be written back as I64.
import type * as tf from '@tensorflow/tfjs-core';
import type { HostTensor } from '../io/safetensors.js';
import type { Module } from './module.js';

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
