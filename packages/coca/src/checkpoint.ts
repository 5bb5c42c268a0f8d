// CoCa and CLIP checkpoints as open_clip saves them: a folder with `config.json` (or
// `open_clip_config.json`, `{ model_cfg, preprocess_cfg }`) and `model.safetensors` /
// `open_clip_model.safetensors` or the bare state dict of `open_clip_pytorch_model.bin` /
// `pytorch_model.pth` (read by core's safe pickle reader). The module tree uses open_clip's names, so
// the key map is the identity. Loading is strict; a CLIP checkpoint given to CoCa (or the reverse) is a
// CHECKPOINT_INVALID that says which model the keys belong to, before any shape is compared.
import { access, mkdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type HostTensor, reserveWasmHeapFor, type StateEntry, VlError, withoutWeightInit } from '@vl/core';
import { readCheckpoint, readJsonFile, writeJsonFile, writeSafetensorsFile } from '@vl/core/node';
import { isCocaConfig, type OpenClipConfig, openClipConfigToJson, parseOpenClipConfig } from './config.js';
import { Clip, CoCa } from './model.js';

export type OpenClipKind = 'coca' | 'clip';

/** Which model a set of open_clip keys belongs to, from the keys only; null when neither. */
export function detectOpenClipKind(keys: Iterable<string>): OpenClipKind | null {
  let coca = false;
  let clip = false;
  for (const k of keys) {
    if (k.startsWith('text_decoder.') || k.startsWith('text.') || k.startsWith('visual.attn_pool.')) coca = true;
    if (k === 'token_embedding.weight' || k === 'text_projection' || k.startsWith('transformer.resblocks.')) clip = true;
  }
  if (coca === clip) return null;
  return coca ? 'coca' : 'clip';
}

const LABEL: Record<OpenClipKind, string> = {
  coca: 'an open_clip CoCa checkpoint (text.*, text_decoder.*, visual.attn_pool.*)',
  clip: 'an open_clip CLIP checkpoint (token_embedding, transformer.resblocks.* at the top level, no text_decoder)',
};

/** Throws when the keys plainly belong to the other model. */
export function checkKind(keys: Iterable<string>, want: OpenClipKind, subject: string): void {
  const found = detectOpenClipKind(keys);
  if (found && found !== want) {
    throw new VlError('CHECKPOINT_INVALID', `this is ${LABEL[found]}, not ${want === 'coca' ? 'CoCa' : 'CLIP'}`, {
      subject,
      hint:
        found === 'clip' ? 'load it with Clip (`vl verify clip`, Clip.fromPretrained)' : 'load it with CoCa (`vl verify coca`, loadCoca)',
    });
  }
}

/** Official keys → ours: identical names; a DDP `module.` prefix is stripped as open_clip's load_checkpoint does. */
export function fromOfficialStateDict(official: ReadonlyMap<string, StateEntry>): Map<string, StateEntry> {
  const keys = [...official.keys()];
  const ddp = keys.length > 0 && keys.every((k) => k.startsWith('module.'));
  return new Map([...official].map(([k, v]) => [ddp ? k.slice('module.'.length) : k, v]));
}

export function toOfficialStateDict(model: CoCa | Clip): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [key, tensor] of model.stateDict()) {
    out.set(key, { dtype: 'float32', shape: [...tensor.shape], data: Float32Array.from(tensor.dataSync()), fileDtype: 'F32' });
  }
  return out;
}

const CONFIG_NAMES = ['config.json', 'open_clip_config.json'];

export async function readOpenClipConfig(folder: string): Promise<OpenClipConfig> {
  for (const name of CONFIG_NAMES) {
    const path = join(folder, name);
    const exists = await access(path).then(
      () => true,
      () => false,
    );
    if (exists) return parseOpenClipConfig(await readJsonFile(path), path);
  }
  throw new VlError('CHECKPOINT_INVALID', `no ${CONFIG_NAMES.join(' or ')} in the folder`, {
    subject: folder,
    hint: 'open_clip folders hold open_clip_config.json next to the weights',
  });
}

/** Heap bytes a model holding `dict` needs: 4 per element, plus a margin for the allocator (as @vl/blip's loader). */
async function load<M extends CoCa | Clip>(
  path: string,
  want: OpenClipKind,
  make: (c: OpenClipConfig) => M,
  config?: OpenClipConfig,
): Promise<M> {
  const info = await stat(path).catch(() => null);
  if (!info)
    throw new VlError('CHECKPOINT_INVALID', 'no such file or folder', {
      subject: path,
      hint: 'give a folder (config.json + weights) or a weights file',
    });
  const folder = info.isFile() ? dirname(path) : path;
  // Loaded right below: F32 safetensors data goes from the file straight into the variables' wasm memory
  // (core's deferData). open_clip's .bin/.pth are pickles whose storages core decodes into arrays first
  // (zip entries, strides, other dtypes), so they take the ordinary copy path, with the same values.
  const { tensors, report } = await readCheckpoint(path, { deferData: true });
  const source = report.files.join(', ');
  const dict = fromOfficialStateDict(tensors);
  checkKind(dict.keys(), want, source);
  const cfg = config ?? (await readOpenClipConfig(folder));
  if (isCocaConfig(cfg) !== (want === 'coca')) {
    throw new VlError(
      'CONFIG_INVALID',
      `the config describes ${isCocaConfig(cfg) ? 'CoCa (it has multimodal_cfg)' : 'CLIP (no multimodal_cfg)'}`,
      {
        subject: folder,
        hint: want === 'coca' ? 'load it with Clip' : 'load it with CoCa',
      },
    );
  }
  // Grow the wasm heap once for the whole model (each growth is a full GC), right before the build in the
  // same synchronous stretch so a concurrent load cannot take the space.
  reserveWasmHeapFor(dict);
  // The strict load below overwrites every parameter: build without drawing random weights.
  const model = withoutWeightInit(() => make(cfg));
  try {
    model.loadStateDict(dict, { source });
  } catch (err) {
    model.dispose();
    throw err;
  }
  model.loadNotes = report.skipped.length ? [`non-tensor entries left out: ${report.skipped.join(', ')}`] : [];
  model.eval();
  return model;
}

/** CoCa from an open_clip folder or weights file (strict). */
export function loadCoca(path: string, options: { config?: OpenClipConfig } = {}): Promise<CoCa> {
  return load(path, 'coca', (c) => new CoCa(c), options.config);
}

/** CLIP from an open_clip folder or weights file (strict). */
export function loadClip(path: string, options: { config?: OpenClipConfig } = {}): Promise<Clip> {
  return load(path, 'clip', (c) => new Clip(c), options.config);
}

/** Writes `dir/config.json` (open_clip_config.json's format) and `dir/model.safetensors` under open_clip's keys. */
export async function saveOpenClip(model: CoCa | Clip, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeJsonFile(join(dir, 'config.json'), openClipConfigToJson(model.config));
  await writeSafetensorsFile(join(dir, 'model.safetensors'), toOfficialStateDict(model));
}
