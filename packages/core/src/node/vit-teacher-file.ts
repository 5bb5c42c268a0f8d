// Reads a CLIP vision tower from a folder `vl train clip` (or open_clip) wrote — `config.json` /
// `open_clip_config.json` + `model.safetensors`, keys `visual.*` — as a VitPatchTeacher for the k-means
// visual tokenizer. Core does not depend on @vl/coca: the tower is core's generic open_clip ViT, and only
// its `visual.*` tensors are read (the text tower and `visual.proj` are left out).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { IMAGE_NORMS, type ImageNorm } from '../data/image.js';
import { VlError } from '../errors.js';
import { type VitTeacherConfig, VitPatchTeacher } from '../objectives/vit-teacher.js';
import { Rng } from '../runtime/rng.js';
import { readJsonFile } from './json-file.js';
import { readSafetensorsFile } from './safetensors-file.js';

const CONFIG_NAMES = ['config.json', 'open_clip_config.json'];
const WEIGHT_NAMES = ['model.safetensors', 'open_clip_model.safetensors'];

interface OpenClipVisionJson {
  image_size?: number;
  patch_size?: number;
  width?: number;
  layers?: number;
  head_width?: number;
  mlp_ratio?: number;
  attentional_pool?: boolean;
}

/** `DIR/model` when DIR is a training output folder, else DIR. */
function clipFolder(dir: string): string {
  const inner = join(dir, 'model');
  return CONFIG_NAMES.some((n) => existsSync(join(inner, n))) ? inner : dir;
}

export interface LoadClipTeacherOptions {
  /** How the tokenizer's callers normalise pixels (BEiT-3: mean = std = 0.5). */
  inputNorm: ImageNorm;
}

/** The vision tower of a saved CLIP as a patch-feature teacher, plus where it came from. */
export async function loadClipVisionTeacher(
  dir: string,
  o: LoadClipTeacherOptions,
): Promise<{ teacher: VitPatchTeacher; source: { path: string; weights: string } }> {
  const folder = clipFolder(dir);
  const configPath = CONFIG_NAMES.map((n) => join(folder, n)).find((p) => existsSync(p));
  const weightsPath = WEIGHT_NAMES.map((n) => join(folder, n)).find((p) => existsSync(p));
  if (!configPath || !weightsPath) {
    throw new VlError('CHECKPOINT_INVALID', `no ${configPath ? WEIGHT_NAMES.join(' / ') : CONFIG_NAMES.join(' / ')} here`, {
      subject: folder,
      hint: 'pass the --out folder of `vl train clip` (or its model/ folder) as --teacher clip:DIR',
    });
  }
  const raw = await readJsonFile<Record<string, unknown>>(configPath);
  const cfg = (raw.model_cfg ?? raw) as { vision_cfg?: OpenClipVisionJson; quick_gelu?: boolean };
  const preprocess = (raw.preprocess_cfg ?? {}) as { mean?: number[]; std?: number[] };
  const v = cfg.vision_cfg;
  if (
    !v ||
    typeof v.width !== 'number' ||
    typeof v.layers !== 'number' ||
    typeof v.patch_size !== 'number' ||
    typeof v.image_size !== 'number'
  ) {
    throw new VlError('CONFIG_INVALID', 'vision_cfg with image_size, patch_size, width and layers expected', { subject: configPath });
  }
  if (v.attentional_pool) {
    throw new VlError(
      'CONFIG_INVALID',
      'this is a CoCa vision tower (attentional_pool): its ln_post acts on pooled queries, not on patches',
      {
        subject: configPath,
        hint: 'use a CLIP (`vl train clip`) as the teacher',
      },
    );
  }
  const config: VitTeacherConfig = {
    imageSize: v.image_size,
    patchSize: v.patch_size,
    channels: 3,
    width: v.width,
    layers: v.layers,
    heads: v.width / (v.head_width ?? 64),
    mlpWidth: Math.trunc(v.width * (v.mlp_ratio ?? 4)),
    activation: cfg.quick_gelu ? 'quick_gelu' : 'gelu',
    layerNormEps: 1e-5,
    // open_clip's default preprocessing (OpenAI's mean/std) unless the config says otherwise; `vl train clip` uses it.
    towerNorm: { mean: [...(preprocess.mean ?? IMAGE_NORMS.clip.mean)], std: [...(preprocess.std ?? IMAGE_NORMS.clip.std)] },
    inputNorm: { mean: [...o.inputNorm.mean], std: [...o.inputNorm.std] },
  };
  const { tensors } = await readSafetensorsFile(weightsPath);
  const visual = new Map([...tensors].filter(([k]) => k.startsWith('visual.') && k !== 'visual.proj').map(([k, t]) => [k.slice(7), t]));
  if (!visual.size) {
    throw new VlError('CHECKPOINT_INVALID', 'no visual.* tensors: not an open_clip CLIP checkpoint', { subject: weightsPath });
  }
  const teacher = new VitPatchTeacher(config, new Rng(0));
  try {
    teacher.loadStateDict(visual, { source: weightsPath });
  } catch (err) {
    teacher.dispose();
    throw err;
  }
  return { teacher, source: { path: folder, weights: weightsPath } };
}
