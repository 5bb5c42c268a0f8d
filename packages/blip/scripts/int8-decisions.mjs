#!/usr/bin/env node
// What `blip capfilt --int8` changes (issue 16 item 5): the demo's CapFilt step (`npm run demo`: the
// synthetic scenes with 30% noisy captions, the embedded scenes-tiny captioner and filter, BLIP's rule
// ITM P(match) ≥ 0.5, one nucleus caption per image, seed 0) run twice, in float and with --int8, and
// compared caption by caption: filter decisions on the original captions (and against the noise labels),
// synthetic captions that came out identical, decisions on those, and the score differences. Writes
// docs/results/capfilt-int8-decisions.json (or --out FILE). Needs @vl/accel's native kernels.
// usage: node packages/blip/scripts/int8-decisions.mjs [--dir DIR (data + runs, reused)] [--images 1600] [--out FILE]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSynthDataset } from '@vl/core/node';

const args = process.argv.slice(2);
const flag = (name, fallback) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : fallback);
const dir = flag('dir', join(tmpdir(), 'vl-int8-decisions'));
const images = Number(flag('images', '1600'));
const outFile = flag('out', fileURLToPath(new URL('../../../docs/results/capfilt-int8-decisions.json', import.meta.url)));
const CLI = fileURLToPath(new URL('../bin/blip.js', import.meta.url));

// The demo's data (packages/blip/scripts/demo.mjs, step 1), made once.
const data = join(dir, 'data');
if (!existsSync(join(data, 'meta.json'))) {
  mkdirSync(dir, { recursive: true });
  await writeSynthDataset({ out: data, images, seed: 0, imageSize: 32, captionsPerImage: 3, noise: 0.3, splits: [0.65, 0, 0.35] });
}
const records = readFileSync(join(data, 'train.jsonl'), 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l));
const sources = new Map(records.map((r, i) => [`train.jsonl:${i + 1}`, r]));

function capfilt(int8) {
  const out = join(dir, int8 ? 'int8' : 'float');
  rmSync(out, { recursive: true, force: true });
  const argv = ['capfilt', '--data', join(data, 'train.jsonl'), '--out', out, '--captioner', 'scenes-tiny', '--filter', 'scenes-tiny'];
  argv.push('--num-captions', '1', '--threshold', '0.5', '--batch-size', '32', '--seed', '0', '--quiet', '--backend', 'wasm');
  if (int8) argv.push('--int8');
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [CLI, ...argv], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`blip ${argv.join(' ')} exited with ${r.status}:\n${r.stderr}`);
  const seconds = (performance.now() - t0) / 1000;
  const byKey = new Map();
  for (const line of readFileSync(join(out, 'journal.jsonl'), 'utf8').split('\n').filter(Boolean).slice(1))
    for (const rec of JSON.parse(line).p.records) byKey.set(rec.key, rec);
  return { byKey, seconds };
}

const float = capfilt(false);
const int8 = capfilt(true);

const originals = { total: 0, decisionsDiffer: 0, floatRemovedNoisy: 0, int8RemovedNoisy: 0, floatRemovedClean: 0, int8RemovedClean: 0 };
const synthetic = { total: 0, identical: 0, decisionsDifferOnIdentical: 0 };
const scoreDiffs = [];
for (const [key, f] of float.byKey) {
  const q = int8.byKey.get(key);
  const noise = sources.get(key)?.noise ?? [];
  (f.original ?? []).forEach((c, i) => {
    const d = q.original[i];
    originals.total++;
    if (c.kept !== d.kept) originals.decisionsDiffer++;
    scoreDiffs.push(Math.abs(c.score - d.score));
    const tag = noise[i] ? 'Noisy' : 'Clean';
    if (!c.kept) originals[`floatRemoved${tag}`]++;
    if (!d.kept) originals[`int8Removed${tag}`]++;
  });
  (f.synthetic ?? []).forEach((c, i) => {
    const d = q.synthetic[i];
    synthetic.total++;
    if (d && c.text === d.text) {
      synthetic.identical++;
      if (c.kept !== d.kept) synthetic.decisionsDifferOnIdentical++;
      scoreDiffs.push(Math.abs(c.score - d.score));
    }
  });
}
scoreDiffs.sort((a, b) => a - b);
const result = {
  date: new Date().toISOString(),
  command: 'node packages/blip/scripts/int8-decisions.mjs',
  loadAverage: loadavg()
    .slice(0, 2)
    .map((x) => Math.round(x * 100) / 100),
  setup: `npm run demo's CapFilt step: ${records.length} noisy-split records (${originals.total} original captions), scenes-tiny captioner + filter, threshold 0.5, seed 0`,
  seconds: { float: Math.round(float.seconds * 10) / 10, int8: Math.round(int8.seconds * 10) / 10 },
  originals,
  synthetic,
  scoreDifference: {
    max: scoreDiffs.at(-1) ?? 0,
    median: scoreDiffs[Math.floor(scoreDiffs.length / 2)] ?? 0,
    p99: scoreDiffs[Math.floor(scoreDiffs.length * 0.99)] ?? 0,
  },
};
mkdirSync(join(outFile, '..'), { recursive: true });
writeFileSync(outFile, JSON.stringify(result, null, 2) + '\n');
console.log(JSON.stringify(result, null, 2));
