#!/usr/bin/env node
// A VLMo-base forward (random weights, 224 px, batch 1) in vl and in PyTorch in the same run: the image-only
// route (`encodeImage(…, { vlffn: false })`, the official infer_image_ft: V-FFN in all 12 layers) and the
// fusion route (`fuse`, the official infer: 40 text + 197 image tokens, V/L-FFN below layer 10, VL-FFN
// above, pooler). The PyTorch side is bench_base_torch.py, a minimal re-implementation of the official
// module (which needs sacred, Lightning, timm and transformers) that first checks itself against the
// official code's outputs on fixtures/vlmo-official/vlmo-seed0. Each timing is the median of --reps calls
// after one warm-up. Writes docs/vlmo-bench.json with the load average before and after.
//
//   npm run build && nice -n 10 node packages/vlmo/scripts/bench-base.mjs [--backend wasm] [--reps 3] [--out docs/vlmo-bench.json]
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
const backend = arg('backend', 'wasm');
const reps = Number(arg('reps', '3'));
const out = resolve(root, arg('out', 'docs/vlmo-bench.json'));
const python = arg('python', '/usr/bin/python3');

const load = { before: loadavg() };
await initRuntime({ backend });
const model = new Vlmo(vlmoPreset('base')).eval();
const pixels = tf.randomNormal([1, 3, 224, 224], 0, 1, 'float32', 1);
const ids = tf.randomUniform([1, 40], 1000, 30000, 'int32', 2);
const mask = tf.ones([1, 40], 'int32');
const calls = {
  image: () => model.encodeImage(pixels, { vlffn: false }),
  fusion: () => model.fuse(pixels, ids, mask),
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const vl = {};
for (const [name, fn] of Object.entries(calls)) {
  const timed = async () => {
    const t0 = performance.now();
    const r = fn();
    await Promise.all(
      Object.values(r)
        .filter((t) => t instanceof tf.Tensor)
        .map((t) => t.data()),
    ); // wait for the results
    const s = (performance.now() - t0) / 1000;
    tf.dispose(Object.values(r).filter((t) => t instanceof tf.Tensor));
    return s;
  };
  await timed(); // warm-up (wasm kernels)
  const times = [];
  for (let i = 0; i < reps; i++) times.push(await timed());
  vl[name] = median(times);
  console.log(`vl (${backend}) ${name}: ${vl[name].toFixed(2)} s`);
}
const numParams = model.numParameters();
model.dispose();
tf.dispose([pixels, ids, mask]);
load.between = loadavg();

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
  const row = { call: name, vlSeconds: vl[name] };
  for (const [threads, s] of Object.entries(torchOut.seconds)) {
    row[`torch ${threads}`] = s[name];
    row[`ratio vs torch ${threads}`] = vl[name] / s[name];
  }
  return row;
});
const result = {
  date: new Date().toISOString(),
  script: 'packages/vlmo/scripts/bench-base.mjs (+ bench_base_torch.py)',
  node: process.version,
  cpu: `${cpus()[0]?.model ?? '?'} (${cpus().length} cores)`,
  backend,
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
