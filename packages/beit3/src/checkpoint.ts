// BEiT-3 checkpoints: the module tree uses the official names, so the key map is the identity. A folder
// holds `config.json` + `model.safetensors` (or `pytorch_model.pth`); a released `.pth` is torch.save({"model":
// state_dict}) and is read next to a config.json (the state dict is found under `model`, then `module`,
// as `utils.load_model_and_may_interpolate` looks). Loading is strict: a missing, extra or mis-shaped key is
// one VlError('STATE_DICT_MISMATCH') listing them all, and nothing is loaded; weights of another task's
// model are named as such. A vision position table of another grid is resized as the official loader does.
import { mkdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { type HostTensor, interpolatePositionEmbedding, reserveWasmHeapFor, type StateEntry, VlError, withoutWeightInit } from '@vl/core';
import { readCheckpoint, readJsonFile, writeJsonFile, writeSafetensorsFile } from '@vl/core/node';
import { type Beit3Config, beit3ConfigFromJson, beit3ConfigToJson, beit3Dims, type Beit3Task } from './config.js';
import { type Beit3Model, buildBeit3, POSITION_OFFSET } from './model.js';

/** Keys only one task's model has, and how the task's factory is spelled. */
const TASK_MARKERS: readonly { task: Beit3Task; key: string; heads: string; suffix: string }[] = [
  { task: 'retrieval', key: 'vision_head.weight', heads: 'vision_head, language_head, logit_scale', suffix: 'retrieval' },
  { task: 'captioning', key: 'mlm_head.weight', heads: 'mlm_head', suffix: 'captioning' },
  { task: 'vqa', key: 'pooler.dense.weight', heads: 'pooler.*, head.0/1/3', suffix: 'vqav2' },
  { task: 'classification', key: 'fc_norm.weight', heads: 'fc_norm, head', suffix: 'imageclassification' },
  { task: 'nlvr2', key: 'head.dense1.weight', heads: 'head.norm1/dense1/norm2/dense2', suffix: 'nlvr2' },
];

const VISION_POSITIONS = 'beit3.encoder.embed_positions.A.weight';

/** The task whose heads a state dict holds; null for a backbone without heads (a pretrained file). */
export function detectBeit3Task(keys: Iterable<string>): Beit3Task | null {
  const set = new Set(keys);
  return TASK_MARKERS.find((m) => set.has(m.key))?.task ?? null;
}

/** Official keys → ours: the same names. */
export function fromOfficialStateDict(official: ReadonlyMap<string, StateEntry>): Map<string, StateEntry> {
  return new Map(official);
}

/** The model's state under official keys, as host tensors for safetensors. */
export function toOfficialStateDict(model: Beit3Model): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [key, tensor] of model.stateDict()) {
    out.set(key, { dtype: 'float32', shape: [...tensor.shape], data: Float32Array.from(tensor.dataSync()), fileDtype: 'F32' });
  }
  return out;
}

/** Reads `dir/config.json` (validated). */
export async function readBeit3Config(dir: string): Promise<Beit3Config> {
  const path = join(dir, 'config.json');
  return beit3ConfigFromJson(await readJsonFile(path), path);
}

/**
 * `load_model_and_may_interpolate`: a vision position table for another square grid keeps its first 3 rows
 * (the 2 unused offset rows and CLS) and resizes the patch rows bicubically (align_corners False).
 * Returns a note, or null when nothing changed; other row counts are left for the strict load to report.
 */
function interpolateVisionPositions(dict: Map<string, StateEntry>, numVisionTokens: number, subject: string): string | null {
  const entry = dict.get(VISION_POSITIONS);
  const want = numVisionTokens + POSITION_OFFSET;
  if (!entry || entry.shape.length !== 2 || entry.shape[0] === want) return null;
  const extra = POSITION_OFFSET + 1;
  const rows = entry.shape[0] as number;
  const d = entry.shape[1] as number;
  const from = Math.round(Math.sqrt(rows - extra));
  const to = Math.round(Math.sqrt(numVisionTokens - 1));
  if (from * from !== rows - extra || to * to !== numVisionTokens - 1) return null;
  const data = 'data' in entry ? (entry.data as ArrayLike<number>) : null;
  if (!data) {
    throw new VlError('CHECKPOINT_INVALID', `${VISION_POSITIONS} could not be read for interpolation`, { subject });
  }
  const resized = tf.tidy(() => {
    const pos = tf.tensor3d(Float32Array.from(data), [1, rows, d]);
    return interpolatePositionEmbedding(pos, [from, from], [to, to], extra).dataSync() as Float32Array;
  });
  dict.set(VISION_POSITIONS, { dtype: 'float32', shape: [want, d], data: Float32Array.from(resized), fileDtype: 'F32' } as StateEntry);
  return `vision positions interpolated from ${from}×${from} to ${to}×${to} patches (bicubic, as utils.load_model_and_may_interpolate does)`;
}

export interface LoadBeit3Options {
  /** The config to build instead of the `config.json` next to the weights. */
  config?: Beit3Config;
}

/**
 * Builds the model config.json names (the factory's task class) and loads the weights at `path`: a folder
 * (model.safetensors, else pytorch_model.pth or its only weights file), or a weights file next to
 * config.json. Strict; what was adapted is in `model.loadNotes`. The model comes back in eval mode (no drop-path),
 * as Hugging Face's `from_pretrained` and @vl/blip's loaders do: call `model.train()` to fine-tune.
 */
export async function loadBeit3(path: string, options: LoadBeit3Options = {}): Promise<Beit3Model> {
  const info = await stat(path).catch(() => null);
  if (!info) {
    throw new VlError('CHECKPOINT_INVALID', 'no such file or folder', {
      subject: path,
      hint: 'give a BEiT-3 folder (config.json + weights) or a weights file next to its config.json',
    });
  }
  const folder = info.isFile() ? dirname(path) : path;
  const config = options.config ?? (await readBeit3Config(folder));
  // Loaded right below: F32 safetensors data goes from the file straight into the variables' wasm memory
  // (core's deferData). A released .pth is a pickle whose storages core decodes into arrays first (zip
  // entries, strides, other dtypes), so it takes the ordinary copy path, with the same values.
  const { tensors, report } = await readCheckpoint(path, { deferData: true });
  const source = report.files.join(', ');
  const dict = fromOfficialStateDict(tensors);
  const dims = beit3Dims(config);
  if (dict.has('mim_head.weight')) {
    throw new VlError(
      'STATE_DICT_MISMATCH',
      'these are masked-data-modeling pretraining weights (mim_head, mlm_head), not a fine-tuned model',
      {
        subject: source,
        hint: 'read them with loadBeit3Mdm, or put their backbone under a fine-tuned model with loadBeit3Backbone',
      },
    );
  }
  const found = detectBeit3Task(dict.keys());
  if (found !== dims.task) {
    const marker = TASK_MARKERS.find((m) => m.task === found);
    const wantMarker = TASK_MARKERS.find((m) => m.task === dims.task)!;
    throw new VlError(
      'STATE_DICT_MISMATCH',
      found
        ? `the weights are a ${found} model (${marker!.heads}), but config.json's factory '${config.factory}' builds the ${dims.task} model (${wantMarker.heads})`
        : `the weights hold no task head (a pretrained backbone?), but config.json's factory '${config.factory}' builds the ${dims.task} model (${wantMarker.heads})`,
      {
        subject: source,
        hint: found
          ? `use a config.json whose factory ends in _${marker!.suffix} for these weights, or the ${dims.task} checkpoint for this config`
          : 'load a fine-tuned checkpoint of that task',
      },
    );
  }
  const notes: string[] = [];
  if (report.skipped.length) notes.push(`non-tensor entries left out: ${report.skipped.join(', ')}`);
  // A table of another grid is read into JS and resized (bicubic) before it lands: that one takes the copy path.
  const resized = interpolateVisionPositions(dict, dims.numVisionTokens, source);
  if (resized) notes.push(resized);
  // Grow the wasm heap once for the whole model (each growth is a full GC), right before the build in the
  // same synchronous stretch so a concurrent load cannot take the space.
  reserveWasmHeapFor(dict);
  // The strict load below overwrites every parameter: build without drawing random weights.
  const model = withoutWeightInit(() => buildBeit3(config));
  try {
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
export async function saveBeit3(model: Beit3Model, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeJsonFile(join(dir, 'config.json'), beit3ConfigToJson(model.config));
  await writeSafetensorsFile(join(dir, 'model.safetensors'), toOfficialStateDict(model));
}
