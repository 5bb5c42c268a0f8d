// `blip capfilt …` and `blip capfilt merge …`: argument parsing, progress with ETA on stderr, and a
// summary on stdout. The pipeline is in pipeline.ts, the outputs in output.ts.
import { mkdir } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { SingleBar } from 'cli-progress';
import { VlError } from '@vl/core';
import { backendOpt, type Io, num, type Parsed, parse, startRuntime, str, UsageError } from './args.js';
import { checkOutSeparate, checkpointIdentity, dataIdentity, diffIdentity, realpathLoose, type RunIdentity } from './identity.js';
import { type JournalHeader, journalRecords, type RecordResult, scanJournal } from './journal.js';
import { acquireOutLock } from './lock.js';
import { type CapfiltReport, DONE_FILE, outputsComplete, writeOutputs } from './output.js';
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
import { checkModelsForOptions, validateCapfiltOptions } from './validate.js';

export const CAPFILT_HELP = `usage: blip capfilt --data FILE|SHARDS --out DIR --captioner CKPT --filter CKPT [--images ROOT]
                    [--num-captions 1] [--top-p 0.9 | --beam K] [--threshold 0.5 | --keep-rate R --calibrate-on 256]
                    [--itc] [--batch-size 8] [--shard i/n] [--seed 0] [--max-length 30] [--quiet]
       blip capfilt merge --out DIR SHARD_DIR...
  --data: JSONL, CSV, COCO Karpathy JSON, or WebDataset shards (a.tar b.tar, or shard-{0000..0009}.tar).
  Every input record ends kept (an original caption passed), replaced (only synthetic ones passed),
  dropped (none passed) or failed (with a reason). Writes the cleaned dataset in the input's format
  (tar input: cleaned.tar), records.jsonl, report.json, report.md, histograms.png, samples.png,
  and capfilt.done.json last. Exit 0; 2 for invalid options or a refused --out; 3 when counts do not add up.
  Rerun the same command after a crash to resume from journal.jsonl.`;

function progressBar(quiet: boolean) {
  if (quiet) return { update: (_d: number, _t: number) => {}, stop: () => {} };
  const b = new SingleBar({
    format: 'capfilt [{bar}] {value}/{total} records | {percentage}% | ETA {eta_formatted}',
    stream: process.stderr,
    noTTYOutput: !process.stderr.isTTY,
    notTTYSchedule: 5000,
    hideCursor: Boolean(process.stderr.isTTY),
    etaBuffer: 50,
  });
  let started = false;
  return {
    update(done: number, total: number) {
      if (!started) b.start(total, done);
      started = true;
      b.update(done);
    },
    stop: () => started && b.stop(),
  };
}

function summary(io: Io, r: CapfiltReport, out: string): void {
  const c = r.counts;
  io.out(`${r.input} records: kept ${c.kept}, replaced ${c.replaced}, dropped ${c.dropped}, failed ${c.failed} (threshold ${r.threshold})`);
  io.out(
    `captions: original ${r.captions.originalKept}/${r.captions.original} kept, synthetic ${r.captions.syntheticKept}/${r.captions.synthetic} kept, ${r.captions.written} written`,
  );
  io.out(`wrote ${out}`);
}

function parseShard(s: string | undefined): { index: number; count: number } | undefined {
  if (s === undefined) return undefined;
  const m = /^(\d+)\/(\d+)$/.exec(s);
  if (!m) throw new UsageError(`--shard must be i/n with 0 ≤ i < n, got '${s}'`);
  return { index: Number(m[1]), count: Number(m[2]) };
}

/** A number option as given (ranges are checked by validateCapfiltOptions). */
function numOpt(p: Parsed, name: string): number | undefined {
  return p.values[name] === undefined ? undefined : num(p, name, 0);
}

/** The options object of `blip capfilt` from its arguments (values only; validate it next). */
export function capfiltOptionsFrom(p: Parsed): CapfiltOptions {
  const data = [...((p.values.data as string[] | undefined) ?? []), ...p.positionals];
  return {
    data: data.length === 1 ? (data[0] as string) : data,
    images: str(p, 'images'),
    out: str(p, 'out') ?? '',
    captioner: str(p, 'captioner') ?? '',
    filter: str(p, 'filter') ?? '',
    numCaptions: numOpt(p, 'num-captions') ?? 1,
    topP: numOpt(p, 'top-p') ?? 0.9,
    beam: numOpt(p, 'beam'),
    threshold: numOpt(p, 'threshold'),
    keepRate: numOpt(p, 'keep-rate'),
    calibrateOn: numOpt(p, 'calibrate-on') ?? 256,
    itc: Boolean(p.values.itc),
    batchSize: numOpt(p, 'batch-size') ?? 8,
    shard: parseShard(str(p, 'shard')),
    seed: numOpt(p, 'seed') ?? 0,
    maxLength: numOpt(p, 'max-length') ?? 30,
  };
}

export async function capfiltCommand(argv: string[], io: Io): Promise<number> {
  if (argv[0] === 'merge') return mergeCommand(argv.slice(1), io);
  const p = parse(
    argv,
    {
      data: { type: 'string', multiple: true },
      images: { type: 'string' },
      out: { type: 'string' },
      captioner: { type: 'string' },
      filter: { type: 'string' },
      'num-captions': { type: 'string' },
      'top-p': { type: 'string' },
      beam: { type: 'string' },
      threshold: { type: 'string' },
      'keep-rate': { type: 'string' },
      'calibrate-on': { type: 'string' },
      itc: { type: 'boolean' },
      'batch-size': { type: 'string' },
      shard: { type: 'string' },
      seed: { type: 'string' },
      'max-length': { type: 'string' },
      quiet: { type: 'boolean' },
      ...backendOpt,
    },
    true,
  );
  if (p.values.help) return (io.out(CAPFILT_HELP), 0);
  const opts = capfiltOptionsFrom(p);
  validateCapfiltOptions(opts);
  await startRuntime(p);
  return runCapfiltJob(opts, io, Boolean(p.values.quiet));
}

/**
 * A whole CapFilt run on validated options: refuses an --out that holds an input, takes the
 * folder's lock, counts the source, checks a journal to resume against this run's identity, loads
 * and checks the models, runs, writes the outputs. Exit code 0, or 3 when the counts do not add up.
 */
export async function runCapfiltJob(opts: CapfiltOptions, io: Io, quiet = false): Promise<number> {
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
    const bar = progressBar(quiet);
    const models = await loadModels(opts);
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

/** Exit code 3 (and why) when records.jsonl does not hold exactly the source's records; else 0. */
function unbalanced(io: Io, report: CapfiltReport, expected: number): number {
  if (report.balanced) return 0;
  io.err(`capfilt: counts do not add up: records.jsonl has ${report.input} records, the source has ${expected} (balanced: false)`);
  return 3;
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

async function mergeCommand(argv: string[], io: Io): Promise<number> {
  const p = parse(argv, { out: { type: 'string' } }, true);
  if (p.values.help) return (io.out(CAPFILT_HELP), 0);
  const out = str(p, 'out', true) as string;
  const dirs = p.positionals;
  if (dirs.length === 0) throw new UsageError('give the shard output folders');
  const realOut = await realpathLoose(out);
  for (const d of dirs) {
    if ((await realpathLoose(d)) === realOut) {
      throw new VlError('OUTPUT_CONFLICT', `--out is the shard folder ${d}`, { subject: out, hint: 'merge into a new folder' });
    }
  }
  const headers: JournalHeader[] = [];
  for (const d of dirs) {
    const s = await scanJournal(join(d, JOURNAL));
    if (!s.header) throw new UsageError(`${d} has no CapFilt journal`);
    if (s.header.version !== 2) throw new UsageError(`${d} comes from an older CapFilt version: rerun its capfilt command`);
    if (!outputsComplete(d)) throw new UsageError(`${d} is not finished (no ${DONE_FILE}): rerun its capfilt command first`);
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
    if (changes.length) throw new UsageError(`${dirs[i]} comes from another run than ${dirs[0]}: ${changes.join('; ')}`);
    const idx = h.shard?.index ?? 0;
    if (seen.has(idx)) throw new UsageError(`shard ${idx}/${count} given twice`);
    seen.add(idx);
  }
  if (seen.size !== count)
    throw new UsageError(
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
