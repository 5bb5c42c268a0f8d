// Training images decoded once and kept for every epoch. `blip pretrain` on a small dataset runs many
// epochs over the same images (the CapFilt demo: about 9 epochs of 1040 images per training), and core's
// loader decodes and resizes each image again every epoch. With a deterministic transform (no random
// crop or flip) the pixels are the same each time, so they are kept; the batches are the ones core's
// `createDataLoader` gives (the same record shuffle, the same caption draws), bit for bit.
import { type BertTokenizer, type CaptionRecord, DataReport, type ImageTransformOptions, Rng } from '@vl/core';
import {
  type DatasetSpec,
  type ImageTextBatch,
  type ImageTextExample,
  batchExamples,
  loadExamples,
  readDataset,
  shuffleBuffer,
} from '@vl/core/node';

/** What is kept of a record after its image is decoded (never its image bytes). */
interface Entry {
  key: string;
  captions: string[];
  meta: Record<string, unknown>;
  /** Index into the decoded pixels, or -1 when the image did not load (dropped, as core's loader drops it). */
  image: number;
}

export interface EpochBatchOptions {
  batchSize: number;
  tokenizer: BertTokenizer;
  maxLength: number;
  /** Shuffle buffer size in records (as core's loader: 0 or 1 keeps file order). */
  shuffle: number;
  dropLast: boolean;
}

/** Pixel bytes above which images are not kept (then every epoch decodes again, as core's loader does). */
export const DEFAULT_CACHE_BYTES = 256 * 1024 * 1024;

/** Whether a transform gives the same pixels every time (no random crop, no flip). */
export function isDeterministic(transform: ImageTransformOptions): boolean {
  return transform.mode !== 'random-resized-crop' && !transform.flip;
}

export class DecodedImages {
  private constructor(
    private readonly entries: Entry[],
    private readonly pixels: ImageTextExample[],
  ) {}

  /**
   * Reads the dataset and decodes every image once (core's loader, same concurrency). Returns null,
   * having decoded nothing, when the transform is random or `records` images would take more than
   * `maxBytes` of pixels: the caller then streams with core's loader.
   */
  static async load(
    spec: DatasetSpec,
    transform: ImageTransformOptions,
    records: number,
    maxBytes = DEFAULT_CACHE_BYTES,
  ): Promise<DecodedImages | null> {
    const [h, w] = typeof transform.size === 'number' ? [transform.size, transform.size] : transform.size;
    if (!isDeterministic(transform) || records * 3 * h * w * 4 > maxBytes) return null;
    const entries: Entry[] = [];
    // Keys are replaced by the record's position for decoding, so two records with the same key
    // (the same file name in two folders) still get their own images.
    async function* indexed(): AsyncGenerator<CaptionRecord> {
      for await (const rec of readDataset(spec, new DataReport())) {
        entries.push({ key: rec.key, captions: rec.captions, meta: rec.meta, image: -1 });
        yield { ...rec, key: String(entries.length - 1) };
      }
    }
    const pixels: ImageTextExample[] = [];
    for await (const ex of loadExamples(indexed(), { transform, report: new DataReport() })) {
      const entry = entries[Number(ex.key)] as Entry;
      entry.image = pixels.length;
      pixels.push({ ...ex, key: entry.key });
    }
    return new DecodedImages(entries, pixels);
  }

  /** Images kept. */
  get size(): number {
    return this.pixels.length;
  }

  /**
   * One epoch's batches, equal to `createDataLoader(spec, { ...options, captions: 'random', seed })`:
   * the records shuffled by `Rng(seed).fork('shuffle')` (failed images included, as there, since
   * they are dropped after the shuffle), captions drawn by `Rng(seed).fork('captions')`.
   */
  batches(seed: number, options: EpochBatchOptions): AsyncGenerator<ImageTextBatch> {
    const root = new Rng(seed);
    const entries = this.entries;
    let records: AsyncIterable<Entry> = (async function* () {
      yield* entries;
    })();
    if (options.shuffle > 1) records = shuffleBuffer(records, options.shuffle, root.fork('shuffle'));
    const pixels = this.pixels;
    const examples = (async function* (): AsyncGenerator<ImageTextExample> {
      for await (const e of records) if (e.image >= 0) yield pixels[e.image] as ImageTextExample;
    })();
    return batchExamples(examples, {
      batchSize: options.batchSize,
      tokenizer: options.tokenizer,
      maxLength: options.maxLength,
      captions: 'random',
      rng: root.fork('captions'),
      dropLast: options.dropLast,
    });
  }
}
