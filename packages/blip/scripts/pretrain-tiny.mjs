#!/usr/bin/env node
// Pretrains BLIP `tiny` on the synthetic captioned-scenes dataset for a few minutes on CPU (wasm
// backend), then evaluates held-out retrieval Recall@K and captioning CIDEr-D / BLEU-4 against
// chance, and prints the numbers docs/blip.md reports. Needs `npx tsup` in packages/blip first.
// Deviation from the paper's settings, for a from-scratch run of a few minutes: no momentum
// distillation and no queue (ITC over the batch, CLIP-style). With random initial weights the
// momentum twins are random too, and ITC against them (0.995, or even 0.95, with a 256-item queue)
// stayed near chance for the first few hundred steps; pass `--momentum` runs through
// `blip pretrain` to compare.
// usage: node scripts/pretrain-tiny.mjs [OUT_DIR] [--steps 600] [--backend wasm]
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { writeSynthDataset } from '@vl/core/node';
import { runCli } from '../dist/index.js';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const out = args[0] && !args[0].startsWith('--') ? args[0] : 'runs/blip-tiny-synth';
const steps = flag('steps', '600');
const backend = flag('backend', 'wasm');
const data = join(out, 'data');

if (!existsSync(join(data, 'train.jsonl'))) {
  const s = await writeSynthDataset({ out: data, images: 2000, seed: 0, imageSize: 64, captionsPerImage: 3 });
  console.log(`synthetic data: ${s.splits.train} train / ${s.splits.val} val / ${s.splits.test} test images in ${data}`);
}
const t0 = Date.now();
const run = (argv) =>
  runCli(argv).then((code) => {
    if (code !== 0) process.exit(code);
  });
await run([
  'pretrain',
  '--data',
  data,
  '--out',
  join(out, 'model'),
  '--image-size',
  '64',
  '--batch-size',
  '32',
  '--max-steps',
  steps,
  '--no-momentum',
  '--lr',
  '1e-3',
  '--backend',
  backend,
]);
console.log(`pretraining wall time ${((Date.now() - t0) / 60000).toFixed(1)} min`);
await run([
  'eval',
  '--model',
  join(out, 'model'),
  '--data',
  join(data, 'test.jsonl'),
  '--beams',
  '3',
  '--out',
  join(out, 'eval.json'),
  '--backend',
  backend,
]);
