#!/usr/bin/env node
// The CapFilt demo (`npm run demo`): makes the synthetic captioned-scenes dataset with 30% noisy
// training captions, pretrains a tiny captioner + filter on the clean split, runs `blip capfilt` on
// the noisy split, and prints the precision and recall of noise removal (from the recorded noise
// labels) and the held-out retrieval Recall@1 of a tiny model trained on the noisy vs the cleaned
// captions. Uses the built dist files (run after `nx run-many -t build`); deterministic by seed.
// usage: node packages/blip/scripts/demo.mjs [OUT_DIR (packages/blip/runs/capfilt-demo)] [--reuse] [--backend wasm]
//        [--images 1000] [--filter-steps 800] [--downstream-steps 600]
// Starts from an empty OUT_DIR unless --reuse (then finished steps are picked up where they stopped).
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, rm } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSynthDataset } from '@vl/core/node';
import { runCli } from '../dist/cli.js';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
// Default under packages/blip/runs/ (git-ignored), wherever the script is started from.
const out = args[0] && !args[0].startsWith('--') ? args[0] : fileURLToPath(new URL('../runs/capfilt-demo', import.meta.url));
const backend = flag('backend', 'wasm');
const images = Number(flag('images', '1000'));
const filterSteps = flag('filter-steps', '800');
const downstreamSteps = flag('downstream-steps', '600');
const data = join(out, 'data');
const t0 = Date.now();
const clock = () => `${((Date.now() - t0) / 1000).toFixed(0)}s`;
const step = (msg) => console.log(`[${clock()}] ${msg}`);
const quietIo = { out: () => {}, err: (l) => process.stderr.write(`${l}\n`) };
const run = async (argv, io = quietIo) => {
  const code = await runCli(argv, io);
  if (code !== 0) {
    console.error(`blip ${argv.join(' ')} exited with ${code}`);
    process.exit(code);
  }
};
// capfilt runs as the user runs it: the built executable, in a child process.
const CLI = fileURLToPath(new URL('../bin/blip.js', import.meta.url));
const runCapfilt = (argv) => {
  const r = spawnSync(process.execPath, [CLI, ...argv], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (r.status !== 0) {
    console.error(`blip ${argv.join(' ')} exited with ${r.status}`);
    process.exit(r.status ?? 1);
  }
  return r.stdout.trim().split('\n');
};

// Only the folders this script makes are removed, never OUT_DIR itself.
if (!args.includes('--reuse'))
  for (const d of ['data', 'filter-model', 'capfilt', 'downstream-noisy', 'downstream-cleaned'])
    await rm(join(out, d), { recursive: true, force: true });

// 1. Data: train is the noisy split (30% of its captions corrupted, labels recorded); val is clean
//    and trains the captioner and the filter; test is clean and measures downstream retrieval.
if (!existsSync(join(data, 'meta.json'))) {
  const s = await writeSynthDataset({
    out: data,
    images,
    seed: 0,
    imageSize: 32,
    captionsPerImage: 3,
    noise: 0.3,
    splits: [0.6, 0.25, 0.15],
  });
  step(
    `synthetic data: ${s.splits.train} noisy train / ${s.splits.val} clean val / ${s.splits.test} test images, ${s.noisyCaptions.total} of ${s.trainCaptions} train captions noisy`,
  );
}
const common = [
  '--vocab',
  join(data, 'vocab.txt'),
  '--image-size',
  '32',
  '--batch-size',
  '32',
  '--no-momentum',
  '--lr',
  '1e-3',
  '--seed',
  '0',
  '--quiet',
  '--backend',
  backend,
];

// 2. Captioner + filter: one tiny BLIP pretrained (ITC + ITM with random negatives + LM) on the clean split.
const filterDir = join(out, 'filter-model');
await run([
  'pretrain',
  '--train',
  join(data, 'val.jsonl'),
  '--out',
  filterDir,
  '--max-steps',
  filterSteps,
  '--negatives',
  'random',
  ...common,
]);
step(`captioner + filter pretrained on the clean split (${filterSteps} steps)`);

// 3. CapFilt on the noisy split: 1 synthetic caption per image; ITM + ITC score; keep-rate 0.7
//    calibrated on the first 200 records (the noise rate is not known to CapFilt).
const cf = join(out, 'capfilt');
const cfArgs = [
  'capfilt',
  '--data',
  join(data, 'train.jsonl'),
  '--out',
  cf,
  '--captioner',
  join(filterDir, 'captioning'),
  '--filter',
  join(filterDir, 'retrieval'),
  '--num-captions',
  '1',
  '--itc',
  '--keep-rate',
  '0.7',
  '--calibrate-on',
  '200',
  '--batch-size',
  '16',
  '--seed',
  '0',
  '--quiet',
  '--backend',
  backend,
];
const cfLines = runCapfilt(cfArgs);
step(`capfilt: ${cfLines[0]}`);

// Noise-removal precision/recall over the original captions, from the journal (every caption's score
// and decision) and the noise labels the generator recorded.
const noiseById = new Map();
for (const line of readFileSync(join(data, 'train.jsonl'), 'utf8').split('\n'))
  if (line) {
    const r = JSON.parse(line);
    noiseById.set(
      `train.jsonl:${noiseById.size + 1}`,
      r.noise.map((n) => n !== null),
    );
  }
let tp = 0,
  fp = 0,
  fn = 0,
  tn = 0;
const lines = readFileSync(join(cf, 'journal.jsonl'), 'utf8').split('\n').filter(Boolean).slice(1);
for (const line of lines)
  for (const rec of JSON.parse(line).p.records) {
    const noisy = noiseById.get(rec.key) ?? [];
    (rec.original ?? []).forEach((c, i) => {
      const removed = !c.kept;
      if (removed && noisy[i]) tp++;
      else if (removed) fp++;
      else if (noisy[i]) fn++;
      else tn++;
    });
  }
const precision = tp / Math.max(1, tp + fp);
const recall = tp / Math.max(1, tp + fn);

// 4. Downstream: the same tiny model (ITC only) trained on the noisy captions and on the cleaned
//    ones, held-out text→image and image→text Recall@1 on the clean test split.
await copyFile(join(cf, 'train.jsonl'), join(data, 'train.cleaned.jsonl')); // image paths are relative to the data folder
const downstream = {};
for (const [name, file] of [
  ['noisy', 'train.jsonl'],
  ['cleaned', 'train.cleaned.jsonl'],
]) {
  const dir = join(out, `downstream-${name}`);
  await run(['pretrain', '--train', join(data, file), '--out', dir, '--max-steps', downstreamSteps, '--itm', '0', '--lm', '0', ...common]);
  const evalOut = join(dir, 'eval.json');
  await run([
    'eval',
    '--model',
    dir,
    '--data',
    join(data, 'test.jsonl'),
    '--beams',
    '1',
    '--max-length',
    '8',
    '--out',
    evalOut,
    '--quiet',
    '--backend',
    backend,
  ]);
  const r = JSON.parse(readFileSync(evalOut, 'utf8'));
  downstream[name] = r.retrieval;
  step(
    `downstream model on ${name} captions: text→image R@1 ${r.retrieval.textToImage[1].toFixed(1)}%, image→text R@1 ${r.retrieval.imageToText[1].toFixed(1)}%`,
  );
}

const pct = (x) => `${(100 * x).toFixed(1)}%`;
console.log('');
console.log('CapFilt demo results');
console.log(
  `  noise removal (original training captions): precision ${pct(precision)}, recall ${pct(recall)}  (removed ${tp + fp}: ${tp} noisy + ${fp} clean; kept ${fn} noisy)`,
);
console.log(
  `  noisy captions in the data: before ${pct((tp + fn) / (tp + fp + fn + tn))}, among kept originals ${pct(fn / Math.max(1, fn + tn))}`,
);
for (const n of ['noisy', 'cleaned']) {
  const r = downstream[n];
  console.log(
    `  retrieval on test, model trained on ${n.padEnd(7)} captions: text→image R@1 ${r.textToImage[1].toFixed(1)}%, image→text R@1 ${r.imageToText[1].toFixed(1)}% (chance ${r.chance.textToImageR1.toFixed(1)}%)`,
  );
}
console.log(`  CapFilt report: ${join(cf, 'report.md')}; total ${clock()}`);
