// The `blip` command (`npx @vl/blip …`): verify a checkpoint against reference outputs, caption
// images, match images with texts, pretrain on a caption dataset, evaluate retrieval and captioning.
// Arguments are parsed with node:util's parseArgs; each command returns its exit code.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { type BackendChoice, formatParityReport, initRuntime, Rng } from '@vl/core';
import { BlipForConditionalGeneration, BlipForImageTextRetrieval } from './modeling.js';
import { EVAL_HELP, evalCommand, PRETRAIN_HELP, pretrainCommand } from './train-cli.js';
import { verifyCheckpoint } from './verify.js';

/** Where the command prints; tests pass their own. */
export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

export const processIo: Io = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
};

export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;
export type Parsed = { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] };

export function parse(argv: string[], options: Options, allowPositionals = false): Parsed {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true }) as Parsed;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export function str(p: Parsed, name: string, required = false): string | undefined {
  const v = p.values[name];
  if (v === undefined) {
    if (required) throw new UsageError(`--${name} is required`);
    return undefined;
  }
  return String(v);
}

export function num(p: Parsed, name: string, fallback: number, check: { int?: boolean; min?: number } = {}): number {
  const raw = p.values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || (check.int && !Number.isInteger(n)) || (check.min !== undefined && n < check.min)) {
    throw new UsageError(`--${name} must be ${check.int ? 'an integer' : 'a number'}${check.min !== undefined ? ` ≥ ${check.min}` : ''}, got '${String(raw)}'`);
  }
  return n;
}

const BACKENDS = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'];

export async function startRuntime(p: Parsed): Promise<void> {
  const b = str(p, 'backend');
  if (b !== undefined && !BACKENDS.includes(b)) throw new UsageError(`--backend must be one of ${BACKENDS.join(', ')}`);
  await initRuntime(b ? { backend: b as BackendChoice } : {});
}

export const backendOpt: Options = { backend: { type: 'string' } };

const HELP: Record<string, string> = {
  '': `usage: blip <command> [options]

commands:
  verify    compare a checkpoint's outputs with reference outputs (fixture format)
  caption   caption images (BlipForConditionalGeneration checkpoint)
  match     ITM probability and ITC similarity of images × texts (BlipForImageTextRetrieval)
  pretrain  pretrain BLIP (ITC + ITM + LM) on a JSONL caption dataset, e.g. \`vl data synth\`'s
  eval      retrieval Recall@K and captioning BLEU/CIDEr-D of a pretraining checkpoint

every command takes --backend tfjs-node-gpu|tfjs-node|wasm|cpu and -h for its options`,
  verify: `usage: blip verify --model DIR --inputs inputs.json --expected expected.json [--tol 1e-4] [--json]
  computes every output expected.json names with the call its meta.calls describes, prints the max
  abs diff per output, and exits 1 when any float output is past --tol or any token id differs`,
  caption: `usage: blip caption --model DIR [--prompt 'a picture of '] [--beams 3] [--max-length 30]
                    [--min-length 0] [--sample --top-p 0.9 --seed 0] [--json] IMAGE...`,
  match: `usage: blip match --model DIR --text TEXT [--text TEXT…] [--json] IMAGE...`,
};

async function verify(argv: string[], io: Io): Promise<number> {
  const p = parse(argv, { model: { type: 'string' }, inputs: { type: 'string' }, expected: { type: 'string' }, tol: { type: 'string' }, json: { type: 'boolean' }, ...backendOpt });
  if (p.values.help) return help(io, 'verify');
  const opts = { model: str(p, 'model', true) as string, inputs: str(p, 'inputs', true) as string, expected: str(p, 'expected', true) as string, tol: num(p, 'tol', 1e-4, { min: 0 }) };
  await startRuntime(p);
  const { modelClass, report } = await verifyCheckpoint(opts);
  if (p.values.json) io.out(JSON.stringify({ modelClass, ...report }, (_k, v: unknown) => (v === Infinity ? 'inf' : v), 2));
  else io.out(`${modelClass} ${opts.model}\n${formatParityReport(report)}`);
  return report.passed ? 0 : 1;
}

async function caption(argv: string[], io: Io): Promise<number> {
  const p = parse(
    argv,
    {
      model: { type: 'string' },
      prompt: { type: 'string' },
      beams: { type: 'string' },
      'max-length': { type: 'string' },
      'min-length': { type: 'string' },
      sample: { type: 'boolean' },
      'top-p': { type: 'string' },
      seed: { type: 'string' },
      json: { type: 'boolean' },
      ...backendOpt,
    },
    true,
  );
  if (p.values.help) return help(io, 'caption');
  const model = str(p, 'model', true) as string;
  if (p.positionals.length === 0) throw new UsageError('give at least one image');
  const sample = Boolean(p.values.sample);
  const options = {
    prompt: str(p, 'prompt') ?? '',
    numBeams: sample ? 1 : num(p, 'beams', 3, { int: true, min: 1 }),
    maxLength: num(p, 'max-length', 30, { int: true, min: 2 }),
    minLength: num(p, 'min-length', 0, { int: true, min: 0 }),
    doSample: sample,
    topP: num(p, 'top-p', 0.9, { min: 0 }),
    rng: sample ? new Rng(num(p, 'seed', 0, { int: true })) : undefined,
  };
  await startRuntime(p);
  const captioner = await BlipForConditionalGeneration.fromPretrained(model);
  try {
    const captions = await captioner.caption(p.positionals, options);
    p.positionals.forEach((img, i) => io.out(p.values.json ? JSON.stringify({ image: img, caption: captions[i] }) : `${img}\t${captions[i]}`));
  } finally {
    captioner.dispose();
  }
  return 0;
}

async function match(argv: string[], io: Io): Promise<number> {
  const p = parse(argv, { model: { type: 'string' }, text: { type: 'string', multiple: true }, json: { type: 'boolean' }, ...backendOpt }, true);
  if (p.values.help) return help(io, 'match');
  const modelDir = str(p, 'model', true) as string;
  const texts = (p.values.text as string[] | undefined) ?? [];
  if (texts.length === 0) throw new UsageError('give at least one --text');
  if (p.positionals.length === 0) throw new UsageError('give at least one image');
  await startRuntime(p);
  const model = await BlipForImageTextRetrieval.fromPretrained(modelDir);
  try {
    const r = await model.match(p.positionals, texts);
    if (p.values.json) {
      io.out(JSON.stringify({ images: p.positionals, texts, ...r }));
    } else {
      io.out(['image', 'text', 'itm', 'itc'].join('\t'));
      p.positionals.forEach((img, i) => texts.forEach((t, j) => io.out(`${img}\t${t}\t${r.itm[i]?.[j]?.toFixed(4)}\t${r.itc[i]?.[j]?.toFixed(4)}`)));
    }
  } finally {
    model.dispose();
  }
  return 0;
}

function help(io: Io, command: string): number {
  io.out({ ...HELP, pretrain: PRETRAIN_HELP, eval: EVAL_HELP }[command] ?? HELP[''] ?? '');
  return 0;
}

const COMMANDS: Record<string, (argv: string[], io: Io) => Promise<number>> = {
  verify,
  caption,
  match,
  pretrain: pretrainCommand,
  eval: evalCommand,
};

/** Runs `blip <argv>`; returns the exit code (2 for usage errors). */
export async function runCli(argv: string[], io: Io = processIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') return help(io, '');
  const run = COMMANDS[command];
  if (!run) {
    io.err(`unknown command '${command}'\n\n${HELP['']}`);
    return 2;
  }
  try {
    return await run(rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`blip ${command}: ${err.message}\n\n${{ ...HELP, pretrain: PRETRAIN_HELP, eval: EVAL_HELP }[command] ?? ''}`);
      return 2;
    }
    throw err;
  }
}
