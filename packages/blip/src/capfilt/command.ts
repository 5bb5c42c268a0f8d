// `blip capfilt …` and `blip capfilt merge …` once @vl/core/cli has parsed their flags (the OptionSpecs are
// in cli.ts): the options object, progress with ETA on stderr, and a summary on stdout. The pipeline is in
// pipeline.ts, the outputs in output.ts.
import { mkdir } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { type RunContext, VlError } from '@vl/core';
import { required, type Values } from '@vl/core/cli';
import { resolveCheckpoint } from '../embedded.js';
import { checkOutSeparate, checkpointIdentity, dataIdentity, diffIdentity, realpathLoose, type RunIdentity } from './identity.js';
import { type JournalHeader, journalRecords, type RecordResult, scanJournal } from './journal.js';
import { acquireOutLock } from './lock.js';
import { DONE_FILE, outputsComplete, writeOutputs } from './output.js';
import {
  assertResumable,
  type CapfiltOptions,
  dataFiles,
  formatOf,
  inputItems,
  inShard,
  JOURNAL,
  loadModels,
  resultOptions,
  runCapfilt,
} from './pipeline.js';
import { runQueueJob } from './queue/coordinator.js';
import { checkJobName, checkQueueUrl } from './queue/connection.js';
import { DEFAULT_ITEM_SIZE } from './queue/items.js';
import { queueStatus } from './queue/status.js';
import { runQueueWorker } from './queue/worker.js';
import { loadLine, summary, unbalanced } from './summary.js';
import { checkModelsForOptions, validateCapfiltOptions } from './validate.js';

/** A refusal before anything is written (exit 2), about `subject` (an option or a folder). */
function refuse(subject: string | undefined, message: string, hint?: string): VlError {
  return new VlError('INVALID_ARGUMENT', message, { subject, hint });
}

function parseShard(s: string | undefined): { index: number; count: number } | undefined {
  if (s === undefined) return undefined;
  const m = /^(\d+)\/(\d+)$/.exec(s);
  if (!m) throw refuse('--shard', `--shard must be i/n with 0 ≤ i < n, got '${s}'`);
  return { index: Number(m[1]), count: Number(m[2]) };
}

/**
 * The options object of `blip capfilt` from its parsed flags (defaults filled in by the OptionSpecs) and
 * its positionals (more data files); values only, validate it next.
 */
export function capfiltOptionsFrom(v: Values, positionals: readonly string[]): CapfiltOptions {
  const data = [...((v.data as string[] | undefined) ?? []), ...positionals];
  const num = (name: string) => v[name] as number | undefined;
  return {
    data: data.length === 1 ? (data[0] as string) : data,
    images: v.images as string | undefined,
    out: (v.out as string | undefined) ?? '',
    // A name of a model shipped with the package (`scenes-tiny`) becomes its folder here.
    captioner: resolveCheckpoint((v.captioner as string | undefined) ?? '', 'captioner'),
    filter: resolveCheckpoint((v.filter as string | undefined) ?? '', 'filter'),
    numCaptions: num('numCaptions'),
    topP: num('topP'),
    beam: num('beam'),
    threshold: num('threshold'),
    keepRate: num('keepRate'),
    calibrateOn: num('calibrateOn'),
    itc: Boolean(v.itc),
    ...(v.int8 ? { int8: true } : {}),
    batchSize: num('batchSize'),
    shard: parseShard(v.shard as string | undefined),
    seed: num('seed'),
    maxLength: num('maxLength'),
  };
}

/** `blip capfilt [data…] --out … --captioner … --filter …`: the options checked (issue 14), then the run. */
export async function capfiltCommand(ctx: RunContext, values: Values, positionals: readonly string[]): Promise<number> {
  const opts = capfiltOptionsFrom(values, positionals);
  validateCapfiltOptions(opts);
  if (values.queue === undefined && values.job === undefined) return runCapfiltJob(opts, ctx);
  const itemSize = (values.itemSize as number | undefined) ?? DEFAULT_ITEM_SIZE;
  const attempts = (values.attempts as number | undefined) ?? 3;
  intOption('item-size', itemSize, 1, 1_000_000);
  intOption('attempts', attempts, 1, 100);
  const flags = {
    queue: checkQueueUrl(values.queue as string | undefined),
    job: checkJobName(values.job as string | undefined),
    itemSize,
    attempts,
  };
  return runQueueJob(opts, flags, ctx);
}

function intOption(name: string, v: number, lo: number, hi: number): void {
  if (!Number.isInteger(v) || v < lo || v > hi) throw refuse(`--${name}`, `--${name} must be an integer in ${lo}–${hi}, got ${v}`);
}

/** `blip capfilt worker --queue URL --job NAME [--concurrency N]`: the job's options, the worker's own paths over them. */
export async function workerCommand(ctx: RunContext, values: Values): Promise<number> {
  const concurrency = (values.concurrency as number | undefined) ?? 1;
  const stalledInterval = (values.stalledInterval as number | undefined) ?? 30_000;
  intOption('concurrency', concurrency, 1, 64);
  intOption('stalled-interval', stalledInterval, 100, 3_600_000);
  const given = capfiltOptionsFrom(values, []);
  const overrides = Object.fromEntries(
    Object.entries(given).filter(([k, v]) => v !== undefined && v !== '' && !(k === 'itc' && v === false)),
  );
  if (Array.isArray(overrides.data) && overrides.data.length === 0) delete overrides.data;
  return runQueueWorker(
    {
      queue: checkQueueUrl(values.queue as string | undefined),
      job: checkJobName(values.job as string | undefined),
      concurrency,
      stalledInterval,
      overrides,
    },
    ctx,
  );
}

/** `blip capfilt status --queue URL --job NAME`: the job's progress from anywhere. */
export async function statusCommand(ctx: RunContext, values: Values): Promise<number> {
  const lines = await queueStatus(checkQueueUrl(values.queue as string | undefined), checkJobName(values.job as string | undefined));
  for (const l of lines) ctx.io.out(l);
  return 0;
}

/**
 * A whole CapFilt run on validated options: refuses an --out that holds an input, takes the
 * folder's lock, counts the source, checks a journal to resume against this run's identity, loads
 * and checks the models, runs, writes the outputs. Exit code 0, or 3 when the counts do not add up.
 */
export async function runCapfiltJob(opts: CapfiltOptions, ctx: RunContext): Promise<number> {
  const io = ctx.io;
  const files = dataFiles(opts.data);
  const root = resolve(opts.images ?? dirname(files[0] as string));
  const names = files.map((f) => basename(f));
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice !== undefined) {
    throw new VlError('INVALID_ARGUMENT', `two inputs are named ${twice}: their record keys (and cleaned.tar keys) would collide`, {
      subject: '--data',
      hint: 'rename one of them',
    });
  }
  await checkOutSeparate(opts.out, files, root);
  await mkdir(opts.out, { recursive: true });
  const lock = await acquireOutLock(opts.out);
  try {
    const format = formatOf(opts.data);
    const identity: RunIdentity = {
      options: resultOptions(opts, format),
      imageRoot: await realpathLoose(root),
      data: await dataIdentity(files),
      captioner: await checkpointIdentity(opts.captioner),
      filter: await checkpointIdentity(opts.filter),
    };
    assertResumable((await scanJournal(join(opts.out, JOURNAL))).header, identity, join(opts.out, JOURNAL));
    // One cheap pass (no image decoding) counts the source: the ETA's total and the report's balance.
    let sourceRecords = 0;
    let mine = 0;
    for await (const item of inputItems(opts.data, opts.images)) {
      sourceRecords++;
      if (inShard(item.index, opts.shard)) mine++;
    }
    const bar = ctx.progress('capfilt records');
    const models = await loadModels(opts);
    io.err(loadLine(models));
    const t0 = Date.now();
    let state;
    try {
      checkModelsForOptions(opts, models);
      state = await runCapfilt({ ...opts, identity, sourceRecords, onProgress: (done) => bar.update(done, mine) }, models);
    } finally {
      bar.stop();
      models.captioner.dispose();
      models.filter.dispose();
    }
    if (state.resumedBatches > 0) io.err(`resumed after ${state.resumedBatches} journaled batches`);
    const report = await writeOutputs(journalRecords(join(opts.out, JOURNAL)), state.header, opts.out, mine);
    summary(io, report, opts.out);
    io.err(`capfilt: ${state.processed} records in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    return unbalanced(io, report, mine);
  } finally {
    await lock.release();
  }
}

/** Records of several shard journals, interleaved back into input order. */
async function* mergeByIndex(sources: AsyncGenerator<RecordResult>[]): AsyncGenerator<RecordResult> {
  const heads = await Promise.all(sources.map((s) => s.next()));
  for (;;) {
    let best = -1;
    heads.forEach((h, i) => {
      if (!h.done && (best < 0 || h.value.index < (heads[best] as IteratorYieldResult<RecordResult>).value.index)) best = i;
    });
    if (best < 0) return;
    const h = heads[best] as IteratorYieldResult<RecordResult>;
    yield h.value;
    heads[best] = await (sources[best] as AsyncGenerator<RecordResult>).next();
  }
}

/** `blip capfilt merge --out DIR SHARD_DIR…`: the finished shards of one run, merged as one unsharded run writes it. */
export async function mergeCommand(ctx: RunContext, values: Values, dirs: readonly string[]): Promise<number> {
  const io = ctx.io;
  const out = required<string>(values, 'out');
  const realOut = await realpathLoose(out);
  for (const d of dirs) {
    if ((await realpathLoose(d)) === realOut) {
      throw new VlError('OUTPUT_CONFLICT', `--out is the shard folder ${d}`, { subject: out, hint: 'merge into a new folder' });
    }
  }
  const headers: JournalHeader[] = [];
  for (const d of dirs) {
    const s = await scanJournal(join(d, JOURNAL));
    if (!s.header) throw refuse(d, `not a CapFilt output folder (no ${JOURNAL})`);
    if (s.header.version !== 2) throw refuse(d, 'written by an older CapFilt version', 'rerun its capfilt command');
    if (!outputsComplete(d)) throw refuse(d, `not finished (no ${DONE_FILE})`, 'rerun its capfilt command first');
    headers.push(s.header);
  }
  const h0 = headers[0] as JournalHeader;
  const count = h0.shard?.count ?? 1;
  const seen = new Set<number>();
  for (const [i, h] of headers.entries()) {
    const changes = diffIdentity(h0.identity, h.identity, true);
    if (h.threshold !== h0.threshold) changes.push(`threshold ${h0.threshold} → ${h.threshold}`);
    if (h.sourceRecords !== h0.sourceRecords) changes.push(`source records ${h0.sourceRecords} → ${h.sourceRecords}`);
    if ((h.shard?.count ?? 1) !== count) changes.push(`shard count ${count} → ${h.shard?.count ?? 1}`);
    if (changes.length) throw refuse(dirs[i], `comes from another run than ${dirs[0]}: ${changes.join('; ')}`);
    const idx = h.shard?.index ?? 0;
    if (seen.has(idx)) throw refuse(dirs[i], `shard ${idx}/${count} given twice`);
    seen.add(idx);
  }
  if (seen.size !== count)
    throw refuse(
      undefined,
      `have ${seen.size} of ${count} shards (missing ${[...Array(count).keys()].filter((i) => !seen.has(i)).join(', ')})`,
    );
  await mkdir(out, { recursive: true });
  const lock = await acquireOutLock(out);
  try {
    const report = await writeOutputs(mergeByIndex(dirs.map((d) => journalRecords(join(d, JOURNAL)))), h0, out, h0.sourceRecords);
    summary(io, report, out);
    return unbalanced(io, report, h0.sourceRecords);
  } finally {
    await lock.release();
  }
}
