// `blip capfilt …` and `blip capfilt merge …`: argument parsing, progress with ETA on stderr, and a
// summary on stdout. The pipeline is in pipeline.ts, the outputs in output.ts.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SingleBar } from 'cli-progress';
import { type Io, num, parse, startRuntime, str, UsageError, backendOpt } from '../program.js';
import { type JournalHeader, journalRecords, type RecordResult, scanJournal } from './journal.js';
import { type CapfiltReport, writeOutputs } from './output.js';
import { type CapfiltOptions, inputItems, inShard, JOURNAL, loadModels, runCapfilt } from './pipeline.js';

export const CAPFILT_HELP = `usage: blip capfilt --data FILE|SHARDS --out DIR --captioner CKPT --filter CKPT [--images ROOT]
                    [--num-captions 1] [--top-p 0.9 | --beam K] [--threshold 0.5 | --keep-rate R --calibrate-on 256]
                    [--itc] [--batch-size 8] [--shard i/n] [--seed 0] [--max-length 30] [--quiet]
       blip capfilt merge --out DIR SHARD_DIR...
  --data: JSONL, CSV, COCO Karpathy JSON, or WebDataset shards (a.tar b.tar, or shard-{0000..0009}.tar).
  Every input record ends kept (an original caption passed), replaced (only synthetic ones passed),
  dropped (none passed) or failed (with a reason). Writes the cleaned dataset in the input's format
  (tar input: cleaned.jsonl), records.jsonl, report.json, report.md, histograms.png, samples.png.
  Rerun the same command after a crash to resume from journal.jsonl.`;

function progressBar(quiet: boolean) {
  if (quiet) return { update: (_d: number, _t: number) => {}, stop: () => {} };
  const b = new SingleBar({ format: 'capfilt [{bar}] {value}/{total} records | {percentage}% | ETA {eta_formatted}', stream: process.stderr, noTTYOutput: !process.stderr.isTTY, notTTYSchedule: 5000, hideCursor: Boolean(process.stderr.isTTY), etaBuffer: 50 });
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
  io.out(`captions: original ${r.captions.originalKept}/${r.captions.original} kept, synthetic ${r.captions.syntheticKept}/${r.captions.synthetic} kept, ${r.captions.written} written`);
  io.out(`wrote ${out}`);
}

function parseShard(s: string | undefined): { index: number; count: number } | undefined {
  if (s === undefined) return undefined;
  const m = /^(\d+)\/(\d+)$/.exec(s);
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (!m || count < 1 || index >= count) throw new UsageError(`--shard must be i/n with 0 ≤ i < n, got '${s}'`);
  return { index, count };
}

export async function capfiltCommand(argv: string[], io: Io): Promise<number> {
  if (argv[0] === 'merge') return mergeCommand(argv.slice(1), io);
  const p = parse(
    argv,
    {
      data: { type: 'string', multiple: true }, images: { type: 'string' }, out: { type: 'string' }, captioner: { type: 'string' }, filter: { type: 'string' },
      'num-captions': { type: 'string' }, 'top-p': { type: 'string' }, beam: { type: 'string' }, threshold: { type: 'string' }, 'keep-rate': { type: 'string' },
      'calibrate-on': { type: 'string' }, itc: { type: 'boolean' }, 'batch-size': { type: 'string' }, shard: { type: 'string' }, seed: { type: 'string' },
      'max-length': { type: 'string' }, quiet: { type: 'boolean' }, ...backendOpt,
    },
    true,
  );
  if (p.values.help) return io.out(CAPFILT_HELP), 0;
  const data = [...((p.values.data as string[] | undefined) ?? []), ...p.positionals];
  if (data.length === 0) throw new UsageError('--data is required');
  if (p.values.threshold !== undefined && p.values['keep-rate'] !== undefined) throw new UsageError('give --threshold or --keep-rate, not both');
  const keepRate = p.values['keep-rate'] !== undefined ? num(p, 'keep-rate', 1, { min: 0 }) : undefined;
  if (keepRate !== undefined && keepRate > 1) throw new UsageError('--keep-rate must be in [0, 1]');
  const opts: CapfiltOptions = {
    data: data.length === 1 ? (data[0] as string) : data,
    images: str(p, 'images'),
    out: str(p, 'out', true) as string,
    captioner: str(p, 'captioner', true) as string,
    filter: str(p, 'filter', true) as string,
    numCaptions: num(p, 'num-captions', 1, { int: true, min: 0 }),
    topP: num(p, 'top-p', 0.9, { min: 0 }),
    beam: p.values.beam !== undefined ? num(p, 'beam', 1, { int: true, min: 1 }) : undefined,
    threshold: p.values.threshold !== undefined ? num(p, 'threshold', 0.5, { min: 0 }) : undefined,
    keepRate,
    calibrateOn: num(p, 'calibrate-on', 256, { int: true, min: 1 }),
    itc: Boolean(p.values.itc),
    batchSize: num(p, 'batch-size', 8, { int: true, min: 1 }),
    shard: parseShard(str(p, 'shard')),
    seed: num(p, 'seed', 0, { int: true }),
    maxLength: num(p, 'max-length', 30, { int: true, min: 2 }),
  };
  await startRuntime(p);
  // One cheap pass (no image decoding) gives the total for the ETA.
  let total = 0;
  for await (const item of inputItems(opts.data, opts.images)) if (inShard(item.index, opts.shard)) total++;
  const bar = progressBar(Boolean(p.values.quiet));
  const models = await loadModels(opts);
  const t0 = Date.now();
  let state;
  try {
    state = await runCapfilt({ ...opts, onProgress: (done) => bar.update(done, total) }, models);
  } finally {
    bar.stop();
    models.captioner.dispose();
    models.filter.dispose();
  }
  if (state.resumedBatches > 0) io.err(`resumed after ${state.resumedBatches} journaled batches`);
  const report = await writeOutputs(journalRecords(join(opts.out, JOURNAL)), state.header, opts.out);
  summary(io, report, opts.out);
  io.err(`capfilt: ${state.processed} records in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  return 0;
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
  if (p.values.help) return io.out(CAPFILT_HELP), 0;
  const out = str(p, 'out', true) as string;
  const dirs = p.positionals;
  if (dirs.length === 0) throw new UsageError('give the shard output folders');
  const headers: JournalHeader[] = [];
  for (const d of dirs) {
    const s = await scanJournal(join(d, JOURNAL));
    if (!s.header) throw new UsageError(`${d} has no CapFilt journal`);
    if (!existsSync(join(d, 'report.json'))) throw new UsageError(`${d} is not finished (no report.json): rerun its capfilt command first`);
    headers.push(s.header);
  }
  const h0 = headers[0] as JournalHeader;
  const count = h0.shard?.count ?? 1;
  const seen = new Set<number>();
  for (const [i, h] of headers.entries()) {
    if (h.threshold !== h0.threshold || h.format !== h0.format || h.dataName !== h0.dataName || (h.shard?.count ?? 1) !== count) {
      throw new UsageError(`${dirs[i]} comes from another run (threshold, data or shard count differ)`);
    }
    const idx = h.shard?.index ?? 0;
    if (seen.has(idx)) throw new UsageError(`shard ${idx}/${count} given twice`);
    seen.add(idx);
  }
  if (seen.size !== count) throw new UsageError(`have ${seen.size} of ${count} shards (missing ${[...Array(count).keys()].filter((i) => !seen.has(i)).join(', ')})`);
  const { mkdir } = await import('node:fs/promises');
  await mkdir(out, { recursive: true });
  const report = await writeOutputs(mergeByIndex(dirs.map((d) => journalRecords(join(d, JOURNAL)))), h0, out);
  summary(io, report, out);
  return 0;
}
