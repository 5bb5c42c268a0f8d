// `blip pretrain` and `blip eval`: argument parsing, a progress bar on stderr, and a summary on stdout.
import { join } from 'node:path';
import { validateConfig } from '@vl/core';
import { readJsonFile } from '@vl/core/node';
import { SingleBar } from 'cli-progress';
import { type Io, num, parse, startRuntime, str, UsageError, backendOpt } from './program.js';
import { pretrainingOptionsSchema } from './pretraining.js';
import { evaluateBlip, pretrainBlip } from './train.js';

export const PRETRAIN_HELP = `usage: blip pretrain --data DIR | --train FILE --vocab FILE   --out DIR
                     [--preset tiny|base] [--image-size N] [--batch-size 32] [--epochs 1 | --max-steps N]
                     [--lr 1e-3] [--warmup N] [--weight-decay 0.05] [--seed 0] [--checkpoint-every 200]
                     [--config pretraining.json] [--queue-size N] [--momentum 0.995] [--alpha 0.4] [--no-momentum] [--no-queue]
                     [--negatives hard|random] [--no-share-decoder] [--itc W] [--itm W] [--lm W] [--fresh]
  --data DIR: a \`vl data synth\` folder (train.jsonl + vocab.txt). Writes DIR/out: ckpt/ (resumable),
  metrics.jsonl, pretrain/ (full model), captioning/ and retrieval/ (Hugging Face layouts).
  An objective weight of 0 switches it off.`;

export const EVAL_HELP = `usage: blip eval --model OUT_DIR --data test.jsonl [--beams 3] [--max-length 30] [--out report.json] [--json]
  retrieval Recall@1/5/10 (ITC) both ways and captioning CIDEr-D / BLEU-4 on held-out data, with chance baselines`;

function bar(label: string, quiet: boolean) {
  if (quiet) return { update: (_d: number, _t: number, _p?: object) => {}, stop: () => {} };
  const b = new SingleBar({
    format: `${label} [{bar}] {value}/{total} {eta}s {info}`,
    stream: process.stderr,
    noTTYOutput: !process.stderr.isTTY,
    notTTYSchedule: 5000,
    hideCursor: Boolean(process.stderr.isTTY),
  });
  let started = false;
  return {
    update(done: number, total: number, payload: object = {}) {
      if (!started) b.start(total, 0, { info: '' });
      started = true;
      b.update(done, payload);
    },
    stop: () => started && b.stop(),
  };
}

const fmt = (o: Record<string, number>) =>
  Object.entries(o)
    .map(([k, v]) => `${k} ${v.toFixed(3)}`)
    .join(', ');

export async function pretrainCommand(argv: string[], io: Io): Promise<number> {
  const p = parse(argv, {
    data: { type: 'string' },
    train: { type: 'string' },
    vocab: { type: 'string' },
    out: { type: 'string' },
    preset: { type: 'string' },
    'image-size': { type: 'string' },
    'batch-size': { type: 'string' },
    epochs: { type: 'string' },
    'max-steps': { type: 'string' },
    lr: { type: 'string' },
    warmup: { type: 'string' },
    'weight-decay': { type: 'string' },
    seed: { type: 'string' },
    'checkpoint-every': { type: 'string' },
    config: { type: 'string' },
    'queue-size': { type: 'string' },
    momentum: { type: 'string' },
    alpha: { type: 'string' },
    'no-momentum': { type: 'boolean' },
    'no-queue': { type: 'boolean' },
    negatives: { type: 'string' },
    'no-share-decoder': { type: 'boolean' },
    itc: { type: 'string' },
    itm: { type: 'string' },
    lm: { type: 'string' },
    fresh: { type: 'boolean' },
    quiet: { type: 'boolean' },
    ...backendOpt,
  });
  if (p.values.help) return (io.out(PRETRAIN_HELP), 0);
  const data = str(p, 'data');
  const train = str(p, 'train') ?? (data ? join(data, 'train.jsonl') : undefined);
  const vocab = str(p, 'vocab') ?? (data ? join(data, 'vocab.txt') : undefined);
  if (!train || !vocab) throw new UsageError('give --data DIR, or --train and --vocab');
  const preset = str(p, 'preset') ?? 'tiny';
  if (preset !== 'tiny' && preset !== 'base') throw new UsageError('--preset must be tiny or base');
  const fromFile = str(p, 'config') ? ((await readJsonFile(str(p, 'config') as string)) as Record<string, unknown>) : {};
  const objectives: Record<string, { weight: number }> = {};
  for (const k of ['itc', 'itm', 'lm']) if (p.values[k] !== undefined) objectives[k] = { weight: num(p, k, 1, { min: 0 }) };
  const opts: Record<string, unknown> = { ...fromFile };
  if (Object.keys(objectives).length) opts.objectives = { ...(fromFile.objectives as object | undefined), ...objectives };
  if (p.values['queue-size'] !== undefined) opts.queueSize = num(p, 'queue-size', 0, { int: true, min: 1 });
  if (p.values.momentum !== undefined) opts.momentum = num(p, 'momentum', 0.995, { min: 0 });
  if (p.values['no-momentum']) Object.assign(opts, { momentumDistillation: false, useQueue: false });
  if (p.values['no-queue']) opts.useQueue = false;
  if (p.values.negatives !== undefined) opts.negatives = str(p, 'negatives');
  if (p.values['no-share-decoder']) opts.shareDecoder = false;
  const pretraining = validateConfig(opts, pretrainingOptionsSchema, str(p, 'config') ?? 'pretraining options');
  await startRuntime(p);
  const progress = bar('pretrain', Boolean(p.values.quiet));
  const summary = await pretrainBlip({
    train,
    vocab,
    out: str(p, 'out', true) as string,
    preset,
    imageSize: p.values['image-size'] !== undefined ? num(p, 'image-size', 0, { int: true, min: 8 }) : undefined,
    pretraining,
    batchSize: num(p, 'batch-size', 32, { int: true, min: 2 }),
    epochs: num(p, 'epochs', 1, { int: true, min: 1 }),
    maxSteps: p.values['max-steps'] !== undefined ? num(p, 'max-steps', 0, { int: true, min: 1 }) : undefined,
    lr: num(p, 'lr', 1e-3, { min: 0 }),
    warmupSteps: p.values.warmup !== undefined ? num(p, 'warmup', 0, { int: true, min: 0 }) : undefined,
    weightDecay: num(p, 'weight-decay', 0.05, { min: 0 }),
    seed: num(p, 'seed', 0, { int: true }),
    checkpointEvery: num(p, 'checkpoint-every', 200, { int: true, min: 1 }),
    alpha: num(p, 'alpha', 0.4, { min: 0 }),
    resume: !p.values.fresh,
    onProgress: (done, total, r) => progress.update(done, total, { info: fmt(r.losses) }),
  });
  progress.stop();
  io.out(`pretrained ${summary.steps} steps in ${summary.seconds.toFixed(1)}s`);
  io.out(`losses, first 10% of steps: ${fmt(summary.first)}`);
  io.out(`losses, last 10% of steps:  ${fmt(summary.last)}`);
  io.out(`wrote ${summary.out.pretrain}, ${summary.out.captioning}, ${summary.out.retrieval}, ${summary.out.metrics}`);
  return 0;
}

export async function evalCommand(argv: string[], io: Io): Promise<number> {
  const p = parse(argv, {
    model: { type: 'string' },
    data: { type: 'string' },
    beams: { type: 'string' },
    'max-length': { type: 'string' },
    out: { type: 'string' },
    json: { type: 'boolean' },
    quiet: { type: 'boolean' },
    ...backendOpt,
  });
  if (p.values.help) return (io.out(EVAL_HELP), 0);
  const model = str(p, 'model', true) as string;
  const data = str(p, 'data', true) as string;
  await startRuntime(p);
  const progress = bar('caption', Boolean(p.values.quiet));
  const r = await evaluateBlip({
    model,
    data,
    numBeams: num(p, 'beams', 3, { int: true, min: 1 }),
    maxLength: num(p, 'max-length', 30, { int: true, min: 2 }),
    out: str(p, 'out'),
    onProgress: (d, t) => progress.update(d, t),
  });
  progress.stop();
  if (p.values.json) {
    io.out(JSON.stringify(r, null, 2));
    return 0;
  }
  const pct = (x: number | undefined) => `${(x ?? 0).toFixed(1)}%`;
  io.out(`${r.images} images, ${r.texts} captions`);
  io.out(
    `text→image R@1 ${pct(r.retrieval.textToImage[1])} R@5 ${pct(r.retrieval.textToImage[5])} R@10 ${pct(r.retrieval.textToImage[10])} (chance R@1 ${pct(r.retrieval.chance.textToImageR1)})`,
  );
  io.out(
    `image→text R@1 ${pct(r.retrieval.imageToText[1])} R@5 ${pct(r.retrieval.imageToText[5])} R@10 ${pct(r.retrieval.imageToText[10])} (chance R@1 ${pct(r.retrieval.chance.imageToTextR1)})`,
  );
  io.out(
    `captioning CIDEr-D ${r.captioning.cider.toFixed(3)} BLEU-4 ${r.captioning.bleu4.toFixed(3)} (chance: another image's caption, CIDEr-D ${r.captioning.chance.cider.toFixed(3)} BLEU-4 ${r.captioning.chance.bleu4.toFixed(3)})`,
  );
  for (const e of r.captioning.examples) io.out(`  ${e.image}: "${e.caption}" (ref: "${e.references[0]}")`);
  return 0;
}
