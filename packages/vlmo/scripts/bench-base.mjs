#!/usr/bin/env node
// A VLMo-base forward (random weights, 224 px, batch 1) in vl and in PyTorch in the same run: the image-only
// route (`encodeImage(…, { vlffn: false })`, the official infer_image_ft: V-FFN in all 12 layers) and the
// fusion route (`fuse`, the official infer: 40 text + 197 image tokens, V/L-FFN below layer 10, VL-FFN
// above, pooler). The PyTorch side is bench_base_torch.py, a minimal re-implementation of the official
// module (which needs sacred, Lightning, timm and transformers) that first checks itself against the
// official code's outputs on fixtures/vlmo-official/vlmo-seed0. vl runs twice, each in its own process:
// stock wasm (core's kernels, `accel: false`) and wasm with @vl/accel's native kernels when they are built
// (`npm run native:build -w @vl/accel`). Each timing is the fastest of --reps calls after one warm-up (the
// one other jobs disturbed least; the medians are written too); ratios are of the fastest.
// Writes docs/vlmo-bench.json with the load average before, between and after.
//
//   npm run build && nice -n 10 node packages/vlmo/scripts/bench-base.mjs [--reps 5] [--out docs/vlmo-bench.json]
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, Vlmo, vlmoPreset } from '@vl/vlmo';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..', '..');
const reps = Number(arg('reps', '5'));
const out = resolve(root, arg('out', 'docs/vlmo-bench.json'));
const python = arg('python', '/usr/bin/python3');

/** One vl engine in this process: seconds per call (the --vl-only child). */
async function timeVl(accel) {
  const info = await initRuntime({ backend: 'wasm', accel });
  const model = new Vlmo(vlmoPreset('base')).eval();
  const pixels = tf.randomNormal([1, 3, 224, 224], 0, 1, 'float32', 1);
  const ids = tf.randomUniform([1, 40], 1000, 30000, 'int32', 2);
  const mask = tf.ones([1, 40], 'int32');
  const calls = {
    image: () => model.encodeImage(pixels, { vlffn: false }),
    fusion: () => model.fuse(pixels, ids, mask),
  };
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const seconds = {};
  const medians = {};
  for (const [name, fn] of Object.entries(calls)) {
    const timed = async () => {
      const t0 = performance.now();
      const r = fn();
      const tensors = Object.values(r).filter((t) => t instanceof tf.Tensor);
      await Promise.all(tensors.map((t) => t.data())); // wait for the results
      const s = (performance.now() - t0) / 1000;
      tf.dispose(tensors);
      return s;
    };
    await timed(); // warm-up (wasm kernels)
    const times = [];
    for (let i = 0; i < reps; i++) times.push(await timed());
    // The fastest call is the one other jobs on the machine disturbed least; the median is kept too.
    seconds[name] = Math.min(...times);
    medians[name] = median(times);
  }
  const numParams = model.numParameters();
  model.dispose();
  tf.dispose([pixels, ids, mask]);
  return { accel: info.accel, seconds, medians, numParams };
}

if (process.argv.includes('--vl-only')) {
  console.log(JSON.stringify(await timeVl(arg('accel', '0') === '1')));
  process.exit(0);
}

const load = { before: loadavg() };
const engines = {};
for (const [name, accel] of [
  ['wasm', '0'],
  ['wasm + accel', '1'],
]) {
  const r = JSON.parse(
    execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--vl-only', '--accel', accel, '--reps', String(reps)], {
      encoding: 'utf8',
    }),
  );
  if (accel === '1' && !r.accel.active) {
    console.log(`skipped ${name}: ${r.accel.note}`);
    continue;
  }
  engines[name] = r;
  console.log(`vl (${name}): image ${r.seconds.image.toFixed(2)} s, fusion ${r.seconds.fusion.toFixed(2)} s`);
}
load.between = loadavg();
const calls = { image: true, fusion: true };
const numParams = engines.wasm.numParams;

const torchOut = JSON.parse(
  execFileSync(
    python,
    [
      join(here, 'bench_base_torch.py'),
      '--check',
      join(root, 'fixtures', 'vlmo-official', 'vlmo-seed0'),
      '--reps',
      String(reps),
      '--threads',
      '1,2',
    ],
    { encoding: 'utf8', maxBuffer: 16 << 20 },
  ),
);
load.after = loadavg();
const worst = Math.max(...Object.values(torchOut.check));
if (!(worst <= 1e-4)) throw new Error(`the PyTorch re-implementation is off the official outputs by ${worst}`);
const rows = Object.keys(calls).map((name) => {
  const row = { call: name };
  for (const [engine, r] of Object.entries(engines)) row[`vl ${engine}`] = r.seconds[name];
  for (const [threads, s] of Object.entries(torchOut.seconds)) row[`torch ${threads}`] = s[name];
  for (const [engine, r] of Object.entries(engines)) row[`vl ${engine} (median)`] = r.medians[name];
  for (const [threads, s] of Object.entries(torchOut.medians)) row[`torch ${threads} (median)`] = s[name];
  for (const [engine, r] of Object.entries(engines)) {
    for (const [threads, s] of Object.entries(torchOut.seconds)) row[`vl ${engine} / torch ${threads}`] = r.seconds[name] / s[name];
  }
  return row;
});
const result = {
  date: new Date().toISOString(),
  script: 'packages/vlmo/scripts/bench-base.mjs (+ bench_base_torch.py)',
  node: process.version,
  cpu: `${cpus()[0]?.model ?? '?'} (${cpus().length} cores)`,
  engines: Object.fromEntries(Object.entries(engines).map(([k, r]) => [k, { accel: r.accel }])),
  torch: torchOut.torch,
  model: `VLMo-base (vlmoPreset('base'): 224 px, patch 16, width 768, 12 layers, VL-FFN from 10), random weights, batch 1; vl ${numParams} parameters with the pretraining heads, torch ${torchOut.parameters} without`,
  torchCheck: { fixture: 'fixtures/vlmo-official/vlmo-seed0', maxAbsDiff: torchOut.check },
  reps,
  loadAverage: load,
  rows,
};
writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
console.log(JSON.stringify(rows, null, 1));
console.log(`wrote ${out}`);
