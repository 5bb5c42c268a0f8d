// Hugging Face checkpoint folders: `config.json` + weights (`model.safetensors`, a sharded index or
// `pytorch_model.bin`) (+ tokenizer files), read and
// written with the exact key names of transformers' BLIP. Known differences between files and our
// tree are handled here: the tied `text_decoder.cls.predictions.decoder.bias` (same tensor as
// `cls.predictions.bias`, absent from files; dropped if a file has it) and `*.embeddings.position_ids`
// (a buffer newer transformers versions no longer save; kept at 0…P-1 when absent).
import { copyFile, mkdir, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type LoadReport, type Module, stateDictToHost, VlError } from '@vl/core';
import { readCheckpoint, readJsonFile, writeJsonFile, writeSafetensorsFile } from '@vl/core/node';
import { type BlipConfig, blipConfigFromJson, blipConfigToJson } from './config.js';
import { TOKENIZER_FILES } from './processor.js';

export const TIED_KEYS: Readonly<Record<string, string>> = {
  'text_decoder.cls.predictions.decoder.bias': 'text_decoder.cls.predictions.bias',
};

const OPTIONAL_BUFFER = /(^|\.)embeddings\.position_ids$/;

/** The folder of a checkpoint path: the path itself, or the folder of a weights file (where config.json sits). */
export async function checkpointFolder(path: string): Promise<string> {
  const info = await stat(path).catch(() => null);
  return info?.isFile() ? dirname(path) : path;
}

export async function readBlipConfig(dir: string): Promise<BlipConfig> {
  const path = join(await checkpointFolder(dir), 'config.json');
  if (!existsSync(path)) {
    throw new VlError('CONFIG_INVALID', 'no config.json', {
      subject: dir,
      hint: 'a Hugging Face checkpoint folder holds config.json and model.safetensors',
    });
  }
  return blipConfigFromJson(await readJsonFile(path), path);
}

/**
 * Loads the weights of a checkpoint folder or file in any format core reads (model.safetensors, a sharded
 * index, pytorch_model.bin / .pth), strictly: every missing, extra or mis-shaped key is listed.
 */
export async function loadBlipWeights(model: Module, path: string): Promise<LoadReport> {
  const { tensors, report } = await readCheckpoint(path);
  for (const tied of Object.keys(TIED_KEYS)) tensors.delete(tied);
  return model.loadStateDict(tensors, { source: report.files.join(', '), allowMissing: (k) => OPTIONAL_BUFFER.test(k) });
}

/**
 * Writes config.json (HF snake_case keys, architectures set; extra camelCase fields of `config` are
 * written snake_case too) and model.safetensors; copies tokenizer files from `tokenizerDir`.
 */
export async function saveBlipFolder(
  model: Module,
  config: BlipConfig | Record<string, unknown>,
  dir: string,
  architecture: string,
  tokenizerDir?: string | null,
): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeJsonFile(join(dir, 'config.json'), blipConfigToJson({ ...config, architectures: [architecture], modelType: 'blip' }));
  const host = await stateDictToHost(model);
  for (const tied of Object.keys(TIED_KEYS)) delete host[tied];
  await writeSafetensorsFile(join(dir, 'model.safetensors'), host, { format: 'pt' });
  if (tokenizerDir && tokenizerDir !== dir) {
    for (const f of TOKENIZER_FILES) if (existsSync(join(tokenizerDir, f))) await copyFile(join(tokenizerDir, f), join(dir, f));
  }
}
