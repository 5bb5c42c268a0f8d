#!/usr/bin/env node
// Load time of VLMo, CoCa and BEiT-3 at base size (issue 16's fast loading, as packages/blip/scripts/bench-load.mjs
// measures BLIP): loadVlmo, loadCoca and loadBeit3 (retrieval, 384 px) on a model.safetensors of random weights
// that this script writes once into DIR (vlmo/, coca/, beit3/; kept, so later runs reuse them). Each sample runs in
// a fresh node process after the runtime is up, so it times the loader only: read, build, load the state dict.
// With --base ROOT (a checkout whose packages/{vlmo,coca,beit3}/dist were built from another commit; @vl/core
// resolves through ROOT/node_modules), every sample is also taken with ROOT's loaders, alternating with this
// checkout's, so before and after share the machine's load. Prints the median and min of --reps samples, the
// process CPU time (user + system: less sensitive than wall time to other work on the machine) and the
// 1-minute load average at the start and the end.
// usage: node scripts/bench-load-models.mjs DIR [--reps 3] [--base ROOT] [--json OUT]
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const flag = (name, fallback) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : fallback);
const MODELS = ['vlmo', 'coca', 'beit3'];
// The ESM builds, as the CLIs run them (a createRequire resolve would pick the CommonJS ones).
const load = (root, model) => import(pathToFileURL(join(root, 'packages', model, 'dist/index.js')).href);

if (args[0] === '--make') {
  // Writes DIR/MODEL (config.json + model.safetensors): the base preset, every float weight uniform in ±0.05 from
  // a fixed xorshift stream (a JS loop at ~1 ns per weight: the models' own initialisers take ~20× longer).
  const [, model, dir, root] = args;
  const pkg = await load(root, model);
  await pkg.initRuntime({ backend: 'cpu' });
  const { withoutWeightInit } = await import('@vl/core');
  const tf = await import('@tensorflow/tfjs-core');
  const build = {
    vlmo: () => new pkg.Vlmo(pkg.vlmoPreset('base')),
    coca: () => new pkg.CoCa(pkg.cocaPreset('base')),
    beit3: () => pkg.buildBeit3(pkg.beit3Preset('base', { task: 'retrieval' })),
  }[model];
  const save = { vlmo: pkg.saveVlmo, coca: pkg.saveOpenClip, beit3: pkg.saveBeit3 }[model];
  const m = withoutWeightInit(build);
  let s = 0x9e3779b9;
  for (const [, p] of m.namedParameters()) {
    const data = new Float32Array(p.size);
    for (let i = 0; i < data.length; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      data[i] = ((s >>> 0) / 4294967296 - 0.5) * 0.1;
    }
    tf.tidy(() => p.assign(tf.tensor(data, p.shape, 'float32')));
  }
  await save(m, dir);
  console.log(JSON.stringify({ model, parameters: m.numParameters() }));
  process.exit(0);
}

if (args[0] === '--child') {
  // One sample: MODEL is vlmo | coca | beit3; ROOT the checkout whose loaders run; prints one JSON line.
  const [, model, dir, root] = args;
  const pkg = await load(root, model);
  const runtime = await pkg.initRuntime({});
  const loader = { vlmo: pkg.loadVlmo, coca: pkg.loadCoca, beit3: pkg.loadBeit3 }[model];
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const m = await loader(dir);
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  console.log(
    JSON.stringify({
      model,
      seconds,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      backend: runtime.choice,
      accel: runtime.accel?.active ?? false,
      parameters: m.numParameters(),
    }),
  );
  process.exit(0);
}

const dir = args.find((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
if (!dir) {
  console.error('usage: node scripts/bench-load-models.mjs DIR [--reps 3] [--base ROOT] [--json OUT]');
  process.exit(2);
}
const reps = Number(flag('reps', '3'));
const self = fileURLToPath(import.meta.url);
const here = fileURLToPath(new URL('../', import.meta.url));
const base = flag('base', null);
const roots = base ? { before: resolve(base), after: here } : { current: here };
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const fmt = (x) => x.toFixed(2);
const run = (argv) => {
  const r = spawnSync(process.execPath, [self, ...argv], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) {
    console.error(r.stdout, r.stderr);
    process.exit(1);
  }
  return JSON.parse(r.stdout.trim().split('\n').pop());
};

for (const model of MODELS) {
  const out = join(dir, model);
  if (existsSync(join(out, 'model.safetensors'))) continue;
  const t0 = performance.now();
  const made = run(['--make', model, out, here]);
  console.log(`wrote ${out}: ${made.parameters.toLocaleString('en')} parameters in ${fmt((performance.now() - t0) / 1000)} s`);
}

const load0 = loadavg()[0];
const samples = Object.fromEntries(Object.keys(roots).map((k) => [k, Object.fromEntries(MODELS.map((m) => [m, []]))]));
let info = null;
// Models and checkouts interleaved rep by rep, so a change in machine load hits them alike.
for (let r = 0; r < reps; r++) {
  for (const model of MODELS) {
    for (const [label, root] of Object.entries(roots)) {
      info = run(['--child', model, join(dir, model), root]);
      samples[label][model].push(info);
    }
  }
}
const load1 = loadavg()[0];
const row = (label, xs) =>
  `  ${label.padEnd(14)} median ${fmt(median(xs))} s   min ${fmt(Math.min(...xs))} s   (${xs.map(fmt).join(', ')})`;
console.log(`backend ${info.backend}${info.accel ? ' + @vl/accel' : ''}; ${reps} fresh processes per model and checkout`);
for (const [label, root] of Object.entries(roots)) {
  console.log(`${label} (${root}):`);
  for (const model of MODELS) {
    const s = samples[label][model];
    console.log(
      row(
        `${model} wall`,
        s.map((x) => x.seconds),
      ),
    );
    console.log(
      row(
        `${model} CPU`,
        s.map((x) => x.cpuSeconds),
      ),
    );
  }
}
console.log(`load average (1 min): ${load0.toFixed(2)} at the start, ${load1.toFixed(2)} at the end`);
const out = flag('json', null);
if (out) {
  const json = { reps, roots, loadAverage: [load0, load1], backend: info.backend, accel: info.accel, samples };
  writeFileSync(out, JSON.stringify(json, null, 2) + '\n');
}
