// `blip capfilt worker --queue URL --job NAME`: loads the models once, takes items from the job's
// BullMQ queue and writes each item's results to `<out>/items/<id>.json` atomically. Results depend on
// the seed and the record position only, so an item done twice (after a stall) writes the same bytes.
// SIGTERM/SIGINT drain: the item in hand is finished, then the worker exits 0; so does a finished job.
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { type Job, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { type RunContext, VlError } from '@vl/core';
import { diffIdentity } from '../identity.js';
import type { RecordResult } from '../journal.js';
import { type CapfiltOptions, type InputItem, inputItems, loadModels, type Models, processBatch, type Scoring } from '../pipeline.js';
import { checkModelsForOptions, validateCapfiltOptions } from '../validate.js';
import { connect, type ItemData, type JobMeta, PREFIX, queueName, readMeta } from './connection.js';
import { ITEMS_DIR, writeItem } from './items.js';
import { identityOf, jobMismatch } from './job.js';

export interface WorkerFlags {
  queue: string;
  job: string;
  concurrency: number;
  /** ms between stalled-item checks; also the item lock's lifetime. */
  stalledInterval: number;
  /** The worker's own paths and options; unset ones are the job's. */
  overrides: Partial<CapfiltOptions>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The records at positions [start, end), read in order; one pass reused while items come in order. */
class RangeReader {
  private it: AsyncGenerator<InputItem> | null = null;
  private next = 0;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly data: string | readonly string[],
    private readonly root: string,
  ) {}

  /** Reads are serialised: with --concurrency > 1 two items must not share the iterator at once. */
  read(start: number, end: number): Promise<InputItem[]> {
    const p = this.chain.then(() => this.readNow(start, end));
    this.chain = p.catch(() => undefined);
    return p;
  }

  private async readNow(start: number, end: number): Promise<InputItem[]> {
    if (!this.it || start < this.next) {
      await this.it?.return(undefined);
      this.it = inputItems(this.data, this.root);
      this.next = 0;
    }
    const out: InputItem[] = [];
    while (this.next < end) {
      const n = await this.it.next();
      if (n.done) break;
      this.next++;
      if (n.value.index >= start) out.push(n.value);
    }
    if (out.length !== end - start)
      throw new VlError('DATA_INVALID', `the data has ${this.next} records, item ${start}–${end} needs ${end}`, {
        subject: String(this.data),
      });
    return out;
  }

  async close(): Promise<void> {
    await this.it?.return(undefined);
  }
}

/** The job's options with the worker's own flags over them, checked like a run's. */
function effectiveOptions(meta: JobMeta, own: Partial<CapfiltOptions>): CapfiltOptions {
  const o = meta.options;
  const merged: CapfiltOptions = { ...o, ...Object.fromEntries(Object.entries(own).filter(([, v]) => v !== undefined)) };
  validateCapfiltOptions(merged);
  return merged;
}

/** The job's record, waiting for its coordinator to write it; null when told to stop first. */
async function waitForMeta(redis: Redis, flags: WorkerFlags, ctx: RunContext, stopped: Promise<string>): Promise<JobMeta | null> {
  let told = false;
  let stop = false;
  void stopped.then(() => (stop = true));
  for (;;) {
    const meta = await readMeta(redis, flags.job);
    if (meta) return meta;
    if (stop) return null;
    if (!told) ctx.io.err(`capfilt worker: waiting for job '${flags.job}' on ${flags.queue} (start its coordinator)`);
    told = true;
    await Promise.race([sleep(2000), stopped]);
  }
}

/** Runs one worker until SIGTERM/SIGINT or the job is finished; exit 0, or 2 when refused. */
export async function runQueueWorker(flags: WorkerFlags, ctx: RunContext): Promise<number> {
  const io = ctx.io;
  const redis = await connect(flags.queue);
  const me = `${hostname()}:${process.pid}`;
  let models: Models | undefined;
  let worker: Worker | undefined;
  let reader: RangeReader | undefined;
  let stop: (why: string) => void = () => undefined;
  const stopped = new Promise<string>((r) => (stop = r));
  const onSignal = (sig: NodeJS.Signals) => stop(sig);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    const meta = await waitForMeta(redis, flags, ctx, stopped);
    if (!meta) return 0;
    if (meta.finished) {
      io.err(`capfilt worker ${me}: job '${flags.job}' finished ${meta.finished}, nothing to do`);
      return 0;
    }
    const opts = effectiveOptions(meta, flags.overrides);
    const changes = diffIdentity(meta.identity, await identityOf(opts), true);
    if (changes.length) throw jobMismatch(flags.job, `worker ${me}`, changes);
    await mkdir(join(opts.out, ITEMS_DIR), { recursive: true });
    models = await loadModels(opts);
    checkModelsForOptions(opts, models);
    const root = opts.images as string;
    reader = new RangeReader(opts.data, root);
    const scoring: Scoring = {
      numCaptions: opts.numCaptions ?? 1,
      topP: opts.topP ?? 0.9,
      beam: opts.beam,
      itc: Boolean(opts.itc),
      seed: opts.seed ?? 0,
      maxLength: opts.maxLength ?? 30,
    };
    const threshold = meta.header.threshold;
    const batchSize = opts.batchSize ?? 8;
    const m = models;
    const r = reader;
    const process1 = async (job: Job<ItemData>) => {
      const item = job.data;
      if (item.fingerprint !== meta.fingerprint) throw new Error(`item ${item.id} belongs to another run of job '${flags.job}'`);
      const t0 = Date.now();
      const items = await r.read(item.start, item.end);
      const results: RecordResult[] = [];
      for (let i = 0; i < items.length; i += batchSize) {
        results.push(...(await processBatch(items.slice(i, i + batchSize), root, m, scoring, threshold)));
        // tfjs on CPU holds the event loop; a turn between batches lets BullMQ renew the item's lock.
        await new Promise((r) => setImmediate(r));
      }
      await writeItem(opts.out, item, results);
      if (!ctx.quiet)
        io.err(`capfilt worker ${me}: item ${item.id} done (${results.length} records, ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      return { records: results.length, worker: me };
    };
    worker = new Worker<ItemData>(queueName(flags.job), process1, {
      connection: redis,
      prefix: PREFIX,
      concurrency: flags.concurrency,
      lockDuration: flags.stalledInterval,
      stalledInterval: flags.stalledInterval,
      maxStalledCount: meta.attempts,
      name: me,
    });
    worker.on('error', (err) => io.err(`capfilt worker ${me}: queue: ${err.message}`));
    worker.on('failed', (job, err) => io.err(`capfilt worker ${me}: item ${job?.data.id ?? '?'} failed: ${err.message}`));
    if (!ctx.quiet) io.err(`capfilt worker ${me}: ready for job '${flags.job}' (${meta.items} items)`);
    // The job's end is seen on its record; a lost Redis record (restart without persistence) is rewritten by the coordinator.
    let stopping = false;
    void stopped.then(() => (stopping = true));
    void (async () => {
      while (!stopping) {
        await Promise.race([sleep(Math.min(2000, flags.stalledInterval)), stopped]);
        const now = await readMeta(redis, flags.job).catch(() => null);
        if (now?.finished && now.fingerprint === meta.fingerprint) stop('job finished');
      }
    })();
    const why = await stopped;
    if (!ctx.quiet) io.err(`capfilt worker ${me}: ${why === 'job finished' ? why : `${why}: finishing the item in hand`}, exiting`);
    stop('exit');
    await worker.close();
    return 0;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    stop('exit');
    await worker?.close().catch(() => undefined);
    await reader?.close().catch(() => undefined);
    models?.captioner.dispose();
    models?.filter.dispose();
    redis.disconnect();
  }
}
