#!/usr/bin/env node
// Load time of the two BLIP models `blip capfilt` uses (issue 16: each ≤ 3 s): the captioner alone, the
// filter alone, and both concurrently as capfilt's loadModels does (src/capfilt/pipeline.ts). Each sample
// runs in a fresh node process (a warm heap or a grown wasm memory would flatter later samples), after
// the runtime is up, so it times fromPretrained only: read, build, load the state dict. Prints the median
// and min of --reps samples per mode, the process CPU time (user + system: less sensitive than wall time
// to other work on the machine) and the 1-minute load average at the start and the end.
// With --base DIR (another built checkout, e.g. a worktree of main after `npm ci && npm run build` and the
// accel native build), every sample is also taken with that checkout's packages, alternating with this
// one's, so before and after share the machine's load.
// With --cold, the OS page cache is dropped before every sample (root only: /proc/sys/vm/drop_caches), so each
// load reads its files from the disk, as the first run after a reboot or a download does.
// usage: node packages/blip/scripts/bench-load.mjs CAPTIONER_DIR FILTER_DIR [--reps 3] [--base DIR] [--cold] [--json OUT]
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const flag = (name, fallback) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : fallback);

if (args[0] === '--child') {
  // One sample: MODE is captioner | filter | both; ROOT the checkout whose packages load; prints one JSON line.
  const [, mode, captionerDir, filterDir, root] = args;
  // The ESM builds, as `blip capfilt` runs them (a createRequire resolve would pick the CommonJS ones).
  const load = (path) => import(pathToFileURL(join(root, path)).href);
  const { BlipForConditionalGeneration, BlipForImageTextRetrieval } = await load('packages/blip/dist/index.js');
  const { initRuntime } = await load('packages/core/dist/index.js');
  const runtime = await initRuntime({});
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const timed = async (make) => {
    const m = await make();
    return [m, (performance.now() - start) / 1000];
  };
  const loads = [];
  if (mode !== 'filter') loads.push(timed(() => BlipForConditionalGeneration.fromPretrained(captionerDir)));
  if (mode !== 'captioner') loads.push(timed(() => BlipForImageTextRetrieval.fromPretrained(filterDir)));
  const done = await Promise.all(loads);
  const both = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const seconds = Object.fromEntries(done.map(([m, s]) => [m instanceof BlipForConditionalGeneration ? 'captioner' : 'filter', s]));
  console.log(
    JSON.stringify({
      mode,
      seconds,
      both,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      backend: runtime.choice,
      accel: runtime.accel?.active ?? false,
      parameters: done.reduce((n, [m]) => n + m.numParameters(), 0),
    }),
  );
  process.exit(0);
}

const [captionerDir, filterDir] = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
if (!captionerDir || !filterDir) {
  console.error('usage: node packages/blip/scripts/bench-load.mjs CAPTIONER_DIR FILTER_DIR [--reps 3] [--base DIR] [--cold] [--json OUT]');
  process.exit(2);
}
const reps = Number(flag('reps', '3'));
const self = fileURLToPath(import.meta.url);
const here = fileURLToPath(new URL('../../../', import.meta.url));
const base = flag('base', null);
const roots = base ? { before: resolve(base), after: here } : { current: here };
const cold = args.includes('--cold');
/** Empties the page cache (after writing back dirty pages) so the next read comes from the disk. */
function dropPageCache() {
  spawnSync('sync');
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
  } catch (e) {
    console.error(`--cold needs to write /proc/sys/vm/drop_caches (root on Linux): ${e.message}`);
    process.exit(2);
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const fmt = (x) => x.toFixed(2);

const load0 = loadavg()[0];
const samples = Object.fromEntries(Object.keys(roots).map((k) => [k, { captioner: [], filter: [], both: [] }]));
let info = null;
// Modes (and checkouts) interleaved rep by rep, so a change in machine load hits them alike.
for (let r = 0; r < reps; r++) {
  for (const mode of ['captioner', 'filter', 'both']) {
    for (const [label, root] of Object.entries(roots)) {
      if (cold) dropPageCache();
      const run = spawnSync(process.execPath, [self, '--child', mode, captionerDir, filterDir, root], { encoding: 'utf8' });
      if (run.status !== 0) {
        console.error(run.stdout, run.stderr);
        process.exit(1);
      }
      info = JSON.parse(run.stdout.trim().split('\n').pop());
      samples[label][mode].push(info);
    }
  }
}
const load1 = loadavg()[0];
const row = (label, xs) =>
  `  ${label.padEnd(26)} median ${fmt(median(xs))} s   min ${fmt(Math.min(...xs))} s   (${xs.map(fmt).join(', ')})`;
console.log(
  `backend ${info.backend}${info.accel ? ' + @vl/accel' : ''}; ${reps} fresh processes per mode and checkout` +
    (cold ? '; page cache dropped before each' : ''),
);
for (const [label, root] of Object.entries(roots)) {
  const s = samples[label];
  console.log(`${label} (${root}):`);
  const rows = [
    ['captioner alone', s.captioner, (x) => x.seconds.captioner],
    ['filter alone', s.filter, (x) => x.seconds.filter],
    ['captioner (concurrent)', s.both, (x) => x.seconds.captioner],
    ['filter (concurrent)', s.both, (x) => x.seconds.filter],
    ['both (concurrent, wall)', s.both, (x) => x.both],
    ['CPU, captioner alone', s.captioner, (x) => x.cpuSeconds],
    ['CPU, filter alone', s.filter, (x) => x.cpuSeconds],
    ['CPU, both concurrent', s.both, (x) => x.cpuSeconds],
  ];
  for (const [name, xs, pick] of rows) console.log(row(name, xs.map(pick)));
}
console.log(`load average (1 min): ${load0.toFixed(2)} at the start, ${load1.toFixed(2)} at the end`);
const out = flag('json', null);
if (out) {
  const json = { reps, cold, roots, loadAverage: [load0, load1], backend: info.backend, accel: info.accel, samples };
  // As prettier formats it (format:check covers docs/), so a results file under docs/ stays clean.
  const prettier = await import('prettier');
  const options = (await prettier.resolveConfig(out)) ?? {};
  writeFileSync(out, await prettier.format(JSON.stringify(json), { ...options, filepath: out }));
}
