// Module ⇄ safetensors file: the state dict under PyTorch keys, int64 buffers written back as I64.
import type { LoadOptions, LoadReport, Module } from '../nn/module.js';
import { stateDictToHost } from '../nn/state-dict.js';
import { readSafetensorsFile, writeSafetensorsFile } from './safetensors-file.js';

/** Writes the module's state dict as safetensors (atomically); metadata goes in `__metadata__`. */
export async function saveModuleFile(module: Module, path: string, metadata?: Record<string, string>): Promise<void> {
  await writeSafetensorsFile(path, await stateDictToHost(module), metadata);
}

/** Loads a safetensors file into the module; strict by default (see `Module.loadStateDict`). */
export async function loadModuleFile(module: Module, path: string, options: LoadOptions = {}): Promise<LoadReport> {
  const { tensors } = await readSafetensorsFile(path);
  return module.loadStateDict(tensors, { source: path, ...options });
}
