// Caption records as readers yield them, and the report that accounts for every input record:
// each one ends kept, filtered (another split) or dropped with a reason, and the counts add up.

/**
 * Where a record's image is: a file (JSONL/CSV/COCO) or bytes already read (WebDataset). `root`:
 * the dataset root the file must stay inside once symlinks are resolved (absent when the reader was
 * told to allow paths outside it).
 */
export type ImageRef = { kind: 'path'; path: string; root?: string } | { kind: 'bytes'; bytes: Uint8Array; name: string };

export interface CaptionRecord {
  /** Where the record came from: `file:line`, `file#index` or `shard.tar:key`. */
  key: string;
  image: ImageRef;
  /** One or more non-empty captions. */
  captions: string[];
  /** The record's other fields (JSONL keys, COCO ids and split, WebDataset json). */
  meta: Record<string, unknown>;
}

export const DROP_REASONS = [
  'malformed_record', // unparseable line/row/entry, or a field of the wrong type
  'missing_caption', // no caption field / no .txt or .json in a WebDataset sample
  'empty_caption', // every caption empty or whitespace
  'non_utf8_caption', // caption bytes are not valid UTF-8
  'missing_image', // no image field / entry, or the file does not exist
  'corrupt_image', // the image does not decode
  'image_too_large', // over the pixel limit (decompression bomb guard)
  'unsafe_path', // an image path or tar entry that escapes the dataset root
  'corrupt_shard', // a tar shard that cannot be read to its end (counted once per shard)
  'incomplete_batch', // left over when dropLast is set
  'not_a_file', // the image path is a FIFO, device or folder, not a regular file
  'read_timeout', // reading the image file took longer than the timeout
  'duplicate_key', // a WebDataset sample whose key an earlier sample of the same shard already used
] as const;

export type DropReason = (typeof DROP_REASONS)[number];

export interface DropExample {
  reason: DropReason;
  subject: string;
  detail: string;
}

export interface ReportSummary {
  input: number;
  kept: number;
  /** Records of splits that were not asked for (COCO Karpathy `split`), not errors. */
  filtered: number;
  dropped: Record<DropReason, number>;
  droppedTotal: number;
  /** Read but not yet kept or dropped (in a shuffle buffer or an unfinished batch). */
  pending: number;
  /** Captions removed from records that kept at least one other caption. */
  captionsDropped: Partial<Record<DropReason, number>>;
  /** input = kept + filtered + droppedTotal + pending. */
  balanced: boolean;
}

export class DataReport {
  input = 0;
  kept = 0;
  filtered = 0;
  readonly dropped: Record<DropReason, number> = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
  readonly captionsDropped: Partial<Record<DropReason, number>> = {};
  /** The first few drops of each reason, to show the user what went wrong where. */
  readonly examples: DropExample[] = [];

  constructor(private readonly examplesPerReason = 5) {}

  /** A record was read from the input. */
  read(): void {
    this.input++;
  }

  keep(n = 1): void {
    this.kept += n;
  }

  filter(): void {
    this.filtered++;
  }

  drop(reason: DropReason, subject: string, detail: string): void {
    this.dropped[reason]++;
    if (this.examples.filter((e) => e.reason === reason).length < this.examplesPerReason) this.examples.push({ reason, subject, detail });
  }

  /** A caption was removed from a record that goes on with its other captions (`subject`: the record's key). */
  dropCaption(reason: DropReason, _subject?: string): void {
    this.captionsDropped[reason] = (this.captionsDropped[reason] ?? 0) + 1;
  }

  summary(): ReportSummary {
    const droppedTotal = Object.values(this.dropped).reduce((a, b) => a + b, 0);
    const pending = this.input - this.kept - this.filtered - droppedTotal;
    return {
      input: this.input,
      kept: this.kept,
      filtered: this.filtered,
      dropped: { ...this.dropped },
      droppedTotal,
      pending,
      captionsDropped: { ...this.captionsDropped },
      balanced: pending === 0,
    };
  }

  /** One line per non-zero count, for logs and the CLI. */
  format(): string {
    const s = this.summary();
    const reasons = DROP_REASONS.filter((r) => s.dropped[r] > 0).map((r) => `${r} ${s.dropped[r]}`);
    const parts = [`input ${s.input}`, `kept ${s.kept}`];
    if (s.filtered) parts.push(`filtered ${s.filtered}`);
    parts.push(`dropped ${s.droppedTotal}${reasons.length ? ` (${reasons.join(', ')})` : ''}`);
    if (s.pending) parts.push(`pending ${s.pending}`);
    return parts.join(', ');
  }
}
