#!/usr/bin/env node
// CapFilt on a job queue (issue 21): images/s with 1 vs 2 worker processes on this machine. Starts its
// own redis-server on a free loopback port, makes the demo's data (writeSynthDataset, seed 0, 1000 images
// at 32 px, 30% noise; its 600-record train split), and runs the built `blip capfilt --queue` coordinator
// with K `blip capfilt worker`s on the committed tiny golden checkpoints, the demo's CapFilt flags, wasm
// without native kernels (one thread per process). A worker's rate counts from the first worker's "ready"
// (models loaded) to the last item written; the end-to-end time is the coordinator's whole run.
// usage: node packages/blip/scripts/capfilt-queue-scaling.mjs [--reps 2] [--item-size 32] [--out docs/results/capfilt-queue-scaling.json]
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSynthDataset } from '@vl/core/node';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const reps = Number(flag('reps', '2'));
const itemSize = flag('item-size', '32');
const resultsPath = flag('out', fileURLToPath(new URL('../../../docs/results/capfilt-queue-scaling.json', import.meta.url)));
const BIN = fileURLToPath(new URL('../bin/blip.js', import.meta.url));
const GOLDEN = fileURLToPath(new URL('../src/capfilt/__tests__/golden/', import.meta.url));

if (spawnSync('redis-server', ['--version']).status !== 0) {
  console.error('redis-server is missing: apt-get install -y redis-server');
  process.exit(1);
}
const port = await new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
const dir = mkdtempSync(join(tmpdir(), 'capfilt-scaling-'));
const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], {
  stdio: 'ignore',
});
await new Promise((r) => setTimeout(r, 500));
const url = `redis://127.0.0.1:${port}/0`;

const data = join(dir, 'data');
await writeSynthDataset({ out: data, images: 1000, seed: 0, imageSize: 32, captionsPerImage: 3, noise: 0.3, splits: [0.6, 0.25, 0.15] });
const train = join(data, 'train.jsonl');
const records = readFileSync(train, 'utf8').split('\n').filter(Boolean).length;
const capfiltFlags = ['--data', train, '--captioner', join(GOLDEN, 'captioner'), '--filter', join(GOLDEN, 'filter')];
capfiltFlags.push('--num-captions', '1', '--itc', '--keep-rate', '0.7', '--calibrate-on', '200', '--batch-size', '16', '--seed', '0');
const env = { ...process.env, VL_ACCEL: '0' };

/** CPU seconds (user + system) a live process has used so far, from /proc (Linux); null when gone. */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return null;
  }
}

/** Spawns the CLI; `onLine` receives each stderr line with the ms since `t0`; `.cpu()` its last CPU reading. */
function cli(argv, t0, onLine) {
  const child = spawn(process.execPath, [BIN, 'capfilt', ...argv], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let cpu = 0;
  const poll = setInterval(() => (cpu = cpuSeconds(child.pid) ?? cpu), 100);
  let buf = '';
  child.stderr.on('data', (d) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop();
    for (const l of parts) onLine(l, Date.now() - t0);
  });
  const done = new Promise((resolve) => child.on('exit', (code) => (clearInterval(poll), resolve(code))));
  done.cpu = () => cpu;
  return done;
}

async function run(workers, rep) {
  const job = `scale-${workers}-${rep}`;
  const out = join(dir, job);
  const t0 = Date.now();
  const coord = cli(
    [...capfiltFlags, '--out', out, '--queue', url, '--job', job, '--item-size', itemSize, '--backend', 'wasm', '--quiet'],
    t0,
    () => {},
  );
  let firstReady = Infinity;
  let lastDone = 0;
  const items = [];
  const ws = [...Array(workers).keys()].map((w) =>
    cli(['worker', '--queue', url, '--job', job, '--backend', 'wasm'], t0, (l, ms) => {
      if (/ready for job/.test(l)) firstReady = Math.min(firstReady, ms);
      if (/item \d+-\d+ done/.test(l)) {
        lastDone = Math.max(lastDone, ms);
        items.push(w);
      }
    }),
  );
  const code = await coord;
  const codes = await Promise.all(ws);
  if (code !== 0 || codes.some((c) => c !== 0)) throw new Error(`run ${job}: coordinator ${code}, workers ${codes}`);
  const wall = (Date.now() - t0) / 1000;
  const busy = (lastDone - firstReady) / 1000;
  const perWorker = [...Array(workers).keys()].map((w) => items.filter((x) => x === w).length);
  // CPU the workers used (model loading included) per image: what the queue costs, whatever the machine's load.
  const cpuPerImage = ws.reduce((a, w) => a + w.cpu(), 0) / records;
  const r = {
    workers,
    rep,
    records,
    imagesPerSecond: records / busy,
    processingSeconds: busy,
    endToEndSeconds: wall,
    workerCpuSecondsPerImage: cpuPerImage,
    itemsPerWorker: perWorker,
  };
  console.log(JSON.stringify(r));
  return r;
}

const started = new Date().toISOString();
const load0 = loadavg()[0];
const runs = [];
try {
  for (let rep = 0; rep < reps; rep++) for (const workers of [1, 2]) runs.push(await run(workers, rep));
} finally {
  redis.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
const meanOf = (k, key) => runs.filter((r) => r.workers === k).reduce((a, r) => a + r[key], 0) / reps;
const mean = (k) => meanOf(k, 'imagesPerSecond');
const summary = {
  command: `node packages/blip/scripts/capfilt-queue-scaling.mjs --reps ${reps} --item-size ${itemSize}`,
  started,
  node: process.version,
  cpu: `${cpus()[0]?.model ?? '?'} (${cpus().length} cores)`,
  loadAverage: { start: load0, end: loadavg()[0] },
  records,
  itemSize: Number(itemSize),
  runs,
  imagesPerSecond: { oneWorker: mean(1), twoWorkers: mean(2) },
  workerCpuSecondsPerImage: { oneWorker: meanOf(1, 'workerCpuSecondsPerImage'), twoWorkers: meanOf(2, 'workerCpuSecondsPerImage') },
  ratio: mean(2) / mean(1),
};
writeFileSync(resultsPath, `${JSON.stringify(summary, null, 2)}\n`);
console.log(
  `1 worker ${mean(1).toFixed(1)} images/s, 2 workers ${mean(2).toFixed(1)} images/s, ratio ${(mean(2) / mean(1)).toFixed(2)} → ${resultsPath}`,
);
