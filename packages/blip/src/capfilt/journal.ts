// CapFilt's crash-safe journal: an append-only file of finished batches, one JSON line each with a
// SHA-256 of its payload, fsync'd after every append. On resume the valid prefix is kept and a torn
// or corrupt tail (SIGKILL mid-write) is cut off, so a batch is either fully recorded or redone.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, readFile, truncate } from 'node:fs/promises';
import { readByteLines } from '@vl/core/node';
import type { RunIdentity } from './identity.js';
import { writeNamed } from './write-named.js';

/** What happened to one input record. */
export type RecordStatus = 'kept' | 'replaced' | 'dropped' | 'failed';

export interface ScoredCaption {
  text: string;
  /** Filter score in [0, 1] (ITM probability, or the ITM+ITC blend with --itc), rounded to 1e-6. */
  score: number;
  kept: boolean;
}

export interface RecordResult {
  /** Position in the whole input (every record, bad ones too), the same in every shard. */
  index: number;
  /** Where it came from: `file:line`, `file#index`, `shard.tar:key`. */
  key: string;
  status: RecordStatus;
  /** failed: the reader's or the image loader's reason code; dropped: 'below_threshold'. */
  reason?: string;
  detail?: string;
  /** Image path relative to the image root (or the tar sample name). */
  image?: string;
  /** The record's other fields, written back unchanged. */
  meta?: Record<string, unknown>;
  original?: ScoredCaption[];
  synthetic?: ScoredCaption[];
  /** Reasons of original captions removed before scoring (e.g. non_utf8_caption); the others went on. */
  removedCaptions?: string[];
}

export interface JournalHeader {
  kind: 'capfilt-journal';
  /** 2: identity (options, data files, checkpoints) and the source record count are recorded. */
  version: 2;
  /** Hash of `identity`; a resume by another run is refused. */
  fingerprint: string;
  identity: RunIdentity;
  /** Records in the whole input, as the first pass counted them. */
  sourceRecords: number;
  threshold: number;
  /** Input format, image root and list file name, for writing (and merging) the outputs. */
  format: string;
  root: string;
  dataName: string;
  /** The input files, resolved (WebDataset output re-reads the image bytes from them). */
  data: string[];
  shard: { index: number; count: number } | null;
}

export interface JournalBatch {
  batch: number;
  records: RecordResult[];
}

const sha = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 16);

/** One self-validating line: `{"h":"<sha of p>","p":<payload>}`. */
export function journalLine(payload: unknown): string {
  const p = JSON.stringify(payload);
  return `{"h":"${sha(p)}","p":${p}}\n`;
}

/** The payload of a line, or null when the line is torn or corrupt. */
export function parseJournalLine(line: string): unknown {
  const m = /^\{"h":"([0-9a-f]{16})","p":(.*)\}$/.exec(line);
  if (!m || sha(m[2] as string) !== m[1]) return null;
  try {
    return JSON.parse(m[2] as string) as unknown;
  } catch {
    return null;
  }
}

export interface JournalState {
  header: JournalHeader | null;
  /** Batches recorded, in order (0, 1, 2, … with no gap). */
  batches: number;
  /** Byte length of the valid prefix. */
  validBytes: number;
}

/** Reads the valid prefix of a journal (header, then batches 0..k-1 in order). */
export async function scanJournal(path: string): Promise<JournalState> {
  const state: JournalState = { header: null, batches: 0, validBytes: 0 };
  if (!existsSync(path)) return state;
  for await (const { bytes } of readByteLines(path)) {
    const payload = parseJournalLine(Buffer.from(bytes).toString('utf8'));
    if (payload === null) break;
    if (state.header === null) {
      if ((payload as JournalHeader).kind !== 'capfilt-journal') break;
      state.header = payload as JournalHeader;
    } else if ((payload as JournalBatch).batch !== state.batches) {
      break;
    } else {
      state.batches++;
    }
    state.validBytes += bytes.length + 1;
  }
  // A last line without its newline was cut by a crash even when its bytes happen to validate.
  const size = (await readFile(path)).length;
  if (state.validBytes > size) {
    state.batches = Math.max(0, state.batches - 1);
    state.validBytes = 0;
    return rescan(path, state.batches);
  }
  return state;
}

async function rescan(path: string, batches: number): Promise<JournalState> {
  const state: JournalState = { header: null, batches: 0, validBytes: 0 };
  for await (const { bytes } of readByteLines(path)) {
    if (state.header !== null && state.batches >= batches) break;
    const payload = parseJournalLine(Buffer.from(bytes).toString('utf8'));
    if (payload === null) break;
    if (state.header === null) state.header = payload as JournalHeader;
    else state.batches++;
    state.validBytes += bytes.length + 1;
  }
  return state;
}

/** Every batch's records, in order, from the valid prefix of a journal. */
export async function* journalRecords(path: string): AsyncGenerator<RecordResult> {
  let header = false;
  let next = 0;
  for await (const { bytes } of readByteLines(path)) {
    const payload = parseJournalLine(Buffer.from(bytes).toString('utf8'));
    if (payload === null) return;
    if (!header) {
      header = true;
      continue;
    }
    const b = payload as JournalBatch;
    if (b.batch !== next) return;
    next++;
    yield* b.records;
  }
}

/** Appends lines and fsyncs after each one. */
export class JournalWriter {
  private constructor(
    private readonly handle: Awaited<ReturnType<typeof open>>,
    private readonly path: string,
  ) {}

  /** Opens for appending after cutting the file to its valid prefix. */
  static async open(path: string, validBytes: number): Promise<JournalWriter> {
    if (existsSync(path)) await truncate(path, validBytes);
    const handle = await open(path, 'a');
    return new JournalWriter(handle, path);
  }

  async append(payload: unknown): Promise<void> {
    const buf = Buffer.from(journalLine(payload), 'utf8');
    await writeNamed('journal.jsonl', this.path, async () => {
      let written = 0;
      while (written < buf.length) written += (await this.handle.write(buf, written, buf.length - written)).bytesWritten;
      await this.handle.sync();
    });
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}
