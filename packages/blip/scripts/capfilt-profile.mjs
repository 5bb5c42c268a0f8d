#!/usr/bin/env node
// Where CapFilt's time goes on BLIP-base (issue 16): loads the benchmark's captioner and filter
// (capfilt-bench-data.mjs), then times each stage of one batch of `blip capfilt` — vision towers,
// nucleus captioning, ITM scoring — and, with --kernels, tfjs's per-kernel times for each stage
// (tf.profile; kernel times are host-measured, so on wasm they are the real CPU time of each op).
// usage: node packages/blip/scripts/capfilt-profile.mjs [--dir DIR] [--batch 8] [--kernels] [--int8] [--json OUT] [--write]
// --write: docs/results/capfilt-profile.json and the generated profile section of docs/benchmarks.md
// (with --int8, both models quantised as `blip capfilt --int8` does: capfilt-profile-int8.json and its own section).
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, Rng } from '@vl/core';
import { build } from 'esbuild';
import { capfiltBenchData } from './capfilt-bench-data.mjs';

// The pipeline's internals are not a public entry: bundle them from source for this run.
const bundle = new URL(`../dist/.profile-pipeline-${process.pid}.mjs`, import.meta.url).pathname;
await build({
  entryPoints: [new URL('../src/capfilt/pipeline.ts', import.meta.url).pathname],
  bundle: true,
  platform: 'node',
  format: 'esm',
  packages: 'external',
  outfile: bundle,
  logLevel: 'error',
});
const { processBatch, inputItems, loadModels, scorePairs } = await import(bundle);

const args = process.argv.slice(2);
const flag = (name, fallback) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : fallback);
const dir = flag('dir', join(tmpdir(), 'vl-bench-capfilt'));
const batch = Number(flag('batch', '8'));
const int8 = args.includes('--int8');
const suffix = int8 ? '-int8' : '';
const info = await initRuntime({});
console.log(`backend ${info.choice}; load average ${loadavg()[0].toFixed(2)}`);
const paths = await capfiltBenchData(dir, Math.max(32, batch));
const t = performance.now();
const models = await loadModels({ captioner: paths.captioner, filter: paths.filter, int8 });
const loadSeconds = (performance.now() - t) / 1000;
console.log(`load both models: ${loadSeconds.toFixed(2)} s`);
const items = [];
for await (const it of inputItems(paths.list, paths.images)) if (items.length < batch) items.push(it);
const scoring = { numCaptions: 1, topP: 0.9, itc: false, seed: 0, maxLength: 20 };
await processBatch(items.slice(0, 1), paths.images, models, scoring, 0.5); // warm-up
console.log(`load average ${loadavg()[0].toFixed(2)}; ${info.accel?.note ?? 'no native kernels'}`);
const kernels = new Map();
const profiled = async (label, f) => {
  const t0 = performance.now();
  let out;
  if (args.includes('--kernels')) {
    const p = await tf.profile(async () => {
      out = await f();
    });
    for (const k of p.kernels) {
      const key = `${label} ${k.name}`;
      const e = kernels.get(key) ?? { ms: 0, calls: 0 };
      e.ms += k.kernelTimeMs;
      e.calls++;
      kernels.set(key, e);
    }
  } else out = await f();
  console.log(`${label}: ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  return out;
};
const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const stages = {};
const timed = async (label, f, images = batch) => {
  const c0 = cpuSeconds();
  const t0 = performance.now();
  const out = await profiled(label, f);
  stages[label] = { images, cpuSeconds: cpuSeconds() - c0, wallSeconds: (performance.now() - t0) / 1000 };
  return out;
};
const before = tf.memory().numTensors;
const size = models.captioner.config.visionConfig.imageSize;
const pixels = tf.tidy(() => tf.randomNormal([batch, 3, size, size], 0, 1, 'float32', 0));
// Stage by stage on the same batch (each tower once more on its own, to split towers from text work).
await timed('captioner vision tower', () => tf.dispose(models.captioner.visionForward(pixels)));
await timed('captioner nucleus captions (incl. vision)', () =>
  models.captioner.generate(pixels, {
    doSample: true,
    topP: 0.9,
    topK: 0,
    maxLength: 20,
    minLength: 20,
    rng: items.map((_, i) => new Rng(i)),
  }),
);
await timed('filter vision tower', () => tf.dispose(models.filter.vision_model.forward(pixels)));
// The same tower with attention composed from tf ops (@vl/accel's VlAttention unregistered for the call).
const nativeAttention = tf.getKernel('VlAttention', tf.getBackend());
if (nativeAttention) {
  tf.unregisterKernel('VlAttention', tf.getBackend());
  await timed('filter vision tower, attention composed of tf ops', () => tf.dispose(models.filter.vision_model.forward(pixels)));
  tf.registerKernel(nativeAttention);
}
const texts = Array.from({ length: 2 * batch }, (_, i) => ({
  image: i % batch,
  text: Array.from({ length: 14 }, (_, w) => `w${1000 + 37 * i + w}`).join(' '),
}));
texts.sort((a, b) => a.image - b.image);
const host = tf.unstack(pixels).map((t) => {
  const d = t.dataSync();
  t.dispose();
  return d;
});
await timed('filter ITM, 2 captions per image (incl. vision)', () => scorePairs(models.filter, host, texts, false));
const one = tf.tidy(() => tf.slice(pixels, [0, 0, 0, 0], [1, 3, size, size]));
// Beam search against greedy on one image, 20 tokens each (minLength forces the length with random weights).
await timed('greedy caption, 1 image, 20 tokens (incl. vision)', () => models.captioner.generate(one, { maxLength: 20, minLength: 20 }), 1);
await timed(
  '3-beam caption, 1 image, 20 tokens (incl. vision)',
  () => models.captioner.generate(one, { maxLength: 20, minLength: 20, numBeams: 3 }),
  1,
);
one.dispose();
pixels.dispose();
const t1 = performance.now();
const c1 = cpuSeconds();
const results = await timed(`processBatch of ${batch}`, () => processBatch(items, paths.images, models, scoring, 0.5));
const secs = (performance.now() - t1) / 1000;
console.log(
  `${(batch / secs).toFixed(3)} images/s wall, ${(batch / (cpuSeconds() - c1)).toFixed(3)} images per CPU-second; ${results.filter((r) => r.status !== 'failed').length} ok; tensors ${before} → ${tf.memory().numTensors}`,
);
for (const [k, v] of Object.entries(stages)) console.log(`  ${k}: ${v.cpuSeconds.toFixed(2)} CPU-s`);
if (kernels.size) {
  const rows = [...kernels.entries()].sort((a, b) => b[1].ms - a[1].ms);
  for (const [k, e] of rows.slice(0, 40)) console.log(`${(e.ms / 1000).toFixed(3).padStart(8)} s ${String(e.calls).padStart(6)}× ${k}`);
}
const record = {
  date: new Date().toISOString(),
  machine: `${cpus()[0]?.model ?? 'unknown CPU'} (${cpus().length} cores), Node ${process.version}`,
  kernels: info.accel?.note ?? 'no native kernels',
  int8,
  loadAverage: Number(loadavg()[0].toFixed(2)),
  batch,
  loadSeconds: Number(loadSeconds.toFixed(2)),
  batchSeconds: Number(secs.toFixed(2)),
  stages,
  kernelMs: Object.fromEntries([...kernels.entries()].map(([k, e]) => [k, { ms: Math.round(e.ms), calls: e.calls }])),
};
const out = flag('json', null);
if (out) writeFileSync(out, JSON.stringify(record, null, 1));
if (args.includes('--write')) {
  const root = new URL('../../../', import.meta.url).pathname;
  writeFileSync(join(root, `docs/results/capfilt-profile${suffix}.json`), `${JSON.stringify(record, null, 2)}\n`);
  const st = Object.entries(stages);
  const lines = [
    `<!-- capfilt-profile${suffix}:start (generated by \`node packages/blip/scripts/capfilt-profile.mjs --kernels${int8 ? ' --int8' : ''} --write\`) -->`,
    `${record.date.slice(0, 10)} · ${record.machine} · ${record.kernels}${int8 ? ' · both models int8 (`--int8`)' : ''} · load average ${record.loadAverage} · batch of ${batch} images`,
    '',
    '| stage (same batch; each tower also alone) | images | wall s | CPU-s | CPU-s per image |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...st.map(
      ([k, v]) =>
        `| ${k} | ${v.images} | ${v.wallSeconds.toFixed(2)} | ${v.cpuSeconds.toFixed(2)} | ${(v.cpuSeconds / v.images).toFixed(2)} |`,
    ),
  ];
  if (kernels.size) {
    // The profiler lists op wrappers (`…__op`) besides the kernels they run: count kernels only.
    const proc = [...kernels.entries()]
      .filter(([k]) => k.startsWith('processBatch') && !k.endsWith('__op'))
      .sort((a, b) => b[1].ms - a[1].ms);
    const total = proc.reduce((t, [, e]) => t + e.ms, 0);
    lines.push(
      '',
      `Kernels of the whole batch (\`processBatch\`; tfjs profiler, host-timed, ${(total / 1000).toFixed(1)} s in all):`,
      '',
      '| kernel | calls | share |',
      '| --- | ---: | ---: |',
    );
    for (const [k, e] of proc.slice(0, 10))
      lines.push(`| ${k.replace('processBatch of ' + batch + ' ', '')} | ${e.calls} | ${((100 * e.ms) / total).toFixed(1)}% |`);
  }
  lines.push(`<!-- capfilt-profile${suffix}:end -->`);
  const doc = join(root, 'docs/benchmarks.md');
  const text = readFileSync(doc, 'utf8');
  const re = new RegExp(`<!-- capfilt-profile${suffix}:start[\\s\\S]*?<!-- capfilt-profile${suffix}:end -->`);
  const table = lines.join('\n');
  writeFileSync(
    doc,
    re.test(text)
      ? text.replace(re, table)
      : `${text.trimEnd()}\n\n## Where CapFilt's time goes (BLIP-base, profile${int8 ? ', --int8' : ''})\n\n${table}\n`,
  );
  console.log(`wrote docs/results/capfilt-profile${suffix}.json and docs/benchmarks.md`);
}
models.captioner.dispose();
models.filter.dispose();
rmSync(bundle, { force: true });
