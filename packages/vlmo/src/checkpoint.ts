// VLMo checkpoints: the module tree uses microsoft/unilm's names, so the key map is the identity apart
// from what released files carry and the module does not: the `relative_position_index`,
// `text_relative_position_index` and `text_imag_relative_position_index` buffers of an older revision
// (skipped and reported; VLMo's own loader reports them as unexpected and rebuilds them). A folder holds
// `config.json` + `model.safetensors` (or `pytorch_model.pth`); a released `.pt` (a bare state dict) is
// read next to a config.json. Loading is strict: a missing, extra or mis-shaped key is one
// VlError('STATE_DICT_MISMATCH') that lists them all, and nothing is loaded.
import { mkdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type HostTensor, reserveWasmHeapFor, type StateEntry, VlError, withoutWeightInit } from '@vl/core';
import { readCheckpoint, readJsonFile, writeJsonFile, writeSafetensorsFile } from '@vl/core/node';
import { type VlmoConfig, vlmoConfigFromJson, vlmoConfigToJson } from './config.js';
import { Vlmo } from './model.js';

/** Buffers of an older VLMo revision found in released `.pt` files; rebuilt from the config, never loaded. */
export const VLMO_LEGACY_KEYS: readonly string[] = [
  'relative_position_index',
  'text_relative_position_index',
  'text_imag_relative_position_index',
];
const LEGACY = new Set(VLMO_LEGACY_KEYS);

const POSITION_WEIGHT = 'text_embeddings.position_embeddings.weight';
const POSITION_IDS = 'text_embeddings.position_ids';

/** Official keys → ours: the same names, without the legacy index buffers. */
export function fromOfficialStateDict(official: ReadonlyMap<string, StateEntry>): Map<string, StateEntry> {
  const out = new Map<string, StateEntry>();
  for (const [key, value] of official) if (!LEGACY.has(key)) out.set(key, value);
  return out;
}

/** The model's state under official keys, as host tensors for safetensors (position_ids back to I64). */
export function toOfficialStateDict(model: Vlmo): Map<string, HostTensor> {
  const stored = model.storedDtypes();
  const out = new Map<string, HostTensor>();
  for (const [key, tensor] of model.stateDict()) {
    const int = tensor.dtype === 'int32';
    out.set(key, {
      dtype: int ? 'int32' : 'float32',
      shape: [...tensor.shape],
      data: int ? Int32Array.from(tensor.dataSync()) : Float32Array.from(tensor.dataSync()),
      fileDtype: stored.get(key) ?? (int ? 'I32' : 'F32'),
    });
  }
  return out;
}

/**
 * VLMo's loader (`load_pretrained_weight`) cuts text position rows to max_text_len when a checkpoint has
 * more (the released stage-2 files hold 196 rows; the pretraining configs use 40). Does the same, and
 * says so; fewer rows than max_text_len stay a mis-shaped key.
 */
function cutPositionRows(dict: Map<string, StateEntry>, maxTextLen: number, notes: string[]): void {
  const weight = dict.get(POSITION_WEIGHT);
  const ids = dict.get(POSITION_IDS);
  const rows = weight?.shape[0];
  if (!weight || rows === undefined || rows <= maxTextLen || weight.shape.length !== 2) return;
  const d = weight.shape[1] as number;
  dict.set(POSITION_WEIGHT, { ...weight, shape: [maxTextLen, d], data: weight.data.slice(0, maxTextLen * d) } as StateEntry);
  if (ids && ids.shape.length === 2 && ids.shape[0] === 1 && (ids.shape[1] as number) > maxTextLen) {
    dict.set(POSITION_IDS, { ...ids, shape: [1, maxTextLen], data: ids.data.slice(0, maxTextLen) } as StateEntry);
  }
  notes.push(`text position rows cut from ${rows} to max_text_len ${maxTextLen} (as VLMo's loader does)`);
}

/** Heap bytes a model holding `dict` needs: 4 per element, plus a margin for the allocator (as @vl/blip's loader). */
/** Reads `dir/config.json` (validated). */
export async function readVlmoConfig(dir: string): Promise<VlmoConfig> {
  const path = join(dir, 'config.json');
  return vlmoConfigFromJson(await readJsonFile(path), path);
}

export interface LoadVlmoOptions {
  /** The config to build instead of the `config.json` next to the weights. */
  config?: VlmoConfig;
}

/**
 * Builds VLMo from `config.json` and loads the weights at `path`: a folder (model.safetensors, else
 * pytorch_model.pth or its only .pt/.pth/.bin), or a weights file next to config.json. Strict: a
 * missing, extra or mis-shaped key fails with all of them listed and nothing half-loaded. What was
 * skipped or adapted is in `model.loadNotes`. The model comes back in eval mode (no dropout or drop-path), as
 * Hugging Face's `from_pretrained` and @vl/blip's loaders do: call `model.train()` to fine-tune.
 */
export async function loadVlmo(path: string, options: LoadVlmoOptions = {}): Promise<Vlmo> {
  const info = await stat(path).catch(() => null);
  if (!info)
    throw new VlError('CHECKPOINT_INVALID', 'no such file or folder', {
      subject: path,
      hint: 'give a VLMo folder (config.json + weights) or a weights file',
    });
  const folder = info.isFile() ? dirname(path) : path;
  const config = options.config ?? (await readVlmoConfig(folder));
  const legacy: string[] = [];
  // Loaded right below: F32 safetensors data goes from the file straight into the variables' wasm memory
  // (core's deferData). A .pth is a pickle whose storages core decodes into arrays first (zip entries,
  // strides, I64 buffers), so it takes the ordinary copy path, with the same values.
  const { tensors, report } = await readCheckpoint(path, {
    deferData: true,
    filter: (name) => {
      if (!LEGACY.has(name)) return true;
      legacy.push(name);
      return false;
    },
  });
  const source = report.files.join(', ');
  const dict = fromOfficialStateDict(tensors);
  const notes: string[] = [];
  if (legacy.length) notes.push(`skipped ${legacy.length} legacy index buffer(s) that VLMo rebuilds: ${legacy.join(', ')}`);
  if (report.skipped.length) notes.push(`non-tensor entries left out: ${report.skipped.join(', ')}`);
  // Grow the wasm heap once for the whole model (each growth is a full GC), right before the build in the
  // same synchronous stretch so a concurrent load cannot take the space.
  reserveWasmHeapFor(dict);
  // The strict load below overwrites every parameter: build without drawing random weights.
  const model = withoutWeightInit(() => new Vlmo(config));
  try {
    // Cutting rows reads that one tensor into JS (a spread copy reads a deferred tensor's data): a small table.
    cutPositionRows(dict, model.dims.maxTextLen, notes);
    model.loadStateDict(dict, { source });
  } catch (err) {
    model.dispose();
    throw err;
  }
  model.loadNotes = notes;
  model.eval();
  return model;
}

/** Writes `dir/config.json` (snake_case, as the fixtures) and `dir/model.safetensors` under official keys. */
export async function saveVlmo(model: Vlmo, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeJsonFile(join(dir, 'config.json'), vlmoConfigToJson(model.config));
  await writeSafetensorsFile(join(dir, 'model.safetensors'), toOfficialStateDict(model));
}
