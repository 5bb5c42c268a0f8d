// Image transforms on decoded pixels (no decoder here, so it runs in a browser): normalisation
// presets, torchvision's random-resized-crop box, mean/std normalisation into CHW float32, batching.
// Decoding and resizing with sharp live in node/image-decode.ts.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import type { Rng } from '../runtime/rng.js';

export type Triple = readonly [number, number, number];

export interface ImageNorm {
  mean: Triple;
  std: Triple;
}

/**
 * Mean/std per family. BLIP and ALBEF normalise with OpenAI CLIP's statistics (their
 * `transforms.Normalize` lines), open_clip's CoCa too (OPENAI_DATASET_MEAN/STD); VLMo and BEiT-3
 * use the "inception" 0.5/0.5 normalisation (pixels to [-1, 1]); ImageNet's is for ViT/DeiT
 * backbones loaded from timm.
 */
export const IMAGE_NORMS = {
  clip: { mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711] },
  inception: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] },
  imagenet: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
} as const satisfies Record<string, ImageNorm>;

/**
 * Default pixel limit: PIL's `MAX_IMAGE_PIXELS` (89,478,485), the point where Pillow starts warning
 * about decompression bombs. A 24-bit image that size already needs ~268 MB decoded.
 */
export const DEFAULT_MAX_PIXELS = 89_478_485;

export type Interpolation = 'bicubic' | 'bilinear';

export interface DecodedImage {
  /** RGB, row-major, 3 bytes per pixel. */
  data: Uint8Array;
  width: number;
  height: number;
}

export interface ImageDecodeOptions {
  maxPixels?: number;
  /** Names the file or record in errors. */
  subject?: string;
}

export interface ImageTransformOptions extends ImageDecodeOptions {
  /** Output side (square) or [height, width]. */
  size: number | readonly [number, number];
  /**
   * `squash`: resize to size×size ignoring aspect (BLIP/ALBEF eval: `Resize((s, s))`);
   * `center-crop`: shorter side to size, then the centre (CLIP/open_clip eval);
   * `random-resized-crop`: torchvision's RandomResizedCrop (training; needs `rng`).
   */
  mode?: 'squash' | 'center-crop' | 'random-resized-crop';
  interpolation?: Interpolation;
  /** Area fraction range for random-resized-crop; BLIP uses (0.5, 1), torchvision (0.08, 1). */
  scale?: readonly [number, number];
  /** Aspect ratio range for random-resized-crop (torchvision's default 3/4 … 4/3). */
  ratio?: readonly [number, number];
  /** Mirror left-right with probability 0.5 (needs `rng`). */
  flip?: boolean;
  norm?: ImageNorm;
  rng?: Rng;
}

export interface CropBox {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** torchvision `RandomResizedCrop.get_params`: 10 tries at a random area and aspect, else a centre crop. */
export function randomResizedCropBox(
  width: number,
  height: number,
  rng: Rng,
  scale: readonly [number, number] = [0.08, 1],
  ratio: readonly [number, number] = [3 / 4, 4 / 3],
): CropBox {
  const area = width * height;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * (scale[0] + (scale[1] - scale[0]) * rng.uniform());
    const aspect = Math.exp(logLo + (logHi - logLo) * rng.uniform());
    const w = Math.round(Math.sqrt(targetArea * aspect));
    const h = Math.round(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      return { top: rng.int(height - h + 1), left: rng.int(width - w + 1), width: w, height: h };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < Math.min(ratio[0], ratio[1])) h = Math.round(w / Math.min(ratio[0], ratio[1]));
  else if (inRatio > Math.max(ratio[0], ratio[1])) w = Math.round(h * Math.max(ratio[0], ratio[1]));
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), width: w, height: h };
}

/**
 * 8-bit RGB HWC → normalised float32 CHW, written into `out` at `offset` (so a batch fills one
 * buffer without copies). (v/255 - mean)/std is folded into one multiply-add per channel.
 */
export function normalizeToChw(image: DecodedImage, norm: ImageNorm = IMAGE_NORMS.clip, out?: Float32Array, offset = 0): Float32Array {
  const plane = image.width * image.height;
  const target = out ?? new Float32Array(3 * plane);
  if (target.length < offset + 3 * plane) throw new VlError('INVALID_ARGUMENT', 'output buffer too small for image');
  const src = image.data;
  for (let c = 0; c < 3; c++) {
    const a = 1 / (255 * (norm.std[c] as number));
    const b = -(norm.mean[c] as number) / (norm.std[c] as number);
    const base = offset + c * plane;
    for (let i = 0, j = c; i < plane; i++, j += 3) target[base + i] = (src[j] as number) * a + b;
  }
  return target;
}

/** Stacks [3, H, W] float32 images into one NCHW tensor (the caller owns and disposes it). */
export function imagesToTensor(images: readonly Float32Array[], height: number, width: number): tf.Tensor4D {
  const plane = 3 * height * width;
  const all = new Float32Array(images.length * plane);
  images.forEach((img, i) => {
    if (img.length !== plane) throw new VlError('SHAPE_MISMATCH', `image ${i} has ${img.length} values, expected 3×${height}×${width}`);
    all.set(img, i * plane);
  });
  return tf.tensor4d(all, [images.length, 3, height, width], 'float32');
}
