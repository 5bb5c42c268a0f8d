#!/usr/bin/env node
// `npm run bench:capfilt` (issue 16): CapFilt on BLIP-base (384 px, random weights, the same model folders
// and the same 400×300 PNGs for both engines), `blip capfilt` against Hugging Face transformers v4.30.2 on
// PyTorch CPU (tools/refbench/capfilt_torch.py) in one run, alternating engines rep by rep so machine load
// hits both alike. Writes docs/benchmarks-capfilt.json and the generated section of docs/benchmarks.md.
// The reference needs Debian's python3-torch and the transformers source (tools/refbench/README.md); when
// either is missing it says so and reports vl alone.
// usage: node packages/blip/scripts/bench-capfilt.mjs [--images 32] [--batch-size 8] [--reps 1]
//        [--transformers-src DIR (default $VL_TRANSFORMERS_SRC or tools/refbench/transformers-src)]
//        [--dir DIR (inputs, reused)] [--no-write]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initRuntime } from '@vl/core';
import { capfiltBenchData } from './capfilt-bench-data.mjs';

const args = process.argv.slice(2);
const flag = (name, fallback) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : fallback);
const root = fileURLToPath(new URL('../../../', import.meta.url));
const images = Number(flag('images', '32'));
const batchSize = Number(flag('batch-size', '8'));
const reps = Number(flag('reps', '1'));
const dir = flag('dir', join(tmpdir(), 'vl-bench-capfilt'));
const transformersSrc = flag('transformers-src', process.env.VL_TRANSFORMERS_SRC ?? join(root, 'tools/refbench/transformers-src'));
const python = '/usr/bin/python3';
const BIN = fileURLToPath(new URL('../bin/blip.js', import.meta.url));

const runtime = await initRuntime({});
const kernels = {
  backend: runtime.choice,
  accel: runtime.accel?.active ? runtime.accel.note : `not active (${runtime.accel?.note ?? 'not installed'})`,
  int8: await import('@vl/accel').then((m) => m.accelStatus().info?.int8 ?? null).catch(() => null),
};
// The --int8 arm needs the native int8 kernels; without them it is left out (and says so).
const int8Arm = kernels.int8 !== null && !args.includes('--no-int8');
console.log(`vl: ${kernels.backend}; ${kernels.accel}`);
const load0 = loadavg()[0];
console.log(`making the inputs in ${dir} (reused when present) ...`);
const paths = await capfiltBenchData(dir, images);

/** GFLOP per image that no schedule avoids: both vision towers and the image's cross-attention keys and values
 * in both models (decoding and the captions' text side come on top). Multiply-adds count 2. */
function fixedGflopsPerImage(config) {
  const v = config.vision_config;
  const t = config.text_config;
  const patches = (v.image_size / v.patch_size) ** 2;
  const tokens = patches + 1;
  const layer = 2 * tokens * (4 * v.hidden_size ** 2 + 2 * v.hidden_size * v.intermediate_size) + 4 * tokens ** 2 * v.hidden_size;
  const tower = v.num_hidden_layers * layer + 2 * patches * v.num_channels * v.patch_size ** 2 * v.hidden_size;
  const crossKeysValues = t.num_hidden_layers * 2 * 2 * tokens * t.encoder_hidden_size * t.hidden_size;
  return (2 * (tower + crossKeysValues)) / 1e9;
}
const fixedGflops = fixedGflopsPerImage(JSON.parse(readFileSync(join(paths.captioner, 'config.json'), 'utf8')));
// This machine's fp32 FMA peak in the same run (a C loop; needs a C compiler): what fp32 could reach at best.
const peak = await import('@vl/cli')
  .then((m) => m.measurePeak(false, (why) => console.log(why)))
  .catch((e) => (console.log(`no FMA peak: ${e.message}`), null));
if (peak)
  console.log(
    `fp32 FMA peak: ${peak.allThreadsGflops.toFixed(0)} GFLOP/s (${peak.threads} threads), ${fixedGflops.toFixed(0)} GFLOP per image fixed`,
  );

function referenceMissing() {
  const torch = spawnSync(python, ['-c', 'import torch, numpy, PIL; print(torch.__version__)'], { encoding: 'utf8' });
  if (torch.status !== 0)
    return `PyTorch is not installed for ${python} (apt-get install -y python3-torch python3-numpy python3-pil …, see tools/refbench/README.md)`;
  if (!existsSync(join(transformersSrc, 'transformers')) && !existsSync(join(transformersSrc, 'src', 'transformers')))
    return `no transformers v4.30.2 source at ${transformersSrc} (tools/refbench/README.md says how to extract it)`;
  return null;
}

function runVl(int8 = false) {
  const out = mkdtempSync(join(tmpdir(), 'vl-bench-capfilt-out-'));
  const t0 = performance.now();
  const r = spawnSync(
    process.execPath,
    [
      BIN,
      'capfilt',
      '--data',
      paths.list,
      '--images',
      paths.images,
      '--captioner',
      paths.captioner,
      '--filter',
      paths.filter,
      '--out',
      out,
      '--batch-size',
      String(batchSize),
      '--num-captions',
      '1',
      '--seed',
      '0',
      '--threshold',
      '0.5',
      ...(int8 ? ['--int8'] : []),
    ],
    { encoding: 'utf8', env: { ...process.env } },
  );
  const wall = (performance.now() - t0) / 1000;
  rmSync(out, { recursive: true, force: true });
  if (r.status !== 0) throw new Error(`blip capfilt failed (${r.status}):\n${r.stderr}`);
  const loaded = /models loaded in ([\d.]+)s \(captioner ready at ([\d.]+)s, filter at ([\d.]+)s\)/.exec(r.stderr);
  const processed = /capfilt: (\d+) records in ([\d.]+)s/.exec(r.stderr);
  if (!loaded || !processed) throw new Error(`unexpected blip capfilt output:\n${r.stderr}`);
  const seconds = Number(processed[2]);
  const quantised = /int8: (\d+) linear layers quantised in ([\d.]+)s/.exec(r.stderr);
  if (int8 && !quantised) throw new Error(`blip capfilt --int8 did not report quantising:\n${r.stderr}`);
  return {
    ...(int8 ? { int8Layers: Number(quantised[1]), quantiseSeconds: Number(quantised[2]) } : {}),
    images: Number(processed[1]),
    seconds,
    imagesPerSecond: Number(processed[1]) / seconds,
    loadSeconds: Number(loaded[1]),
    captionerLoadSeconds: Number(loaded[2]),
    filterLoadSeconds: Number(loaded[3]),
    wallSeconds: wall,
  };
}

function runReference() {
  const r = spawnSync(
    python,
    [
      join(root, 'tools/refbench/capfilt_torch.py'),
      transformersSrc,
      '--captioner',
      paths.captioner,
      '--filter',
      paths.filter,
      '--data',
      paths.list,
      '--images',
      paths.images,
      '--batch-size',
      String(batchSize),
      '--max-length',
      '20',
      '--top-p',
      '0.9',
    ],
    { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(cpus().length) } },
  );
  if (r.status !== 0) throw new Error(`the PyTorch reference failed (${r.status}):\n${r.stderr}`);
  const j = JSON.parse(r.stdout.trim().split('\n').pop());
  return {
    images: j.images,
    seconds: j.seconds,
    imagesPerSecond: j.images_per_s,
    loadSeconds: j.load_s,
    threads: j.threads,
    torch: j.torch,
    transformers: j.transformers,
  };
}

const missing = referenceMissing();
if (missing) console.log(`reference: skipped — ${missing}`);
const vlRuns = [];
const int8Runs = [];
const refRuns = [];
for (let i = 0; i < reps; i++) {
  const v = runVl();
  vlRuns.push(v);
  console.log(
    `vl rep ${i + 1}: ${v.imagesPerSecond.toFixed(3)} images/s (${v.seconds.toFixed(1)} s for ${v.images}), models loaded in ${v.loadSeconds.toFixed(1)} s`,
  );
  if (int8Arm) {
    const q = runVl(true);
    int8Runs.push(q);
    console.log(
      `vl --int8 rep ${i + 1}: ${q.imagesPerSecond.toFixed(3)} images/s (${q.seconds.toFixed(1)} s), loaded in ${q.loadSeconds.toFixed(1)} s`,
    );
  }
  if (!missing) {
    const p = runReference();
    refRuns.push(p);
    console.log(
      `reference rep ${i + 1}: ${p.imagesPerSecond.toFixed(3)} images/s (${p.seconds.toFixed(1)} s), loaded in ${p.loadSeconds.toFixed(1)} s`,
    );
  }
}
const best = (runs) => runs.reduce((a, b) => (b.imagesPerSecond > a.imagesPerSecond ? b : a));
const vl = best(vlRuns);
const reference = refRuns.length ? best(refRuns) : null;
const vlInt8 = int8Runs.length ? best(int8Runs) : null;
const result = {
  date: new Date().toISOString(),
  machine: `${cpus()[0]?.model ?? 'unknown CPU'} (${cpus().length} cores), Node ${process.version}`,
  loadAverage: [Number(load0.toFixed(2)), Number(loadavg()[0].toFixed(2))],
  setup: {
    model: 'BLIP-base captioner + filter, 384 px, random weights',
    images,
    imageSize: '400×300 PNG',
    batchSize,
    reps,
    work: 'one nucleus caption per image (top-p 0.9, 20 tokens max), ITM on the original and the synthetic caption',
  },
  kernels,
  peak,
  fixedGflopsPerImage: Number(fixedGflops.toFixed(1)),
  fp32BoundImagesPerSecond: peak ? Number((peak.allThreadsGflops / fixedGflops).toFixed(3)) : null,
  vl,
  vlInt8,
  reference,
  ratio: reference ? Number((vl.imagesPerSecond / reference.imagesPerSecond).toFixed(2)) : null,
  ratioInt8: reference && vlInt8 ? Number((vlInt8.imagesPerSecond / reference.imagesPerSecond).toFixed(2)) : null,
};
console.log(JSON.stringify(result, null, 1));
if (!args.includes('--no-write')) {
  // Written as prettier formats it (format:check covers docs/), so regenerating leaves the tree clean.
  const jsonPath = join(root, 'docs/benchmarks-capfilt.json');
  const prettier = await import('prettier');
  const options = (await prettier.resolveConfig(jsonPath)) ?? {};
  writeFileSync(jsonPath, await prettier.format(JSON.stringify(result), { ...options, filepath: jsonPath }));
  const f = (x, d = 2) => (x === null || x === undefined ? '—' : x.toFixed(d));
  const table = [
    '<!-- bench-capfilt:start (generated by `npm run bench:capfilt`; text outside the markers is kept) -->',
    `${result.date.slice(0, 10)} · ${result.machine} · load average ${result.loadAverage[0]} → ${result.loadAverage[1]} · ${kernels.backend}, ${kernels.accel}`,
    '',
    `| ${images} images, batches of ${batchSize} | vl \`blip capfilt\` | HF transformers ${reference?.transformers ?? '4.30.2'} + PyTorch ${reference?.torch ?? '—'} | ratio |`,
    '| --- | ---: | ---: | ---: |',
    `| images/s (loading excluded) | ${f(vl.imagesPerSecond, 3)} | ${f(reference?.imagesPerSecond, 3)} | ${result.ratio === null ? '—' : `${result.ratio}×`} |`,
    `| seconds for ${images} images | ${f(vl.seconds, 1)} | ${f(reference?.seconds, 1)} | |`,
    `| loading both models, s | ${f(vl.loadSeconds, 1)} (captioner ready at ${f(vl.captionerLoadSeconds, 1)}, filter at ${f(vl.filterLoadSeconds, 1)}) | ${f(reference?.loadSeconds, 1)} | |`,
    ...(vlInt8
      ? [
          `| \`--int8\` images/s (${kernels.int8} kernel) | ${f(vlInt8.imagesPerSecond, 3)} | ${f(reference?.imagesPerSecond, 3)} | ${result.ratioInt8 === null ? '—' : `${result.ratioInt8}×`} |`,
          `| \`--int8\` loading both models + quantising, s | ${f(vlInt8.loadSeconds, 1)} (quantising ${f(vlInt8.quantiseSeconds, 1)}) | | |`,
        ]
      : []),
    ...(peak
      ? [
          `| fp32 bound: FMA peak ${f(peak.allThreadsGflops, 0)} GFLOP/s (same run) ÷ ${f(fixedGflops, 0)} GFLOP per image (vision towers + cross-attention keys/values, both models) | ≤ ${f(result.fp32BoundImagesPerSecond, 3)} | | ${reference ? `${f(result.fp32BoundImagesPerSecond / reference.imagesPerSecond, 2)}×` : '—'} |`,
        ]
      : []),
    '',
    `Best of ${reps} rep(s) per engine, engines alternating. Figures: [benchmarks-capfilt.json](benchmarks-capfilt.json).`,
    '<!-- bench-capfilt:end -->',
  ].join('\n');
  const doc = join(root, 'docs/benchmarks.md');
  const text = readFileSync(doc, 'utf8');
  const re = /<!-- bench-capfilt:start[\s\S]*?<!-- bench-capfilt:end -->/;
  writeFileSync(
    doc,
    re.test(text) ? text.replace(re, table) : `${text.trimEnd()}\n\n## CapFilt on BLIP-base vs Hugging Face on PyTorch\n\n${table}\n`,
  );
  console.log('wrote docs/benchmarks-capfilt.json and docs/benchmarks.md');
}
