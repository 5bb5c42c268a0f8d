// Training, saving and loading the k-means visual tokenizer (objectives/kmeans-tokenizer.ts) on an image
// dataset: teacher features of every patch of up to `maxImages` training images → spherical k-means →
// `visual_tokenizer.json` (what it is, how it was trained, its codebook usage) + `visual_tokenizer.safetensors`
// (teacher weights and codebook). Any model's masked image modelling can read it back (`loadVisualTokenizer`).
// Two teachers: a seeded random patch feature map (pixel level), or the vision tower of a saved CLIP
// (`loadClipVisionTeacher`, semantic); either way its weights are embedded in the safetensors file, so the
// folder loads on its own, and the JSON says which teacher it is and where it came from.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { DataReport } from '../data/records.js';
import type { ImageNorm } from '../data/image.js';
import { VlError } from '../errors.js';
import {
  type CodebookUsage,
  codebookUsage,
  KMeansVisualTokenizer,
  RandomPatchTeacher,
  sphericalKMeans,
} from '../objectives/kmeans-tokenizer.js';
import { type VitTeacherConfig, VitPatchTeacher } from '../objectives/vit-teacher.js';
import type { Module } from '../nn/module.js';
import type { PatchFeatureTeacher } from '../objectives/kmeans-tokenizer.js';
import { Rng } from '../runtime/rng.js';
import { readSafetensorsFile } from './safetensors-file.js';
import { readJsonFile, writeJsonFile } from './json-file.js';
import { loadExamples } from './loader.js';
import { saveModuleFile } from './module-file.js';
import { readDataset } from './readers.js';

export const VISUAL_TOKENIZER_CONFIG = 'visual_tokenizer.json';
export const VISUAL_TOKENIZER_WEIGHTS = 'visual_tokenizer.safetensors';

/** visual_tokenizer.json (snake_case, like the other config files). */
export interface VisualTokenizerFile {
  kind: 'kmeans';
  vocab_size: number;
  patch_size: number;
  channels: number;
  image_size: number;
  /** The pixel normalisation the codebook was fitted under: a model must feed pixels normalised the same way. */
  norm: { mean: number[]; std: number[] };
  teacher: VisualTokenizerTeacherFile;
  training: { images: number; patches: number; iterations: number; reseeded: number; mean_cosine: number; seed: number; seconds: number };
  usage: { train: CodebookUsage; val?: CodebookUsage };
}

/** Which teacher the codebook quantises (its weights are `teacher.*` in the safetensors file). */
export type VisualTokenizerTeacherFile =
  | { kind: 'random_patch_features'; dim: number }
  | {
      kind: 'vit';
      dim: number;
      config: VitTeacherConfig;
      /** Where the tower was read from (informative: the weights travel with the tokenizer). */
      source: { kind: 'clip'; path: string; weights: string };
    };

/** A teacher other than the default random one: the module and what the JSON file says about it. */
export interface VisualTokenizerTeacher {
  module: Module & PatchFeatureTeacher;
  file: VisualTokenizerTeacherFile;
}

export interface TrainVisualTokenizerOptions {
  /** Image dataset (JSONL/CSV/COCO/WebDataset; captions ignored). */
  train: string;
  /** Optional held-out images: codebook usage is also reported on them. */
  val?: string;
  out: string;
  vocabSize: number;
  imageSize: number;
  patchSize: number;
  channels?: number;
  /** Pixels are normalised as the model that will read the tokens does. */
  norm: ImageNorm;
  /** Random teacher's feature width (default 64). */
  featureDim?: number;
  /**
   * The teacher (default: a RandomPatchTeacher of `featureDim` features). The tokenizer takes ownership
   * (it is disposed with it). Its patch size must be `patchSize`.
   */
  teacher?: VisualTokenizerTeacher;
  /** Images read at most (default 512): k-means sees all their patches. */
  maxImages?: number;
  maxIterations?: number;
  seed?: number;
}

export interface TrainedVisualTokenizer {
  tokenizer: KMeansVisualTokenizer;
  file: VisualTokenizerFile;
  dir: string;
}

async function readPixels(
  path: string,
  size: number,
  norm: ImageNorm,
  maxImages: number,
): Promise<{ pixels: Float32Array; images: number }> {
  const report = new DataReport();
  const rows: Float32Array[] = [];
  const records = readDataset({ path }, report);
  for await (const ex of loadExamples(records, { transform: { size, mode: 'squash', interpolation: 'bicubic', norm }, report })) {
    rows.push(ex.pixels);
    if (rows.length >= maxImages) break;
  }
  if (!rows.length) throw new VlError('DATA_INVALID', 'no readable image', { subject: path });
  const per = rows[0]!.length;
  const pixels = new Float32Array(rows.length * per);
  rows.forEach((r, i) => pixels.set(r, i * per));
  return { pixels, images: rows.length };
}

/** Tokens of host images [n, C, S, S] in chunks (bounded memory). */
function tokenizeAll(tok: KMeansVisualTokenizer, pixels: Float32Array, images: number, channels: number, size: number): Int32Array {
  const per = channels * size * size;
  const out: number[] = [];
  for (let i = 0; i < images; i += 64) {
    const n = Math.min(64, images - i);
    const ids = tf.tidy(() => tok.tokenize(tf.tensor4d(pixels.subarray(i * per, (i + n) * per), [n, channels, size, size])).dataSync());
    out.push(...ids);
  }
  return Int32Array.from(out);
}

/** Trains the tokenizer on `train`'s images, writes `out/visual_tokenizer.{json,safetensors}`. */
export async function trainVisualTokenizer(o: TrainVisualTokenizerOptions): Promise<TrainedVisualTokenizer> {
  const t0 = performance.now();
  const seed = o.seed ?? 0;
  const channels = o.channels ?? 3;
  const rng = new Rng(seed);
  const teacherRng = rng.fork('teacher'); // forked even when unused, so the k-means draws do not depend on the teacher
  const teacher = o.teacher?.module ?? new RandomPatchTeacher(o.patchSize, channels, o.featureDim ?? 64, teacherRng);
  const teacherFile: VisualTokenizerTeacherFile = o.teacher?.file ?? { kind: 'random_patch_features', dim: teacher.dim };
  const dim = teacher.dim;
  const tokenizer = new KMeansVisualTokenizer(teacher, o.vocabSize);
  try {
    if (teacher.patchSize !== o.patchSize || teacher.channels !== channels || teacherFile.dim !== dim) {
      throw new VlError(
        'CONFIG_INVALID',
        `the teacher reads ${teacher.channels}-channel patches of ${teacher.patchSize} px (${dim} features), the tokenizer needs ${channels} / ${o.patchSize}`,
        { subject: 'trainVisualTokenizer', hint: "train the teacher at the model's patch size" },
      );
    }
    const { pixels, images } = await readPixels(o.train, o.imageSize, o.norm, o.maxImages ?? 512);
    const per = channels * o.imageSize * o.imageSize;
    const chunks: Float32Array[] = [];
    for (let i = 0; i < images; i += 64) {
      const n = Math.min(64, images - i);
      chunks.push(
        tf.tidy(() =>
          teacher.features(tf.tensor4d(pixels.subarray(i * per, (i + n) * per), [n, channels, o.imageSize, o.imageSize])).dataSync(),
        ) as Float32Array,
      );
    }
    const feats = new Float32Array(chunks.reduce((s, c) => s + c.length, 0));
    let at = 0;
    for (const c of chunks) {
      feats.set(c, at);
      at += c.length;
    }
    const km = sphericalKMeans(feats, dim, { k: o.vocabSize, rng: rng.fork('kmeans'), maxIterations: o.maxIterations });
    tokenizer.setCodebook(km.centroids);
    const usage: VisualTokenizerFile['usage'] = {
      train: codebookUsage(tokenizeAll(tokenizer, pixels, images, channels, o.imageSize), o.vocabSize),
    };
    if (o.val) {
      const v = await readPixels(o.val, o.imageSize, o.norm, o.maxImages ?? 512);
      usage.val = codebookUsage(tokenizeAll(tokenizer, v.pixels, v.images, channels, o.imageSize), o.vocabSize);
    }
    const file: VisualTokenizerFile = {
      kind: 'kmeans',
      vocab_size: o.vocabSize,
      patch_size: o.patchSize,
      channels,
      image_size: o.imageSize,
      norm: { mean: [...o.norm.mean], std: [...o.norm.std] },
      teacher: teacherFile,
      training: {
        images,
        patches: feats.length / dim,
        iterations: km.iterations,
        reseeded: km.reseeded,
        mean_cosine: km.meanCosine,
        seed,
        seconds: (performance.now() - t0) / 1000,
      },
      usage,
    };
    await mkdir(o.out, { recursive: true });
    await saveModuleFile(tokenizer, join(o.out, VISUAL_TOKENIZER_WEIGHTS));
    await writeJsonFile(join(o.out, VISUAL_TOKENIZER_CONFIG), file);
    return { tokenizer, file, dir: o.out };
  } catch (err) {
    tokenizer.dispose();
    throw err;
  }
}

/** `DIR/tokenizer` when DIR is a training output folder holding one, else DIR. */
export function visualTokenizerDir(dir: string): string {
  const inner = join(dir, 'tokenizer');
  return existsSync(join(inner, VISUAL_TOKENIZER_CONFIG)) ? inner : dir;
}

/** Reads a tokenizer written by `trainVisualTokenizer` (strict load of teacher and codebook). */
export async function loadVisualTokenizer(dir: string): Promise<{ tokenizer: KMeansVisualTokenizer; file: VisualTokenizerFile }> {
  const folder = visualTokenizerDir(dir);
  const path = join(folder, VISUAL_TOKENIZER_CONFIG);
  if (!existsSync(path)) {
    throw new VlError('CHECKPOINT_INVALID', `no ${VISUAL_TOKENIZER_CONFIG} here`, {
      subject: dir,
      hint: 'train one first (`vl train beit3 --task tokenizer`), and pass its --out folder',
    });
  }
  const file = await readJsonFile<VisualTokenizerFile>(path);
  const kind = file.teacher?.kind;
  if (file.kind !== 'kmeans' || (kind !== 'random_patch_features' && kind !== 'vit')) {
    throw new VlError('CONFIG_INVALID', `unknown tokenizer kind '${String(file.kind)}' / teacher '${String(kind)}'`, {
      subject: path,
      hint: "this version reads kind 'kmeans' with teacher 'random_patch_features' or 'vit'",
    });
  }
  const weights = join(folder, VISUAL_TOKENIZER_WEIGHTS);
  if (!existsSync(weights)) {
    throw new VlError('CHECKPOINT_INVALID', `${VISUAL_TOKENIZER_WEIGHTS} is missing (it holds the teacher and the codebook)`, {
      subject: folder,
    });
  }
  const { tensors } = await readSafetensorsFile(weights);
  if (![...tensors.keys()].some((k) => k.startsWith('teacher.'))) {
    throw new VlError('CHECKPOINT_INVALID', `no teacher.* tensors: the ${kind} teacher's weights are missing`, {
      subject: weights,
      hint: 'train the tokenizer again; a tokenizer folder embeds its teacher',
    });
  }
  // The seeds are irrelevant: every weight comes from the file.
  let teacher: Module & PatchFeatureTeacher;
  if (file.teacher.kind === 'vit') {
    const t = new VitPatchTeacher(file.teacher.config, new Rng(0));
    if (t.patchSize !== file.patch_size || t.dim !== file.teacher.dim) {
      t.dispose();
      throw new VlError(
        'CONFIG_INVALID',
        `the vit teacher's patch ${t.patchSize} / width ${t.dim} disagree with patch_size / teacher.dim`,
        {
          subject: path,
        },
      );
    }
    teacher = t;
  } else {
    teacher = new RandomPatchTeacher(file.patch_size, file.channels, file.teacher.dim, new Rng(0));
  }
  const tokenizer = new KMeansVisualTokenizer(teacher, file.vocab_size);
  try {
    tokenizer.loadStateDict(tensors, { source: weights });
  } catch (err) {
    tokenizer.dispose();
    throw err;
  }
  return { tokenizer, file };
}
