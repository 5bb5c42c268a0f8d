// Masked image modelling (BEiT / BEiT-3): BEiT's block-wise patch masking generator
// (microsoft/unilm `beit/masking_generator.py`), a pluggable visual tokenizer for the discrete
// targets, and the cross-entropy over masked patches.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import type { Rng } from '../runtime/rng.js';
import { crossEntropy, IGNORE_INDEX, labelsToHost, type Labels } from './losses.js';

export interface BlockMaskingOptions {
  /** Patch grid [height, width], e.g. [14, 14] for 224px images with 16px patches. */
  inputSize: readonly [number, number];
  /** How many patches to mask in total (BEiT: 75 of 196, ~40%). */
  numMaskingPatches: number;
  /** Smallest block, in patches (BEiT: 16). */
  minNumPatches?: number;
  /** Largest block; default numMaskingPatches. */
  maxNumPatches?: number;
  /** Block aspect ratios are drawn log-uniformly in [minAspect, maxAspect] (BEiT: 0.3, 1/0.3). */
  minAspect?: number;
  maxAspect?: number;
}

/**
 * BEiT's block-wise masking: repeatedly place a random rectangle (area in [min, remaining],
 * log-uniform aspect ratio, 10 attempts each) until the target count is reached or no block
 * adds a new patch. Like the reference, the result can fall short of numMaskingPatches (rarely).
 */
export class BlockMaskingGenerator {
  readonly height: number;
  readonly width: number;
  readonly numMaskingPatches: number;
  readonly minNumPatches: number;
  readonly maxNumPatches: number;
  private readonly logAspect: [number, number];

  constructor(options: BlockMaskingOptions) {
    [this.height, this.width] = options.inputSize;
    this.numMaskingPatches = options.numMaskingPatches;
    this.minNumPatches = options.minNumPatches ?? 4;
    this.maxNumPatches = options.maxNumPatches ?? options.numMaskingPatches;
    const minAspect = options.minAspect ?? 0.3;
    const maxAspect = options.maxAspect ?? 1 / minAspect;
    this.logAspect = [Math.log(minAspect), Math.log(maxAspect)];
    if (this.numMaskingPatches > this.height * this.width || this.numMaskingPatches < 0) {
      throw new VlError('CONFIG_INVALID', `cannot mask ${this.numMaskingPatches} of ${this.height * this.width} patches`, {
        subject: 'mim',
      });
    }
  }

  get numPatches(): number {
    return this.height * this.width;
  }

  /** One mask, row-major [height·width], 1 = masked. */
  generate(rng: Rng): Uint8Array {
    const mask = new Uint8Array(this.numPatches);
    let count = 0;
    while (count < this.numMaskingPatches) {
      const maxMaskPatches = Math.min(this.numMaskingPatches - count, this.maxNumPatches);
      const delta = this.placeBlock(mask, maxMaskPatches, rng);
      if (delta === 0) break;
      count += delta;
    }
    return mask;
  }

  /** B masks stacked [B·height·width]. */
  generateBatch(batchSize: number, rng: Rng): Uint8Array {
    const out = new Uint8Array(batchSize * this.numPatches);
    for (let i = 0; i < batchSize; i++) out.set(this.generate(rng), i * this.numPatches);
    return out;
  }

  private placeBlock(mask: Uint8Array, maxMaskPatches: number, rng: Rng): number {
    let delta = 0;
    for (let attempt = 0; attempt < 10; attempt++) {
      const targetArea = uniformIn(rng, this.minNumPatches, maxMaskPatches);
      const aspect = Math.exp(uniformIn(rng, this.logAspect[0], this.logAspect[1]));
      const h = roundHalfEven(Math.sqrt(targetArea * aspect));
      const w = roundHalfEven(Math.sqrt(targetArea / aspect));
      if (w < this.width && h < this.height) {
        // Python's randint is inclusive at both ends.
        const top = rng.int(this.height - h + 1);
        const left = rng.int(this.width - w + 1);
        let already = 0;
        for (let i = top; i < top + h; i++) for (let j = left; j < left + w; j++) already += mask[i * this.width + j]!;
        const added = h * w - already;
        if (added > 0 && added <= maxMaskPatches) {
          for (let i = top; i < top + h; i++) {
            for (let j = left; j < left + w; j++) {
              const k = i * this.width + j;
              if (mask[k] === 0) {
                mask[k] = 1;
                delta++;
              }
            }
          }
        }
        if (delta > 0) break;
      }
    }
    return delta;
  }
}

function uniformIn(rng: Rng, a: number, b: number): number {
  return a + (b - a) * rng.uniform();
}

/** Python 3's round(): halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const diff = x - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Turns images into one discrete token per patch: the MIM targets. BEiT uses DALL-E's dVAE,
 * BEiT v2/BEiT-3 a VQ-KD tokenizer; any of them fits behind this interface.
 */
export interface VisualTokenizer {
  /** Size of the visual vocabulary (BEiT: 8192). */
  readonly vocabSize: number;
  /** pixelValues [B, C, H, W] (PyTorch layout, as HF `pixel_values`) → int32 [B, numPatches], row-major over the grid. */
  tokenize(pixelValues: tf.Tensor): tf.Tensor;
}

export interface PatchCodebookOptions {
  patchSize: number;
  channels?: number;
  vocabSize: number;
  rng: Rng;
}

/**
 * A deterministic stand-in tokenizer: each patch, flattened and mean-centred, goes to the nearest
 * of `vocabSize` fixed random unit codewords (largest cosine). No training needed, so toy MIM runs
 * and ablations have stable targets that depend on image content.
 */
export class PatchCodebookTokenizer implements VisualTokenizer {
  readonly vocabSize: number;
  readonly patchSize: number;
  readonly channels: number;
  /** [C·P·P, vocab], unit columns. */
  private readonly codebook: tf.Tensor;

  constructor(options: PatchCodebookOptions) {
    this.vocabSize = options.vocabSize;
    this.patchSize = options.patchSize;
    this.channels = options.channels ?? 3;
    const dim = this.channels * this.patchSize * this.patchSize;
    const data = new Float32Array(dim * this.vocabSize);
    for (let i = 0; i < data.length; i++) data[i] = options.rng.normal();
    this.codebook = tf.keep(
      tf.tidy(() => {
        const raw = tf.tensor2d(data, [dim, this.vocabSize]);
        return tf.div(raw, tf.norm(raw, 'euclidean', 0, true));
      }),
    );
  }

  tokenize(pixelValues: tf.Tensor): tf.Tensor {
    const [b, c, h, w] = pixelValues.shape as [number, number, number, number];
    const p = this.patchSize;
    if (pixelValues.rank !== 4 || c !== this.channels || h % p !== 0 || w % p !== 0) {
      throw new VlError(
        'SHAPE_MISMATCH',
        `tokenizer expects [B, ${this.channels}, H, W] with H, W multiples of ${p}, got [${pixelValues.shape}]`,
        {
          subject: 'PatchCodebookTokenizer',
        },
      );
    }
    const gh = h / p;
    const gw = w / p;
    return tf.tidy(() => {
      // [B, C, gh, P, gw, P] → [B, gh, gw, C, P, P] → [B·gh·gw, C·P·P]
      const patches = tf.reshape(tf.transpose(tf.reshape(pixelValues, [b, c, gh, p, gw, p]), [0, 2, 4, 1, 3, 5]), [b * gh * gw, c * p * p]);
      const centred = tf.sub(patches, tf.mean(patches, 1, true));
      return tf.reshape(tf.cast(tf.argMax(tf.matMul(centred, this.codebook), 1), 'int32'), [b, gh * gw]);
    });
  }

  dispose(): void {
    this.codebook.dispose();
  }
}

/**
 * MIM labels from tokenizer output and a mask: the visual token where masked, -100 elsewhere
 * (BEiT's `labels = input_ids[bool_masked_pos]`, kept in place).
 */
export function mimLabels(visualTokens: Labels, mask: ArrayLike<number>): Int32Array {
  const tokens = labelsToHost(visualTokens);
  if (tokens.length !== mask.length)
    throw new VlError('SHAPE_MISMATCH', `${tokens.length} visual tokens for a mask of ${mask.length}`, { subject: 'mim' });
  const out = new Int32Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) out[i] = mask[i] ? tokens[i]! : IGNORE_INDEX;
  return out;
}

/** Cross-entropy of patch logits [B, N, V] (or [B·N, V]) against MIM labels (from `mimLabels`). */
export function mimLoss(logits: tf.Tensor, labels: Labels): tf.Scalar {
  return tf.tidy(() => {
    const v = logits.shape[logits.rank - 1] as number;
    return crossEntropy(tf.reshape(logits, [-1, v]), labels) as tf.Scalar;
  });
}
