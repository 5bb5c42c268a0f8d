// `blip capfilt …` (= `vl capfilt blip …`) as a command of BLIP's model spec: declarative options that
// @vl/core/cli parses with commander like every other command, and CapFilt's exit codes: 2 for usage
// errors and refusals before the run starts (invalid options, a locked or conflicting --out, a journal of
// another run), 3 when the counts do not add up, 1 for failures while running.
import { type Io, isVlError, type ModelCommandSpec, type OptionSpec, type RunContext, VlError } from '@vl/core';
import { addModelCommand, COMMON, createProgram, processIo, type ProgramState, runProgram, type Values } from '@vl/core/cli';
import { capfiltCommand, mergeCommand, statusCommand, workerCommand } from './command.js';
import { DEFAULT_ITEM_SIZE } from './queue/items.js';
import { LIMITS } from './validate.js';

/** Error codes that mean "refused before doing anything": exit 2, like a usage error. */
export const REFUSAL_CODES = [
  'INVALID_ARGUMENT',
  'MODEL_UNKNOWN',
  'CONFIG_INVALID',
  'OUTPUT_LOCKED',
  'OUTPUT_CONFLICT',
  'RESUME_MISMATCH',
] as const;

/** The exit code for an error thrown by a CapFilt command: 2 for refusals, 1 otherwise. */
export function capfiltExitCode(err: unknown): number {
  return REFUSAL_CODES.some((c) => isVlError(err, c)) ? 2 : 1;
}

// Numbers are parsed as numbers only: their ranges and integrality are checked in one place,
// validateCapfiltOptions (issue 14), which names the option and the range.
const OPTIONS: readonly OptionSpec[] = [
  {
    flags: '--data <file>',
    description:
      'JSONL, CSV (TSV by .tsv), COCO Karpathy JSON, or WebDataset shards (a.tar b.tar, shard-{0000..0009}.tar); repeat it, or list more files after the options',
    kind: 'strings',
  },
  { flags: '--images <root>', description: "folder the list's image paths are relative to (default: the folder of the list file)" },
  {
    flags: '--out <dir>',
    description: 'output folder (outputs, resume journal, lock); may not be or hold an input file or the image root',
  },
  {
    flags: '--captioner <dir>',
    description: 'BlipForConditionalGeneration checkpoint folder that writes the synthetic captions, or an embedded model: scenes-tiny',
  },
  {
    flags: '--filter <dir>',
    description: 'BlipForImageTextRetrieval checkpoint folder whose ITM head scores the captions, or an embedded model: scenes-tiny',
  },
  {
    flags: '--num-captions <n>',
    description: `synthetic captions per image, 0–${LIMITS.numCaptions} (0: filter only)`,
    kind: 'number',
    default: 1,
  },
  { flags: '--top-p <p>', description: 'nucleus sampling p, in (0, 1]', kind: 'number', default: 0.9 },
  { flags: '--beam <k>', description: `beam search with k beams (1–${LIMITS.beam}) instead of sampling`, kind: 'number' },
  {
    flags: '--threshold <t>',
    description: 'keep a caption when its filter score ≥ t, in [0, 1] (default: 0.5 unless --keep-rate)',
    kind: 'number',
  },
  {
    flags: '--keep-rate <r>',
    description:
      'instead of --threshold: the threshold that keeps a fraction r ∈ (0, 1] of the original captions of the first --calibrate-on records',
    kind: 'number',
  },
  {
    flags: '--calibrate-on <m>',
    description: `input records --keep-rate calibrates on (1–${LIMITS.calibrateOn})`,
    kind: 'number',
    default: 256,
  },
  {
    flags: '--itc',
    description: "score = (ITM probability + (ITC cosine + 1) / 2) / 2: a blend of this project's, not BLIP's filter rule (ITM alone)",
  },
  {
    flags: '--int8',
    description:
      'run every linear layer with dynamically quantised int8 weights (needs @vl/accel on wasm): faster, not identical — see docs/benchmarks.md',
  },
  {
    flags: '--batch-size <b>',
    description: `records per filter forward and per journal entry (1–${LIMITS.batchSize})`,
    kind: 'number',
    default: 8,
  },
  { flags: '--shard <i/n>', description: 'process only the records at input positions p with p mod n = i' },
  { flags: '--seed <s>', description: 'seeds the sampler', kind: 'number', default: 0 },
  {
    flags: '--max-length <l>',
    description: `caption tokens, prompt included (2–${LIMITS.maxLength}, and at most the captioner's max_position_embeddings)`,
    kind: 'number',
    default: 30,
  },
  COMMON.quiet,
  COMMON.backend,
];

const QUEUE: OptionSpec = { flags: '--queue <url>', description: 'Redis of the job queue (BullMQ), redis://HOST:PORT/DB' };
const JOB: OptionSpec = { flags: '--job <name>', description: 'name of the queued job (A–Z a–z 0–9 . _ -)' };

/** The coordinator's flags: with --queue and --job, the run is spread over `capfilt worker`s (issue 21). */
const QUEUE_OPTIONS: readonly OptionSpec[] = [
  { ...QUEUE, description: `${QUEUE.description}: spread this run over \`capfilt worker\`s (needs --job)` },
  JOB,
  {
    flags: '--item-size <n>',
    description: 'records per work item with --queue (input positions, bad records included)',
    kind: 'number',
    default: DEFAULT_ITEM_SIZE,
  },
  {
    flags: '--attempts <n>',
    description: 'with --queue: failures (or worker deaths) after which an item goes to the failed set',
    kind: 'number',
    default: 3,
  },
];

/** A worker takes the job's options from Redis; given flags replace them (paths on this machine) and must match the job. */
const WORKER_OPTIONS: readonly OptionSpec[] = [
  QUEUE,
  JOB,
  { flags: '--concurrency <n>', description: 'items processed at once by this worker', kind: 'number', default: 1 },
  {
    flags: '--stalled-interval <ms>',
    description: "ms after which a dead worker's item is given to another worker (BullMQ lock and stalled check)",
    kind: 'number',
    default: 30_000,
  },
  ...OPTIONS.filter((o) => !['--quiet', '--backend', '--shard'].some((f) => o.flags.startsWith(f))).map((o) => {
    const { default: _unused, ...rest } = o;
    return { ...rest, description: `${o.description} (default: the job's)` };
  }),
  COMMON.quiet,
  COMMON.backend,
];

const HELP = `Every input record ends kept (an original caption passed), replaced (only synthetic ones passed),
dropped (none passed) or failed (with a reason). Writes the cleaned dataset in the input's format
(tar input: cleaned.tar), records.jsonl, report.json, report.md, histograms.png, samples.png,
and capfilt.done.json last. Rerun the same command after a crash to resume from journal.jsonl.
With --queue URL --job NAME the records are processed by \`blip capfilt worker\`s on any machine
that sees the data and --out (see docs/scale-out.md); the outputs are the same bytes.
Exit 0; 2 for invalid options or a refused --out; 3 when the counts do not add up; 1 for a failure while running.`;

const WORKER_HELP = `Writes each item's results to <out>/items/<id>.json (temp file + rename); an item done twice writes the
same bytes. A worker whose files or options differ from the job's is refused (exit 2) naming the difference.
SIGTERM or SIGINT: finishes the item in hand and exits 0; so does a finished job.`;

type Run = (ctx: RunContext, values: Values, args: string[]) => Promise<number>;

/** What a failure (not a refusal) does: the CLI prints it and exits 1; the in-process entry rethrows it. */
type OnFailure = (err: unknown, io: Io) => number;

/** A command's run with CapFilt's exit codes: refusals printed and exit 2, failures to `onFailure`. */
function guarded(run: Run, onFailure: OnFailure): Run {
  return async (ctx, values, args) => {
    try {
      return await run(ctx, values, args);
    } catch (err) {
      if (capfiltExitCode(err) !== 2) return onFailure(err, ctx.io);
      ctx.io.err(`blip capfilt: ${(err as Error).message}`);
      if (isVlError(err, 'INVALID_ARGUMENT')) ctx.io.err('(add --help for usage)');
      return 2;
    }
  };
}

function capfiltSpec(onFailure: OnFailure): ModelCommandSpec {
  return {
    name: 'capfilt',
    description:
      'CapFilt: caption every image, filter original and synthetic captions with ITM (+ITC), write the cleaned dataset and a report',
    arguments: '[data...]',
    options: [...OPTIONS, ...QUEUE_OPTIONS],
    help: HELP,
    run: guarded(capfiltCommand, onFailure),
    subcommands: [
      {
        name: 'merge',
        description: 'merge the output folders of the `--shard i/n` runs of one command into what the unsharded run writes',
        arguments: '<shard-dirs...>',
        options: [{ flags: '--out <dir>', description: 'output folder of the merged dataset and report' }],
        run: guarded(mergeCommand, onFailure),
      },
      {
        name: 'worker',
        description:
          'take items of a queued CapFilt job (--queue, --job) until the job is finished or SIGTERM; needs the images and the shared --out folder',
        options: WORKER_OPTIONS,
        help: WORKER_HELP,
        run: guarded((ctx, values) => workerCommand(ctx, values), onFailure),
      },
      {
        name: 'status',
        description: 'progress of a queued CapFilt job: items by state, records done, workers, ETA',
        options: [QUEUE, JOB],
        run: guarded((ctx, values) => statusCommand(ctx, values), onFailure),
      },
    ],
  };
}

/** CapFilt as BLIP's own command in the model contract (`vl capfilt blip …`, `blip capfilt …`). */
export const capfiltCommandSpec: ModelCommandSpec = capfiltSpec((err, io) => {
  const text = err instanceof VlError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err);
  io.err(`blip capfilt: ${text}`);
  return 1;
});

/**
 * Runs `blip capfilt <argv>` in-process, parsed as the CLI parses it; returns the exit code (0, 2 or 3)
 * and throws a failure instead of exiting 1, so a caller sees the error itself.
 */
export async function runCapfiltCli(argv: readonly string[], io: Io = processIo): Promise<number> {
  let failure: { err: unknown } | undefined;
  const spec = capfiltSpec((err) => ((failure = { err }), 1));
  const state: ProgramState = { code: 0 };
  const program = createProgram('blip', spec.description, io);
  addModelCommand(program, spec.name, spec, io, state);
  const code = await runProgram(program, state, [spec.name, ...argv], io);
  if (failure) throw failure.err;
  return code;
}
