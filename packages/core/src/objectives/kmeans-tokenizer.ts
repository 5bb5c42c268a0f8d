// A trainable visual tokenizer for masked image modelling that fits a small CPU: a k-means codebook over a
// teacher's per-patch features (the cheap cousin of BEiT v2's VQ-KD, whose codebook is also l2-normalised
// and assigned by cosine). Spherical k-means (Lloyd) with k-means++ seeding; an empty cluster — a dead
// code, the known failure of VQ codebooks — is re-seeded at the point its centroid explains worst.
// `codebookUsage` reports how many codes a set of images actually uses.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import { Module } from '../nn/module.js';
import { gelu } from '../nn/functional.js';
import type { Rng } from '../runtime/rng.js';
import type { VisualTokenizer } from './mim.js';

/** Per-patch features of images: the "teacher" whose feature space the codebook quantises. */
export interface PatchFeatureTeacher {
  readonly patchSize: number;
  readonly channels: number;
  /** Feature width F. */
  readonly dim: number;
  /** pixels [B, C, H, W] → [B·N, F], patches row-major over the grid. */
  features(pixels: tf.Tensor): tf.Tensor2D;
}

/** pixels [B, C, H, W] → flattened patches [B·gh·gw, C·P·P] (row-major grid), checking the shape. */
export function patchify(pixels: tf.Tensor, patchSize: number, channels: number, subject: string): tf.Tensor2D {
  const [b, c, h, w] = pixels.shape as [number, number, number, number];
  const p = patchSize;
  if (pixels.rank !== 4 || c !== channels || h % p !== 0 || w % p !== 0) {
    throw new VlError('SHAPE_MISMATCH', `expects [B, ${channels}, H, W] with H, W multiples of ${p}, got [${pixels.shape}]`, { subject });
  }
  const gh = h / p;
  const gw = w / p;
  return tf.tidy(() => {
    // [B, C, gh, P, gw, P] → [B, gh, gw, C, P, P] → [B·gh·gw, C·P·P]
    const x = tf.transpose(tf.reshape(pixels, [b, c, gh, p, gw, p]), [0, 2, 4, 1, 3, 5]);
    return tf.reshape(x, [b * gh * gw, c * p * p]) as tf.Tensor2D;
  });
}

/**
 * A fixed, seeded random feature map of each patch: GELU(W·x + b), W ~ N(0, 1/(C·P·P)), b ~ N(0, 0.5²).
 * Random non-linear features keep the geometry of the patch space (Johnson–Lindenstrauss; arc-cosine
 * kernel for the non-linearity), so k-means in them clusters patches by colour and edge layout — a pixel
 * level teacher, not a semantic one like BEiT v2's CLIP. Its weights are buffers (saved with the codebook).
 */
export class RandomPatchTeacher extends Module implements PatchFeatureTeacher {
  readonly weight: tf.Tensor;
  readonly bias: tf.Tensor;

  constructor(
    readonly patchSize: number,
    readonly channels: number,
    readonly dim: number,
    rng: Rng,
  ) {
    super();
    const inF = channels * patchSize * patchSize;
    const w = new Float32Array(dim * inF);
    for (let i = 0; i < w.length; i++) w[i] = rng.normal() / Math.sqrt(inF);
    const b = new Float32Array(dim);
    for (let i = 0; i < dim; i++) b[i] = 0.5 * rng.normal();
    this.weight = this.registerBuffer('weight', tf.tensor2d(w, [dim, inF]));
    this.bias = this.registerBuffer('bias', tf.tensor1d(b));
  }

  features(pixels: tf.Tensor): tf.Tensor2D {
    return tf.tidy(() => {
      const patches = patchify(pixels, this.patchSize, this.channels, 'RandomPatchTeacher');
      // Buffers are read through getBuffer so a loaded state dict is what runs.
      return gelu(tf.add(tf.matMul(patches, this.getBuffer('weight'), false, true), this.getBuffer('bias'))) as tf.Tensor2D;
    });
  }
}

/** How a set of token ids spreads over the codebook. */
export interface CodebookUsage {
  vocabSize: number;
  tokens: number;
  /** Codes that occur at least once. */
  used: number;
  /** Codes that never occur: vocabSize − used. */
  dead: number;
  /** exp(entropy) of the code frequencies: vocabSize when uniform, 1 when one code takes everything. */
  perplexity: number;
  /** Share of the tokens taken by the most frequent code. */
  topShare: number;
}

export function codebookUsage(ids: ArrayLike<number>, vocabSize: number): CodebookUsage {
  const counts = new Float64Array(vocabSize);
  for (let i = 0; i < ids.length; i++) counts[ids[i]!]! += 1;
  const n = ids.length;
  let used = 0;
  let entropy = 0;
  let top = 0;
  for (const c of counts) {
    if (c === 0) continue;
    used++;
    const p = c / n;
    entropy -= p * Math.log(p);
    top = Math.max(top, c);
  }
  return { vocabSize, tokens: n, used, dead: vocabSize - used, perplexity: Math.exp(entropy), topShare: n ? top / n : 0 };
}

export interface KMeansOptions {
  /** Codes K. */
  k: number;
  rng: Rng;
  /** Lloyd iterations at most (stops earlier when no assignment changes). Default 30. */
  maxIterations?: number;
}

export interface KMeansResult {
  /** [K·F] unit rows. */
  centroids: Float32Array;
  /** Code of every point after the last iteration. */
  assignments: Int32Array;
  iterations: number;
  /** Empty clusters re-seeded, over all iterations (0 when no code ever died). */
  reseeded: number;
  /** Mean cosine between each point and its centroid (1 = perfect). */
  meanCosine: number;
}

function normaliseRows(x: Float32Array, dim: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / dim; r++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += x[r * dim + j]! ** 2;
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let j = 0; j < dim; j++) out[r * dim + j] = x[r * dim + j]! * inv;
  }
  return out;
}

/** Best code and its cosine for every point: one [N, F]·[F, K] product. */
function assign(points: Float32Array, centroids: Float32Array, n: number, dim: number, k: number): { ids: Int32Array; cos: Float32Array } {
  return tf.tidy(() => {
    const sims = tf.matMul(tf.tensor2d(points, [n, dim]), tf.tensor2d(centroids, [k, dim]), false, true);
    return { ids: tf.argMax(sims, 1).dataSync() as Int32Array, cos: tf.max(sims, 1).dataSync() as Float32Array };
  });
}

/**
 * Spherical k-means of `points` [N·F] (rows are l2-normalised first): k-means++ seeding on the cosine
 * distance, then Lloyd steps (centroid = normalised mean). Deterministic for a seed.
 */
export function sphericalKMeans(points: Float32Array, dim: number, options: KMeansOptions): KMeansResult {
  const { k, rng } = options;
  const n = points.length / dim;
  if (!Number.isInteger(n) || n < k) {
    throw new VlError('DATA_INVALID', `k-means needs at least ${k} points of width ${dim}, got ${points.length / dim}`, {
      subject: 'sphericalKMeans',
      hint: 'train the tokenizer on more images, or with a smaller vocabulary',
    });
  }
  const x = normaliseRows(points, dim);
  const centroids = new Float32Array(k * dim);
  // k-means++: each next seed drawn ∝ squared distance (2 − 2·cos) to the nearest seed so far.
  const d2 = new Float64Array(n).fill(Infinity);
  let pick = rng.int(n);
  for (let c = 0; c < k; c++) {
    centroids.set(x.subarray(pick * dim, (pick + 1) * dim), c * dim);
    let total = 0;
    for (let i = 0; i < n; i++) {
      let dot = 0;
      for (let j = 0; j < dim; j++) dot += x[i * dim + j]! * centroids[c * dim + j]!;
      d2[i] = Math.min(d2[i]!, Math.max(0, 2 - 2 * dot));
      total += d2[i]!;
    }
    if (c === k - 1) break;
    let u = rng.uniform() * total;
    pick = n - 1;
    for (let i = 0; i < n; i++) {
      u -= d2[i]!;
      if (u <= 0) {
        pick = i;
        break;
      }
    }
  }
  const maxIterations = options.maxIterations ?? 30;
  let assignments: Int32Array = new Int32Array(n).fill(-1);
  let reseeded = 0;
  let iterations = 0;
  let cos: Float32Array = new Float32Array(n);
  for (let it = 0; it < maxIterations; it++) {
    const a = assign(x, centroids, n, dim, k);
    cos = a.cos;
    iterations = it + 1;
    const changed = a.ids.some((v, i) => v !== assignments[i]);
    assignments = a.ids;
    if (!changed) break;
    const sums = new Float64Array(k * dim);
    const counts = new Int32Array(k);
    for (let i = 0; i < n; i++) {
      const c = assignments[i]!;
      counts[c]!++;
      for (let j = 0; j < dim; j++) sums[c * dim + j]! += x[i * dim + j]!;
    }
    // Dead codes: re-seed each at the worst-explained point not already used as a seed this round.
    const order = Array.from(cos.keys()).sort((p, q) => cos[p]! - cos[q]!);
    let next = 0;
    for (let c = 0; c < k; c++) {
      if (counts[c]! > 0) {
        let s = 0;
        for (let j = 0; j < dim; j++) s += sums[c * dim + j]! ** 2;
        const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
        for (let j = 0; j < dim; j++) centroids[c * dim + j] = sums[c * dim + j]! * inv;
      } else {
        const i = order[next++]!;
        centroids.set(x.subarray(i * dim, (i + 1) * dim), c * dim);
        reseeded++;
      }
    }
  }
  let meanCosine = 0;
  for (let i = 0; i < n; i++) meanCosine += cos[i]! / n;
  return { centroids, assignments, iterations, reseeded, meanCosine };
}

/**
 * Teacher features → nearest code by cosine: a VisualTokenizer. The teacher is any Module with patch
 * features (RandomPatchTeacher, or objectives/vit-teacher.ts's CLIP vision tower); it is a child module
 * and the codebook a buffer, so `saveModuleFile` / `loadModuleFile` write and read teacher and codebook
 * together (`teacher.*`, `codebook`): a saved tokenizer embeds its teacher.
 */
export class KMeansVisualTokenizer extends Module implements VisualTokenizer {
  readonly teacher: Module & PatchFeatureTeacher;

  constructor(
    teacher: Module & PatchFeatureTeacher,
    readonly vocabSize: number,
  ) {
    super();
    this.teacher = this.registerModule('teacher', teacher);
    this.registerBuffer('codebook', tf.zeros([vocabSize, teacher.dim]));
  }

  get patchSize(): number {
    return this.teacher.patchSize;
  }

  /** Sets the codebook [K, F] (rows are normalised here). */
  setCodebook(centroids: Float32Array): void {
    const f = this.teacher.dim;
    if (centroids.length !== this.vocabSize * f) {
      throw new VlError(
        'SHAPE_MISMATCH',
        `a codebook of ${this.vocabSize}×${f} needs ${this.vocabSize * f} values, got ${centroids.length}`,
        {
          subject: 'KMeansVisualTokenizer',
        },
      );
    }
    this.setBuffer('codebook', tf.tensor2d(normaliseRows(centroids, f), [this.vocabSize, f]));
  }

  tokenize(pixels: tf.Tensor): tf.Tensor {
    const b = pixels.shape[0] as number;
    return tf.tidy(() => {
      const feats = this.teacher.features(pixels); // [B·N, F]
      const ids = tf.cast(tf.argMax(tf.matMul(feats, this.getBuffer('codebook'), false, true), 1), 'int32'); // largest cosine
      return tf.reshape(ids, [b, -1]);
    });
  }
}
