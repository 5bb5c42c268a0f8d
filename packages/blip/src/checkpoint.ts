// Hugging Face checkpoint folders: `config.json` + `model.safetensors` (+ tokenizer files), read and
// written with the exact key names of transformers' BLIP. Known differences between files and our
// tree are handled here: the tied `text_decoder.cls.predictions.decoder.bias` (same tensor as
// `cls.predictions.bias`, absent from files; dropped if a file has it) and `*.embeddings.position_ids`
// (a buffer newer transformers versions no longer save; kept at 0…P-1 when absent).
import { copyFile, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type LoadReport, type Module, readJsonFile, readSafetensorsFile, stateDictToHost, VlError, writeJsonFile, writeSafetensorsFile } from '@vl/core';
import { type BlipConfig, parseBlipConfig } from './config.js';
import { TOKENIZER_FILES } from './processor.js';

export const TIED_KEYS: Readonly<Record<string, string>> = {
  'text_decoder.cls.predictions.decoder.bias': 'text_decoder.cls.predictions.bias',
};

const OPTIONAL_BUFFER = /(^|\.)embeddings\.position_ids$/;

export async function readBlipConfig(dir: string): Promise<BlipConfig> {
  const path = join(dir, 'config.json');
  if (!existsSync(path)) {
    throw new VlError('CONFIG_INVALID', 'no config.json', { subject: dir, hint: 'a Hugging Face checkpoint folder holds config.json and model.safetensors' });
  }
  return parseBlipConfig(await readJsonFile(path), path);
}

/** Loads `model.safetensors` into the model, strictly (every missing, extra or mis-shaped key is listed). */
export async function loadBlipWeights(model: Module, dir: string): Promise<LoadReport> {
  const path = join(dir, 'model.safetensors');
  if (!existsSync(path)) {
    throw new VlError('SAFETENSORS_INVALID', 'no model.safetensors', {
      subject: dir,
      hint: 'convert pytorch_model.bin to safetensors first (transformers: model.save_pretrained(dir, safe_serialization=True))',
    });
  }
  const { tensors } = await readSafetensorsFile(path);
  for (const tied of Object.keys(TIED_KEYS)) tensors.delete(tied);
  return model.loadStateDict(tensors, { source: path, allowMissing: (k) => OPTIONAL_BUFFER.test(k) });
}

/** Writes config.json (HF keys, architectures set) and model.safetensors; copies tokenizer files from `tokenizerDir`. */
export async function saveBlipFolder(
  model: Module,
  config: BlipConfig,
  dir: string,
  architecture: string,
  tokenizerDir?: string | null,
): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeJsonFile(join(dir, 'config.json'), { ...config, architectures: [architecture], model_type: 'blip' });
  const host = await stateDictToHost(model);
  for (const tied of Object.keys(TIED_KEYS)) delete host[tied];
  await writeSafetensorsFile(join(dir, 'model.safetensors'), host, { format: 'pt' });
  if (tokenizerDir && tokenizerDir !== dir) {
    for (const f of TOKENIZER_FILES) if (existsSync(join(tokenizerDir, f))) await copyFile(join(tokenizerDir, f), join(dir, f));
  }
}
