// ALBEF checkpoints: the mapping between our state-dict keys and salesforce/ALBEF's (both
// directions), and loading/saving a model folder (`config.json` + `model.safetensors`).
//
// Where our tree differs from the official one:
//   queue.image_queue / queue.text_queue / queue.queue_ptr  ↔  image_queue / text_queue / queue_ptr
//     (FeatureQueue registers its buffers under its own name)
//   the MLM decoder is tied (AlbefLmHead reads the word embeddings), so the official file's
//   `<enc>.cls.predictions.decoder.weight` (= `<enc>.bert.embeddings.word_embeddings.weight`) and
//   `<enc>.cls.predictions.decoder.bias` (= `<enc>.cls.predictions.bias`) are checked and dropped
//   on load, and written back on save, for enc in text_encoder, text_encoder_m.
import { mkdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type * as tf from '@tensorflow/tfjs-core';
import { type HostTensor, type StateValue, VlError, withoutWeightInit } from '@vl/core';
import { readCheckpoint, readJsonFile, writeJsonFile, writeSafetensorsFile } from '@vl/core/node';
import { type AlbefConfig, albefConfigFromJson, albefConfigToJson } from './config.js';
import { Albef, type AlbefPretrainOptions } from './model.js';

/** Renamed keys: [ours, official]. */
export const ALBEF_KEY_MAP: readonly (readonly [ours: string, official: string])[] = [
  ['queue.image_queue', 'image_queue'],
  ['queue.text_queue', 'text_queue'],
  ['queue.queue_ptr', 'queue_ptr'],
];

/** Official keys that duplicate a tensor we keep once: [official duplicate, official key it equals]. */
export const ALBEF_TIED_KEYS: readonly (readonly [duplicate: string, source: string])[] = ['text_encoder', 'text_encoder_m'].flatMap(
  (enc) =>
    [
      [`${enc}.cls.predictions.decoder.weight`, `${enc}.bert.embeddings.word_embeddings.weight`],
      [`${enc}.cls.predictions.decoder.bias`, `${enc}.cls.predictions.bias`],
    ] as const,
);

const toOfficial = new Map(ALBEF_KEY_MAP.map(([o, f]) => [o, f]));
const toOurs = new Map(ALBEF_KEY_MAP.map(([o, f]) => [f, o]));

export function officialKey(ours: string): string {
  return toOfficial.get(ours) ?? ours;
}

export function ourKey(official: string): string {
  return toOurs.get(official) ?? official;
}

type Entry = StateValue | HostTensor;

function sameValues(a: Entry, b: Entry): boolean {
  if (a.shape.join() !== b.shape.join() || a.data.length !== b.data.length) return false;
  for (let i = 0; i < a.data.length; i++) if (a.data[i] !== b.data[i]) return false;
  return true;
}

/**
 * Official keys → ours. Tied duplicates must equal their source (a file where they differ was
 * not made by ALBEF's tied BertForMaskedLM, and loading it would silently change the model).
 */
export function fromOfficialStateDict(official: ReadonlyMap<string, Entry>, subject = 'state dict'): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const problems: string[] = [];
  const duplicates = new Map(ALBEF_TIED_KEYS.map(([d, s]) => [d, s]));
  for (const [key, value] of official) {
    const source = duplicates.get(key);
    if (source !== undefined) {
      const src = official.get(source);
      if (src && !sameValues(src, value)) problems.push(`'${key}' differs from '${source}' (ALBEF ties them)`);
      continue;
    }
    out.set(ourKey(key), value);
  }
  if (problems.length) {
    throw new VlError('STATE_DICT_MISMATCH', problems.join('; '), {
      subject,
      hint: 'untie is not supported: the MLM decoder is the word embedding matrix',
    });
  }
  return out;
}

/** The model's state under official keys, tied duplicates included, as host tensors for safetensors. */
export function toOfficialStateDict(model: Albef): Map<string, HostTensor> {
  const stored = model.storedDtypes();
  const out = new Map<string, HostTensor>();
  for (const [key, tensor] of model.stateDict()) {
    const dtype = tensor.dtype === 'int32' ? 'int32' : 'float32';
    const data = dtype === 'int32' ? Int32Array.from(tensor.dataSync()) : Float32Array.from(tensor.dataSync());
    out.set(officialKey(key), { dtype, shape: [...tensor.shape], data, fileDtype: stored.get(key) ?? (dtype === 'int32' ? 'I32' : 'F32') });
  }
  for (const [dup, source] of ALBEF_TIED_KEYS) {
    const src = out.get(source);
    if (src) out.set(dup, { ...src, data: src.data.slice() });
  }
  return out;
}

/** Reads `dir/config.json` (validated). */
export async function readAlbefConfig(dir: string): Promise<AlbefConfig> {
  const path = join(dir, 'config.json');
  return albefConfigFromJson(await readJsonFile(path), path);
}

/**
 * Builds the model from `config.json` and loads the weights of `dir` under official keys: a folder's
 * model.safetensors or ALBEF.pth, or a weights file next to config.json (any format core reads),
 * strictly: a missing, extra or mis-shaped key is an error that lists them all. The model comes back in eval mode
 * (no dropout), as Hugging Face's `from_pretrained` and @vl/blip's loaders do: call `model.train()` to fine-tune.
 */
export async function loadAlbef(dir: string, options: { pretrain?: AlbefPretrainOptions } = {}): Promise<Albef> {
  const info = await stat(dir).catch(() => null);
  const folder = info?.isFile() ? dirname(dir) : dir;
  const config = await readAlbefConfig(folder);
  // Any format core reads: model.safetensors, or the released ALBEF.pth ({"model": …}, found automatically).
  const { tensors, report } = await readCheckpoint(dir);
  const source = report.files.join(', ');
  // The strict load below overwrites every parameter: build without drawing random weights.
  const model = withoutWeightInit(() => new Albef(config, undefined, options.pretrain));
  try {
    model.loadStateDict(fromOfficialStateDict(tensors, source), { source });
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model.eval();
}

/** Writes `dir/config.json` and `dir/model.safetensors` under official keys. */
export async function saveAlbef(model: Albef, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeJsonFile(join(dir, 'config.json'), albefConfigToJson(model.config));
  await writeSafetensorsFile(join(dir, 'model.safetensors'), toOfficialStateDict(model));
}

/** For tests: the tensor for an official key. */
export function officialTensor(model: Albef, key: string): tf.Tensor | undefined {
  return model.stateDict().get(ourKey(key));
}
