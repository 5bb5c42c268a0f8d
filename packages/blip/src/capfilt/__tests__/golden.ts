// Byte-identity of CapFilt's outputs across refactors (issue 12): the demo's data, its first 100 records,
// committed tiny checkpoints, the built executables; every output file compared with the committed golden.
//
// - Data: made as packages/blip/scripts/demo.mjs made it before issue 15 (writeSynthDataset, seed 0, 1000 images,
//   30% noisy train captions); the first 100 records of train.jsonl (the split the demo cleaned) are kept. A hash of
//   those records and their images is checked first, so a changed data generator is told apart from a
//   changed CapFilt.
// - Models: golden/captioner and golden/filter, `tiny` BLIP checkpoints from seeded init (no training), made
//   once by this file with UPDATE_GOLDEN=1 and committed, so a refactor of weight init cannot move the bytes.
// - Run: the pre-issue-15 demo's capfilt flags (1 sampled caption, the --itc blend, keep-rate 0.7 calibrated on
//   the first 200 records, batch 16, seed 0: options the demo no longer uses, still covered here) on the
//   demo's wasm backend with @vl/accel's native kernels off (VL_ACCEL=0):
//   wasm SIMD is fixed-width 128-bit and each GEMM output is summed by one thread, so the floats do not
//   depend on the host CPU or the thread count, while accel's kernels follow the CPU's vector width. The
//   pure-JS cpu backend would do too, but takes 3-4× longer.
// - Compared byte for byte: train.jsonl, records.jsonl, report.json, report.md, histograms.png, samples.png,
//   capfilt.done.json, journal.jsonl and stdout. Run-dependent parts only are normalised: the journal's header holds absolute
//   paths (`root`, `data`) and a `fingerprint` hashed from absolute paths, so it is compared without them;
//   stdout's `wrote DIR` line names the temporary folder. stderr (timings) is not compared.
// This file is the harness; golden.test.ts (`blip capfilt`) and @vl/cli's capfilt-golden.test.ts
// (`vl capfilt blip`) run it. Regenerate (only when an output change is intended, and say so in the commit): UPDATE_GOLDEN=1 npx vitest run
// src/capfilt/__tests__/golden.test.ts (needs the built dist: npx tsup).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initRuntime, Rng } from '@vl/core';
import { loadBertTokenizer, writeSynthDataset } from '@vl/core/node';
import { expect } from 'vitest';
import { BlipForConditionalGeneration, BlipForImageTextRetrieval } from '../../modeling.js';
import { pretrainConfig } from '../../train.js';
import { BLIP_ADDED_TOKENS } from '../../processor.js';
import type { RunIdentity } from '../identity.js';

const GOLDEN = fileURLToPath(new URL('./golden/', import.meta.url));
export const BLIP_BIN = fileURLToPath(new URL('../../../bin/blip.js', import.meta.url));
const UPDATE = process.env.UPDATE_GOLDEN === '1';
const RECORDS = 100;
const OUTPUTS = [
  'train.jsonl',
  'records.jsonl',
  'report.json',
  'report.md',
  'histograms.png',
  'samples.png',
  'capfilt.done.json',
  'journal.jsonl',
  'stdout.txt',
];

let dir: string;
let data: string;

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** The demo's data, cut to its first RECORDS training records; returns a hash of what capfilt reads. */
async function makeData(): Promise<string> {
  await writeSynthDataset({ out: data, images: 1000, seed: 0, imageSize: 32, captionsPerImage: 3, noise: 0.3, splits: [0.6, 0.25, 0.15] });
  const lines = readFileSync(join(data, 'train.jsonl'), 'utf8').split('\n').filter(Boolean).slice(0, RECORDS);
  writeFileSync(join(data, 'train.jsonl'), `${lines.join('\n')}\n`);
  const h = createHash('sha256').update(lines.join('\n'));
  for (const l of lines) h.update(readFileSync(join(data, (JSON.parse(l) as { image: string }).image)));
  return h.digest('hex');
}

async function makeModels(): Promise<void> {
  await initRuntime({ backend: 'cpu' });
  const tok = await loadBertTokenizer(join(data, 'vocab.txt'), { addedTokens: BLIP_ADDED_TOKENS });
  const config = pretrainConfig('tiny', tok, 32);
  const cap = new BlipForConditionalGeneration(config, new Rng(1));
  cap.tokenizerDir = data;
  await cap.savePretrained(join(GOLDEN, 'captioner'));
  cap.dispose();
  const filter = new BlipForImageTextRetrieval(config, new Rng(2));
  filter.tokenizerDir = data;
  await filter.savePretrained(join(GOLDEN, 'filter'));
  filter.dispose();
}

/**
 * The journal with its header's absolute paths and path-derived fingerprint taken out; of the run's
 * identity (issue 14) the options, data content hashes and checkpoint file hashes stay.
 */
function normaliseJournal(text: string): string {
  const [header, ...rest] = text.split('\n');
  const p = (JSON.parse(header as string) as { p: Record<string, unknown> }).p;
  const { fingerprint: _f, root: _r, data: _d, identity, ...kept } = p as { identity: RunIdentity } & Record<string, unknown>;
  const data = identity.data.map((d) => ({ size: d.size, sha256: d.sha256 }));
  const id = { options: identity.options, data, captioner: identity.captioner.files, filter: identity.filter.files };
  return [JSON.stringify({ header: { ...kept, identity: id } }), ...rest].join('\n');
}

/** Runs a capfilt command line (`argv` before the flags) and returns every output, normalised. */
export function runCapfilt(command: string[], out: string): Map<string, Buffer> {
  const args = [
    '--data',
    join(data, 'train.jsonl'),
    '--out',
    out,
    '--captioner',
    join(GOLDEN, 'captioner'),
    '--filter',
    join(GOLDEN, 'filter'),
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
    'wasm',
  ];
  const r = spawnSync(process.execPath, [...command, ...args], { encoding: 'utf8', env: { ...process.env, VL_ACCEL: '0' } });
  expect(r.status, r.stderr).toBe(0);
  const files = new Map<string, Buffer>();
  for (const f of OUTPUTS.slice(0, -2)) files.set(f, readFileSync(join(out, f)));
  files.set('journal.jsonl', Buffer.from(normaliseJournal(readFileSync(join(out, 'journal.jsonl'), 'utf8'))));
  files.set('stdout.txt', Buffer.from(r.stdout.split(out).join('OUT_DIR')));
  return files;
}

/** Makes the data (and with UPDATE_GOLDEN=1 the checkpoints) in a temporary folder; returns its cleanup. */
export async function setupGolden(): Promise<() => void> {
  if (!existsSync(BLIP_BIN)) throw new Error(`${BLIP_BIN} is missing: build the package first (npx tsup)`);
  dir = mkdtempSync(join(tmpdir(), 'capfilt-golden-'));
  data = join(dir, 'data');
  const dataHash = await makeData();
  if (UPDATE) {
    rmSync(GOLDEN, { recursive: true, force: true });
    mkdirSync(join(GOLDEN, 'outputs'), { recursive: true });
    await makeModels();
    writeFileSync(join(GOLDEN, 'data.sha256'), `${dataHash}\n`);
  }
  const want = readFileSync(join(GOLDEN, 'data.sha256'), 'utf8').trim();
  expect(dataHash, 'the synthetic data generator changed (not CapFilt): the golden no longer tests the demo data').toBe(want);
  return () => rmSync(dir, { recursive: true, force: true });
}

/** A fresh output folder for one run. */
export const outDir = (name: string) => join(dir, name);

export function expectGolden(files: Map<string, Buffer>): void {
  for (const [name, bytes] of files) {
    const golden = join(GOLDEN, 'outputs', name);
    if (UPDATE) writeFileSync(golden, bytes);
    expect(sha256(bytes), `${name} differs from ${golden}`).toBe(sha256(readFileSync(golden)));
  }
}
