// Work items of a queued CapFilt job: ranges of input positions (bad records count, as --shard counts
// them), and their result files in `<out>/items/`: one self-validating journal line per item, written
// under a temp name and renamed, so a file is whole or absent and an item done twice writes the same bytes.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '@vl/core/node';
import { journalLine, parseJournalLine, type RecordResult } from '../journal.js';
import { writeNamed } from '../write-named.js';
import type { ItemData } from './connection.js';

export const ITEMS_DIR = 'items';

/** Default records per item: big enough that queue overhead is small, small enough to spread work. */
export const DEFAULT_ITEM_SIZE = 256;

/** Item id: its range, zero-padded so file names sort in input order. */
export const itemId = (start: number, end: number) => `${String(start).padStart(10, '0')}-${String(end).padStart(10, '0')}`;

/** The items covering positions 0 … sourceRecords-1. */
export function itemRanges(sourceRecords: number, itemSize: number, fingerprint: string): ItemData[] {
  const items: ItemData[] = [];
  for (let start = 0; start < sourceRecords; start += itemSize) {
    const end = Math.min(start + itemSize, sourceRecords);
    items.push({ id: itemId(start, end), start, end, fingerprint });
  }
  return items;
}

export const itemPath = (out: string, id: string) => join(out, ITEMS_DIR, `${id}.json`);

interface ItemFile {
  kind: 'capfilt-item';
  fingerprint: string;
  start: number;
  end: number;
  records: RecordResult[];
}

/** Writes an item's results atomically (temp file + fsync + rename); failures name the file. */
export async function writeItem(out: string, item: ItemData, records: RecordResult[]): Promise<void> {
  const payload: ItemFile = { kind: 'capfilt-item', fingerprint: item.fingerprint, start: item.start, end: item.end, records };
  const path = itemPath(out, item.id);
  const bytes = Buffer.from(journalLine(payload), 'utf8');
  await writeNamed(`item ${item.id}`, path, () => writeFileAtomic(path, (w) => w(bytes)));
}

/**
 * An item's records when its file is complete and belongs to this job (fingerprint, range, one
 * result per position in order); null otherwise (missing, torn, another run's).
 */
export async function readItem(out: string, item: ItemData): Promise<RecordResult[] | null> {
  let text: string;
  try {
    text = await readFile(itemPath(out, item.id), 'utf8');
  } catch {
    return null;
  }
  const p = parseJournalLine(text.endsWith('\n') ? text.slice(0, -1) : text) as ItemFile | null;
  if (!p || p.kind !== 'capfilt-item' || p.fingerprint !== item.fingerprint || p.start !== item.start || p.end !== item.end) return null;
  if (p.records.length !== item.end - item.start || p.records.some((r, i) => r.index !== item.start + i)) return null;
  return p.records;
}

/** Ids of the item files present (validated by readItem before use). */
export async function listItemFiles(out: string): Promise<Set<string>> {
  try {
    return new Set((await readdir(join(out, ITEMS_DIR))).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)));
  } catch {
    return new Set();
  }
}
