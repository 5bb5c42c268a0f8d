// From records to training batches: a seeded shuffle buffer, concurrent image loading in input
// order, caption choice (first / random / all), tokenisation with padding, and NCHW tensors.
import * as tf from '@tensorflow/tfjs-core';
import { VlError, isVlError } from '../errors.js';
import { Rng } from '../runtime/rng.js';
import type { ImageTransformOptions } from '../data/image.js';
import { preprocessImage } from './image-decode.js';
import { ImageFileError, readImageFile } from './image-file.js';
import { type CaptionRecord, DataReport } from '../data/records.js';
import { type DatasetSpec, readDataset } from './readers.js';
import type { BertTokenizer, PaddingMode } from '../data/tokenizer.js';

export interface ImageTextExample {
  key: string;
  /** Normalised [3, H, W] float32. */
  pixels: Float32Array;
  height: number;
  width: number;
  captions: string[];
  meta: Record<string, unknown>;
}

/**
 * Buffered shuffle (as tf.data / WebDataset do): fill `size` items, then emit a random one and put
 * the next input in its place. Memory is `size` items whatever the dataset size; `size` ≥ the
 * dataset gives a full uniform shuffle.
 */
export async function* shuffleBuffer<T>(items: AsyncIterable<T>, size: number, rng: Rng): AsyncGenerator<T> {
  if (!Number.isInteger(size) || size < 1) throw new VlError('INVALID_ARGUMENT', `shuffle buffer size must be ≥ 1, got ${size}`);
  const buf: T[] = [];
  for await (const item of items) {
    if (buf.length < size) {
      buf.push(item);
      continue;
    }
    const j = rng.int(size);
    const out = buf[j] as T;
    buf[j] = item;
    yield out;
  }
  rng.shuffle(buf);
  yield* buf;
}

export interface ImageLoadOptions {
  transform: ImageTransformOptions;
  report: DataReport;
  /** Images decoded at once (sharp runs them on libuv's pool; default 8: measured best on 2 cores). */
  concurrency?: number;
  /**
   * Augmentation generator. Each record gets `rng.fork(key)`, so its crop/flip does not depend on
   * load order or concurrency; pass a different rng per epoch for new augmentations.
   */
  rng?: Rng;
}

async function loadOne(rec: CaptionRecord, options: ImageLoadOptions): Promise<ImageTextExample | null> {
  let bytes: Uint8Array;
  if (rec.image.kind === 'bytes') {
    bytes = rec.image.bytes;
  } else {
    try {
      bytes = await readImageFile(rec.image.path, { root: rec.image.root });
    } catch (err) {
      if (!(err instanceof ImageFileError)) throw err;
      options.report.drop(err.reason, rec.key, err.message);
      return null;
    }
  }
  try {
    const rng = options.rng ? options.rng.fork(rec.key) : undefined;
    const pixels = await preprocessImage(bytes, { ...options.transform, rng, subject: rec.key });
    const [height, width] =
      typeof options.transform.size === 'number' ? [options.transform.size, options.transform.size] : options.transform.size;
    return { key: rec.key, pixels, height, width, captions: rec.captions, meta: rec.meta };
  } catch (err) {
    if (isVlError(err, 'IMAGE_TOO_LARGE')) options.report.drop('image_too_large', rec.key, err.message);
    else if (isVlError(err, 'IMAGE_INVALID')) options.report.drop('corrupt_image', rec.key, err.message);
    else throw err;
    return null;
  }
}

/** Reads and preprocesses images `concurrency` at a time, yielding in input order; bad images are dropped and counted. */
export async function* loadExamples(records: AsyncIterable<CaptionRecord>, options: ImageLoadOptions): AsyncGenerator<ImageTextExample> {
  const concurrency = Math.max(1, options.concurrency ?? 8);
  const inFlight: Promise<ImageTextExample | null>[] = [];
  for await (const rec of records) {
    const loading = loadOne(rec, options);
    // Awaited below in order; the no-op handler only keeps an early `break` by the consumer from
    // turning a later failure into an unhandled rejection.
    loading.catch(() => undefined);
    inFlight.push(loading);
    if (inFlight.length >= concurrency) {
      const ex = await (inFlight.shift() as Promise<ImageTextExample | null>);
      if (ex) yield ex;
    }
  }
  while (inFlight.length) {
    const ex = await (inFlight.shift() as Promise<ImageTextExample | null>);
    if (ex) yield ex;
  }
}

export type CaptionChoice = 'first' | 'random' | 'all';

export interface ImageTextBatch {
  keys: string[];
  /** [B, 3, H, W] float32, one row per image. */
  pixelValues: tf.Tensor4D;
  /** [T, L] int32, one row per caption (T = B unless captions is 'all'). */
  inputIds: tf.Tensor2D;
  /** [T, L] int32: 1 for tokens, 0 for padding. */
  attentionMask: tf.Tensor2D;
  /** Caption texts, row-aligned with inputIds. */
  captions: string[];
  /** For each caption row, the image row it belongs to (retrieval targets). */
  textToImage: Int32Array;
  meta: Record<string, unknown>[];
  /** Frees the three tensors. */
  dispose(): void;
}

export interface BatchingOptions {
  batchSize: number;
  tokenizer: BertTokenizer;
  /** Longest caption in tokens, [CLS]/[SEP] included (default 35; BLIP pretraining uses 30, captioning 40). */
  maxLength?: number;
  /** `longest` pads each batch to its longest caption; `max_length` always to maxLength. */
  padding?: Exclude<PaddingMode, 'none'>;
  /** Token replacing [CLS] (BLIP decoder: '[DEC]'). */
  firstToken?: string;
  /** Which caption(s) of a multi-caption record: first, a random one (needs rng), or all of them. */
  captions?: CaptionChoice;
  rng?: Rng;
  /** Drop a final batch smaller than batchSize (counted as incomplete_batch). */
  dropLast?: boolean;
  report?: DataReport;
}

function collate(examples: ImageTextExample[], options: BatchingOptions): ImageTextBatch {
  const choice = options.captions ?? 'first';
  const texts: string[] = [];
  const owner: number[] = [];
  examples.forEach((ex, i) => {
    if (choice === 'all') {
      for (const c of ex.captions) {
        texts.push(c);
        owner.push(i);
      }
    } else {
      const k = choice === 'random' ? (options.rng as Rng).int(ex.captions.length) : 0;
      texts.push(ex.captions[k] as string);
      owner.push(i);
    }
  });
  const enc = options.tokenizer.encodeBatch(texts, {
    maxLength: options.maxLength ?? 35,
    padding: options.padding ?? 'longest',
    firstToken: options.firstToken,
  });
  const first = examples[0] as ImageTextExample;
  const plane = first.pixels.length;
  const pixels = new Float32Array(examples.length * plane);
  examples.forEach((ex, i) => {
    if (ex.height !== first.height || ex.width !== first.width) {
      throw new VlError('SHAPE_MISMATCH', `image ${ex.key} is ${ex.height}×${ex.width}, batch expects ${first.height}×${first.width}`);
    }
    pixels.set(ex.pixels, i * plane);
  });
  const pixelValues = tf.tensor4d(pixels, [examples.length, 3, first.height, first.width], 'float32');
  const inputIds = tf.tensor2d(enc.inputIds, [texts.length, enc.seqLength], 'int32');
  const attentionMask = tf.tensor2d(enc.attentionMask, [texts.length, enc.seqLength], 'int32');
  return {
    keys: examples.map((e) => e.key),
    pixelValues,
    inputIds,
    attentionMask,
    captions: texts,
    textToImage: Int32Array.from(owner),
    meta: examples.map((e) => e.meta),
    dispose() {
      pixelValues.dispose();
      inputIds.dispose();
      attentionMask.dispose();
    },
  };
}

/** Groups examples into batches; every example that reaches a batch is counted as kept. */
export async function* batchExamples(examples: AsyncIterable<ImageTextExample>, options: BatchingOptions): AsyncGenerator<ImageTextBatch> {
  if (!Number.isInteger(options.batchSize) || options.batchSize < 1) {
    throw new VlError('INVALID_ARGUMENT', `batchSize must be a positive integer, got ${options.batchSize}`);
  }
  if (options.captions === 'random' && !options.rng) throw new VlError('INVALID_ARGUMENT', "captions: 'random' needs an rng");
  let pending: ImageTextExample[] = [];
  for await (const ex of examples) {
    pending.push(ex);
    if (pending.length === options.batchSize) {
      const batch = collate(pending, options);
      options.report?.keep(pending.length);
      pending = [];
      yield batch;
    }
  }
  if (pending.length === 0) return;
  if (options.dropLast) {
    for (const ex of pending) options.report?.drop('incomplete_batch', ex.key, `last batch had ${pending.length} of ${options.batchSize}`);
    return;
  }
  const batch = collate(pending, options);
  options.report?.keep(pending.length);
  yield batch;
}

export interface DataLoaderOptions extends Omit<BatchingOptions, 'report' | 'rng'> {
  transform: ImageTransformOptions;
  /** Shuffle buffer size in records (0 or undefined: keep file order). */
  shuffle?: number;
  seed?: number;
  concurrency?: number;
  report?: DataReport;
}

/**
 * Dataset → batches in one call: read (streaming), shuffle records (cheap: before decoding),
 * load images, batch. Same seed, same batches. `report` accounts for every input record once the
 * iteration has finished.
 */
export function createDataLoader(
  spec: DatasetSpec,
  options: DataLoaderOptions,
): { batches: AsyncGenerator<ImageTextBatch>; report: DataReport } {
  const report = options.report ?? new DataReport();
  const root = new Rng(options.seed ?? 0);
  let records: AsyncIterable<CaptionRecord> = readDataset(spec, report);
  if (options.shuffle && options.shuffle > 1) records = shuffleBuffer(records, options.shuffle, root.fork('shuffle'));
  const needsRng = options.transform.mode === 'random-resized-crop' || options.transform.flip;
  const examples = loadExamples(records, {
    transform: options.transform,
    report,
    concurrency: options.concurrency,
    rng: needsRng ? root.fork('augment') : undefined,
  });
  const batches = batchExamples(examples, { ...options, report, rng: root.fork('captions') });
  return { batches, report };
}

export interface ThroughputResult {
  images: number;
  captions: number;
  batches: number;
  seconds: number;
  imagesPerSecond: number;
  report: DataReport;
}

/**
 * Reads a dataset into batches `epochs` times and times it: images/second through the whole
 * pipeline (read, shuffle, decode, transform, tokenise, tensors). Batches are disposed at once, so
 * this measures the input pipeline alone.
 */
export async function measureThroughput(spec: DatasetSpec, options: DataLoaderOptions, epochs = 1): Promise<ThroughputResult> {
  const report = options.report ?? new DataReport();
  let images = 0;
  let captions = 0;
  let batches = 0;
  const t0 = performance.now();
  for (let e = 0; e < epochs; e++) {
    const loader = createDataLoader(spec, { ...options, seed: (options.seed ?? 0) + e, report });
    for await (const b of loader.batches) {
      images += b.keys.length;
      captions += b.captions.length;
      batches++;
      b.dispose();
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  return { images, captions, batches, seconds, imagesPerSecond: images / seconds, report };
}
