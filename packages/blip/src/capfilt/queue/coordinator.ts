// `blip capfilt --queue URL --job NAME …`: the coordinator of a CapFilt run spread over workers. It
// splits the input into items (ranges of input positions), records the job (options, identity,
// threshold) in Redis, enqueues the items with BullMQ and waits, showing progress across all workers.
// The item files in `<out>/items/` are the truth about what is done: items already written are not
// enqueued again, and items whose queue entry vanished (a Redis restart without persistence) are
// enqueued again. When every item is written or has failed for good, it writes journal.jsonl and the
// outputs exactly as a single-machine run of the same command does (finish.ts).
import { mkdir, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { type RunContext, VlError } from '@vl/core';
import { checkOutSeparate, diffIdentity } from '../identity.js';
import { type JournalHeader, scanJournal } from '../journal.js';
import { acquireOutLock } from '../lock.js';
import {
  assertResumable,
  calibrateThreshold,
  type CapfiltOptions,
  dataFiles,
  formatOf,
  inputItems,
  JOURNAL,
  loadModels,
  type Scoring,
} from '../pipeline.js';
import { fingerprintOf } from '../identity.js';
import { checkModelsForOptions } from '../validate.js';
import { connect, type ItemData, type JobMeta, PREFIX, queueName, readMeta, writeMeta } from './connection.js';
import { finishJob, journalComplete } from './finish.js';
import { ITEMS_DIR, itemRanges, listItemFiles, readItem } from './items.js';
import { identityOf, jobMismatch, queuedOptions } from './job.js';

export interface QueueFlags {
  queue: string;
  job: string;
  itemSize: number;
  attempts: number;
  /** ms between looks at the item files and the queue. */
  pollMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The threshold as a single run finds it: fixed, or calibrated on the first records (needs the models). */
async function thresholdFor(opts: CapfiltOptions, root: string): Promise<number> {
  if (opts.keepRate === undefined) return opts.threshold ?? 0.5;
  const models = await loadModels(opts);
  try {
    checkModelsForOptions(opts, models);
    const scoring: Scoring = {
      numCaptions: opts.numCaptions ?? 1,
      topP: opts.topP ?? 0.9,
      beam: opts.beam,
      itc: Boolean(opts.itc),
      seed: opts.seed ?? 0,
      maxLength: opts.maxLength ?? 30,
    };
    return await calibrateThreshold({
      data: opts.data,
      root,
      models,
      scoring,
      keepRate: opts.keepRate,
      sample: opts.calibrateOn ?? 256,
      batchSize: opts.batchSize ?? 8,
    });
  } finally {
    models.captioner.dispose();
    models.filter.dispose();
  }
}

/** The job's record: the existing one (same run) or a new one; another run under the name is refused. */
async function jobMeta(
  redis: Redis,
  flags: QueueFlags,
  opts: CapfiltOptions,
  make: () => Promise<{ header: JournalHeader; items: number }>,
  identity: JobMeta['identity'],
): Promise<{ meta: JobMeta; fresh: boolean }> {
  const fp = fingerprintOf(identity);
  const old = await readMeta(redis, flags.job);
  if (old && old.fingerprint !== fp) {
    throw jobMismatch(flags.job, 'this command', diffIdentity(old.identity, identity).concat(old.identity ? [] : ['another CapFilt']));
  }
  if (old && old.itemSize !== flags.itemSize)
    throw jobMismatch(flags.job, 'this command', [`--item-size ${old.itemSize} → ${flags.itemSize}`]);
  if (old && !old.finished) return { meta: { ...old, attempts: flags.attempts }, fresh: false };
  const { header, items } = await make();
  const meta: JobMeta = {
    kind: 'capfilt-queue-job',
    version: 1,
    fingerprint: fp,
    identity,
    header,
    options: queuedOptions(opts),
    itemSize: flags.itemSize,
    items,
    attempts: flags.attempts,
    created: new Date().toISOString(),
  };
  return { meta, fresh: true };
}

/**
 * The whole queued run on validated options: the same refusals as a single run (an --out holding an
 * input, a locked --out, a journal of another run), then the job, the wait, and the outputs.
 */
export async function runQueueJob(opts: CapfiltOptions, flags: QueueFlags, ctx: RunContext): Promise<number> {
  const io = ctx.io;
  if (opts.shard)
    throw new VlError('INVALID_ARGUMENT', '--shard and --queue exclude each other: the queue spreads the work', { subject: '--shard' });
  const files = dataFiles(opts.data);
  const root = resolve(opts.images ?? dirname(files[0] as string));
  await checkOutSeparate(opts.out, files, root);
  await mkdir(opts.out, { recursive: true });
  const lock = await acquireOutLock(opts.out);
  try {
    const identity = await identityOf(opts);
    const journalPath = join(opts.out, JOURNAL);
    const journal = await scanJournal(journalPath);
    assertResumable(journal.header, identity, journalPath);
    let sourceRecords = 0;
    for await (const _ of inputItems(opts.data, opts.images)) sourceRecords++;
    // A job whose journal is whole (the coordinator died after writing it) only needs its outputs again.
    if (journalComplete(journal, sourceRecords, opts.batchSize ?? 8)) return await finishJob(opts, null, io, sourceRecords);
    const redis = await connect(flags.queue);
    const queue = new Queue<ItemData>(queueName(flags.job), { connection: redis, prefix: PREFIX });
    queue.on('error', () => undefined);
    try {
      const { meta, fresh } = await jobMeta(
        redis,
        flags,
        opts,
        async () => {
          const threshold = journal.header?.threshold ?? (await thresholdFor(opts, root));
          const header: JournalHeader = {
            kind: 'capfilt-journal',
            version: 2,
            fingerprint: fingerprintOf(identity),
            identity,
            sourceRecords,
            threshold,
            format: formatOf(opts.data),
            root,
            dataName: basename(files[0] as string),
            data: files.map((f) => resolve(f)),
            shard: null,
          };
          return { header, items: Math.ceil(sourceRecords / flags.itemSize) };
        },
        identity,
      );
      // A finished job of the same name is started over: its old queue entries would hide the new items.
      if (fresh) await queue.obliterate({ force: true });
      await writeMeta(redis, flags.job, meta);
      const items = itemRanges(sourceRecords, meta.itemSize, meta.fingerprint);
      const failed = await waitForItems(queue, redis, meta, items, flags, opts.out, ctx, !fresh);
      const code = await finishJob(opts, { meta, items, failed }, io, sourceRecords);
      await writeMeta(redis, flags.job, { ...meta, finished: new Date().toISOString() });
      await queue.obliterate({ force: true });
      await rm(join(opts.out, ITEMS_DIR), { recursive: true, force: true });
      return code;
    } finally {
      await queue.close().catch(() => undefined);
      redis.disconnect();
    }
  } finally {
    await lock.release();
  }
}

/**
 * Enqueues what is not written yet and waits until every item is written (its file valid) or failed
 * for good (BullMQ's failed set: `attempts` failures or stalls). Returns the failed items' reasons.
 */
async function waitForItems(
  queue: Queue<ItemData>,
  redis: Redis,
  meta: JobMeta,
  items: ItemData[],
  flags: QueueFlags,
  out: string,
  ctx: RunContext,
  rerun: boolean,
): Promise<Map<string, string>> {
  const done = new Map<string, number>();
  const failed = new Map<string, string>();
  const pollMs = flags.pollMs ?? 1000;
  const bar = ctx.progress('capfilt records');
  const total = items.reduce((n, it) => n + it.end - it.start, 0);
  const jobOpts = { attempts: meta.attempts, removeOnComplete: false, removeOnFail: false };
  const scanFiles = async () => {
    const present = await listItemFiles(out);
    for (const it of items) {
      if (done.has(it.id) || !present.has(it.id)) continue;
      const records = await readItem(out, it);
      if (records) {
        done.set(it.id, records.length);
        failed.delete(it.id);
      }
    }
  };
  // Items missing from the queue (never added, or lost with Redis's data) are added; a rerun of the
  // coordinator gives failed items another round of attempts.
  const ensure = async (retryFailed: boolean) => {
    if ((await readMeta(redis, flags.job)) === null) await writeMeta(redis, flags.job, meta);
    const add: ItemData[] = [];
    for (const it of items) {
      if (done.has(it.id)) continue;
      const state = await queue.getJobState(it.id);
      if (state === 'unknown') add.push(it);
      else if (state === 'failed' && retryFailed) await (await queue.getJob(it.id))?.retry('failed');
      else if (state === 'completed' && !(await readItem(out, it)))
        throw new VlError('WRITE_FAILED', `item ${it.id} is done in the queue but its file is missing or not this job's`, {
          subject: join(out, ITEMS_DIR, `${it.id}.json`),
          hint: 'every worker must write to the same shared --out folder',
        });
    }
    if (add.length) await queue.addBulk(add.map((data) => ({ name: 'item', data, opts: { ...jobOpts, jobId: data.id } })));
  };
  try {
    await scanFiles();
    await ensure(rerun);
    let lastEnsure = Date.now();
    for (;;) {
      await scanFiles();
      for (const job of await queue.getFailed()) {
        const id = job.data.id;
        if (!done.has(id)) failed.set(id, `${job.failedReason} (after ${job.attemptsMade} attempts)`);
      }
      const recordsDone = [...done.values()].reduce((a, b) => a + b, 0);
      const workers = await queue.getWorkersCount().catch(() => 0);
      bar.update(
        recordsDone,
        total,
        `| ${done.size}/${items.length} items, ${workers} workers${failed.size ? `, ${failed.size} failed` : ''}`,
      );
      if (done.size + failed.size >= items.length) break;
      await sleep(pollMs);
      if (Date.now() - lastEnsure > 5 * pollMs) {
        await ensure(false);
        lastEnsure = Date.now();
      }
    }
  } finally {
    bar.stop();
  }
  for (const [id, why] of failed) ctx.io.err(`capfilt: item ${id} failed for good: ${why}`);
  return failed;
}
