// Image decoding with sharp/libvips (JPEG, PNG, WebP, …) and the geometric transforms BLIP/ALBEF/
// CLIP-style models use: resize (bicubic/bilinear), center or random-resized crop (torchvision's
// algorithm), flip; then normalisation into CHW float32 with data/image.ts.
import sharp, { type Metadata, type Sharp } from 'sharp';
import { VlError, isVlError } from '../errors.js';
import type { Rng } from '../runtime/rng.js';
import {
  DEFAULT_MAX_PIXELS,
  IMAGE_NORMS,
  normalizeToChw,
  randomResizedCropBox,
  type DecodedImage,
  type ImageDecodeOptions,
  type ImageTransformOptions,
  type Interpolation,
} from '../data/image.js';

function kernelOf(interpolation: Interpolation): 'cubic' | 'linear' {
  // libvips' `cubic` is Catmull-Rom (a = -0.5), the kernel PIL's BICUBIC uses; both widen the
  // kernel when shrinking (anti-aliasing), like torchvision's PIL path. Outputs match PIL's to
  // within a few grey levels, not bit for bit.
  return interpolation === 'bicubic' ? 'cubic' : 'linear';
}

function sizeOf(size: number | readonly [number, number]): [number, number] {
  const [h, w] = typeof size === 'number' ? [size, size] : size;
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) {
    throw new VlError('INVALID_ARGUMENT', `image size must be positive integers, got ${String(size)}`);
  }
  return [h, w];
}

function describe(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? 'unknown error';
}

/** Reads only the header: width and height, refusing images over the pixel limit before decoding. */
async function checkedPipeline(bytes: Uint8Array, options: ImageDecodeOptions): Promise<{ img: Sharp; width: number; height: number }> {
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  let meta: Metadata;
  try {
    // limitInputPixels is libvips' own guard; the explicit check below gives a typed error and
    // also covers formats whose header sharp reads without applying the limit.
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw new VlError('IMAGE_INVALID', `cannot read image header: ${describe(err)}`, {
      subject: options.subject,
      hint: 'the file is missing, truncated or not an image (JPEG, PNG, WebP, GIF, TIFF, AVIF)',
      cause: err,
    });
  }
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  if (!(width > 0 && height > 0)) {
    throw new VlError('IMAGE_INVALID', 'image has no size', { subject: options.subject });
  }
  if (width * height > maxPixels) {
    throw new VlError('IMAGE_TOO_LARGE', `${width}×${height} = ${width * height} pixels exceeds the limit of ${maxPixels}`, {
      subject: options.subject,
      hint: 'possible decompression bomb; raise maxPixels only for images you trust',
    });
  }
  // failOn 'warning': a truncated JPEG/PNG (libjpeg "premature end of data") is an error, not a
  // half-grey image silently fed to training.
  const img = sharp(bytes, { limitInputPixels: maxPixels, failOn: 'warning' });
  return { img, width, height };
}

async function toRgb(img: Sharp, subject: string | undefined): Promise<DecodedImage> {
  try {
    // No EXIF auto-rotation: PIL's Image.open(...).convert('RGB'), which the reference pipelines
    // use, ignores orientation too. Alpha is dropped (not composited), as convert('RGB') does.
    const { data, info } = await img.toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (err) {
    if (isVlError(err)) throw err;
    throw new VlError('IMAGE_INVALID', `cannot decode image: ${describe(err)}`, { subject, cause: err });
  }
}

/** Decodes to 8-bit RGB at full size (after the pixel-limit check). */
export async function decodeImage(bytes: Uint8Array, options: ImageDecodeOptions = {}): Promise<DecodedImage> {
  const { img } = await checkedPipeline(bytes, options);
  return toRgb(img, options.subject);
}

/** Decode + geometric transforms, still 8-bit RGB HWC (what `preprocessImage` normalises). */
export async function transformImage(bytes: Uint8Array, options: ImageTransformOptions): Promise<DecodedImage> {
  const [outH, outW] = sizeOf(options.size);
  const mode = options.mode ?? 'squash';
  const kernel = kernelOf(options.interpolation ?? 'bicubic');
  const needsRng = mode === 'random-resized-crop' || options.flip;
  if (needsRng && !options.rng) {
    throw new VlError('INVALID_ARGUMENT', `${mode === 'random-resized-crop' ? 'random-resized-crop' : 'flip'} needs an rng`, {
      hint: 'pass { rng } so augmentation is reproducible',
    });
  }
  const { img, width, height } = await checkedPipeline(bytes, options);
  let pipeline = img;
  if (mode === 'random-resized-crop') {
    const box = randomResizedCropBox(width, height, options.rng as Rng, options.scale ?? [0.08, 1], options.ratio ?? [3 / 4, 4 / 3]);
    pipeline = pipeline.extract(box).resize(outW, outH, { fit: 'fill', kernel });
  } else if (mode === 'center-crop') {
    pipeline = pipeline.resize(outW, outH, { fit: 'cover', position: 'centre', kernel });
  } else {
    pipeline = pipeline.resize(outW, outH, { fit: 'fill', kernel });
  }
  if (options.flip && (options.rng as Rng).uniform() < 0.5) pipeline = pipeline.flop();
  return toRgb(pipeline, options.subject);
}

/** Bytes → normalised [3, H, W] float32 (decode, transform, normalise). */
export async function preprocessImage(
  bytes: Uint8Array,
  options: ImageTransformOptions,
  out?: Float32Array,
  offset = 0,
): Promise<Float32Array> {
  const rgb = await transformImage(bytes, options);
  return normalizeToChw(rgb, options.norm ?? IMAGE_NORMS.clip, out, offset);
}
