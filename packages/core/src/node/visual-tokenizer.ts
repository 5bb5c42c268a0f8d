// Training, saving and loading the k-means visual tokenizer (objectives/kmeans-tokenizer.ts) on an image
// dataset: teacher features of every patch of up to `maxImages` training images → spherical k-means →
// `visual_tokenizer.json` (what it is, how it was trained, its codebook usage) + `visual_tokenizer.safetensors`
// (teacher weights and codebook). Any model's masked image modelling can read it back (`loadVisualTokenizer`).
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
import { Rng } from '../runtime/rng.js';
import { readJsonFile, writeJsonFile } from './json-file.js';
import { loadExamples } from './loader.js';
import { loadModuleFile, saveModuleFile } from './module-file.js';
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
  teacher: { kind: 'random_patch_features'; dim: number };
  training: { images: number; patches: number; iterations: number; reseeded: number; mean_cosine: number; seed: number; seconds: number };
  usage: { train: CodebookUsage; val?: CodebookUsage };
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
  /** Teacher feature width (default 64). */
  featureDim?: number;
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
  const dim = o.featureDim ?? 64;
  const rng = new Rng(seed);
  const teacher = new RandomPatchTeacher(o.patchSize, channels, dim, rng.fork('teacher'));
  const tokenizer = new KMeansVisualTokenizer(teacher, o.vocabSize);
  try {
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
      teacher: { kind: 'random_patch_features', dim },
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
  if (file.kind !== 'kmeans' || file.teacher?.kind !== 'random_patch_features') {
    throw new VlError('CONFIG_INVALID', `unknown tokenizer kind '${String(file.kind)}' / teacher '${String(file.teacher?.kind)}'`, {
      subject: path,
      hint: "this version reads kind 'kmeans' with teacher 'random_patch_features'",
    });
  }
  // The seed is irrelevant: every weight comes from the file.
  const teacher = new RandomPatchTeacher(file.patch_size, file.channels, file.teacher.dim, new Rng(0));
  const tokenizer = new KMeansVisualTokenizer(teacher, file.vocab_size);
  try {
    await loadModuleFile(tokenizer, join(folder, VISUAL_TOKENIZER_WEIGHTS));
  } catch (err) {
    tokenizer.dispose();
    throw err;
  }
  return { tokenizer, file };
}
