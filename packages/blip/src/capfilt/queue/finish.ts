// The finish step of a queued job: the item files, in input order, become journal.jsonl exactly as a
// single-machine run writes it (its header, then batches of --batch-size records), and the outputs are
// written from that journal by the same code (output.ts): byte-identical to the run without --queue.
// Records of items that failed for good end as `failed` (reason item_failed), so the counts add up.
import { join } from 'node:path';
import type { Io } from '@vl/core';
import { writeFileAtomic } from '@vl/core/node';
import { type JournalState, journalLine, journalRecords, type RecordResult, scanJournal } from '../journal.js';
import { writeOutputs } from '../output.js';
import { type CapfiltOptions, inputItems, JOURNAL } from '../pipeline.js';
import { summary, unbalanced } from '../summary.js';
import { writeNamed } from '../write-named.js';
import type { ItemData, JobMeta } from './connection.js';
import { readItem } from './items.js';

/** Whether a journal holds every record of the source (a finished job): only the outputs are left to write. */
export function journalComplete(j: JournalState, sourceRecords: number, batchSize: number): boolean {
  return j.header !== null && j.header.shard === null && j.batches === Math.ceil(sourceRecords / batchSize) && sourceRecords > 0;
}

/** Keys of the records at the failed items' positions (their results never came). */
async function keysAt(opts: CapfiltOptions, failed: readonly ItemData[]): Promise<Map<number, string>> {
  const keys = new Map<number, string>();
  if (failed.length === 0) return keys;
  const last = Math.max(...failed.map((f) => f.end));
  for await (const item of inputItems(opts.data, opts.images)) {
    if (item.index >= last) break;
    if (failed.some((f) => item.index >= f.start && item.index < f.end)) keys.set(item.index, item.key);
  }
  return keys;
}

/** Every record of the job in input order: the item files', and `failed` ones for failed items. */
async function* jobRecords(
  opts: CapfiltOptions,
  items: readonly ItemData[],
  failed: ReadonlyMap<string, string>,
): AsyncGenerator<RecordResult> {
  const keys = await keysAt(
    opts,
    items.filter((it) => failed.has(it.id)),
  );
  for (const it of items) {
    const why = failed.get(it.id);
    if (why === undefined) {
      const records = await readItem(opts.out, it);
      if (!records) throw new Error(`item ${it.id} vanished from ${opts.out} before the finish step`);
      yield* records;
      continue;
    }
    for (let index = it.start; index < it.end; index++) {
      const detail = `item ${it.id} failed: ${why}`;
      yield { index, key: keys.get(index) ?? `#${index}`, status: 'failed', reason: 'item_failed', detail };
    }
  }
}

/**
 * Writes journal.jsonl from the items (when `job` is given; else it is already whole), then the
 * outputs from it. Exit code 0, or 3 when the counts do not add up.
 */
export async function finishJob(
  opts: CapfiltOptions,
  job: { meta: JobMeta; items: readonly ItemData[]; failed: ReadonlyMap<string, string> } | null,
  io: Io,
  sourceRecords: number,
): Promise<number> {
  const path = join(opts.out, JOURNAL);
  const batchSize = opts.batchSize ?? 8;
  let header = job?.meta.header;
  if (job) {
    const meta = job.meta;
    await writeNamed(JOURNAL, path, () =>
      writeFileAtomic(path, async (write) => {
        await write(Buffer.from(journalLine(meta.header), 'utf8'));
        let batch: RecordResult[] = [];
        let n = 0;
        for await (const r of jobRecords(opts, job.items, job.failed)) {
          batch.push(r);
          if (batch.length === batchSize) {
            await write(Buffer.from(journalLine({ batch: n++, records: batch }), 'utf8'));
            batch = [];
          }
        }
        if (batch.length) await write(Buffer.from(journalLine({ batch: n, records: batch }), 'utf8'));
      }),
    );
  } else {
    header = (await scanJournal(path)).header ?? undefined;
  }
  if (!header) throw new Error(`${path} has no header`);
  const report = await writeOutputs(journalRecords(path), header, opts.out, sourceRecords);
  summary(io, report, opts.out);
  if (job?.failed.size)
    io.err(`capfilt: ${job.failed.size} items failed for good; their records are failed (item_failed). Rerun the command to retry them.`);
  return unbalanced(io, report, sourceRecords);
}
