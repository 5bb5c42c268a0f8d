// VlAttention's two native paths on the shapes CapFilt runs, in one run: the blocked AVX-512 kernel for head
// size 64 (src/native/attention_fused.c, the default where the CPU has AVX-512) against the sgemm path (a score
// matrix per head between two sgemms, what runs with VL_ACCEL_SIMD=avx2). The path is fixed when the binary
// loads, so each sample runs in a child process; the two alternate, best of --reps, and their outputs are
// compared. A monorepo dev tool: it needs the built native binary.
//   node packages/accel/scripts/bench-attention.mjs [--reps 3] [--write]
// --write: docs/results/accel-attention.json and the generated section of docs/benchmarks-accel.md.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..', '..');
const args = process.argv.slice(2);
const flag = (name, fallback) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : fallback);

const D = 768;
const HEADS = 12;
const CASES = [
  { name: 'ViT-B/16 at 384 px, self-attention, 8 images', b: 8, kv: 8, tq: 577, tk: 577, packed: true },
  { name: 'ViT-B/16 at 224 px, self-attention, 8 images', b: 8, kv: 8, tq: 197, tk: 197, packed: true },
  { name: 'ITM cross-attention: 16 captions × 35 tokens over 8 images', b: 16, kv: 8, tq: 35, tk: 577, packed: false },
];

if (args[0] === '--child') {
  // One sample of every case on this process's path; outputs written to DIR/case-N.f32.
  const [, binaryPath, outDir] = args;
  const { createRequire } = await import('node:module');
  const binding = createRequire(import.meta.url)(binaryPath);
  binding.setThreads(cpus().length);
  const results = CASES.map((c, n) => {
    const headDim = D / HEADS;
    const width = c.packed ? 3 * D : D;
    const qFloats = c.b * c.tq * width;
    const kvFloats = c.packed ? 0 : c.kv * c.tk * D;
    const oFloats = c.b * c.tq * D;
    const floats = qFloats + 2 * kvFloats + oFloats + c.b;
    const heap = new ArrayBuffer(4 * floats);
    const values = new Float32Array(heap, 0, qFloats + 2 * kvFloats);
    for (let i = 0; i < values.length; i++) values[i] = Math.sin(i * 0.37) * 2;
    const kOff = c.packed ? 4 * D : 4 * qFloats;
    const vOff = c.packed ? 8 * D : 4 * (qFloats + kvFloats);
    const kvBatch = c.packed ? c.tq * width : c.tk * D;
    const kvRow = c.packed ? width : D;
    const oOff = 4 * (qFloats + 2 * kvFloats);
    const rowsOff = oOff + 4 * oFloats;
    new Int32Array(heap, rowsOff, c.b).set(Array.from({ length: c.b }, (_, i) => Math.floor((i * c.kv) / c.b)));
    const params = new Float64Array([
      ...[c.b, HEADS, c.tq, c.tk, headDim, c.kv],
      ...[0, c.tq * width, headDim, width],
      ...[kOff, kvBatch, headDim, kvRow],
      ...[vOff, kvBatch, headDim, kvRow],
      ...[oOff, c.tq * D, headDim, D],
      ...[c.packed ? -1 : rowsOff, -1, 0, 0, 0, 1, 1 / Math.sqrt(headDim), 0],
    ]);
    binding.attention(heap, params); // warm-up
    const times = [];
    const start = performance.now();
    while (times.length < 5 || (performance.now() - start < 1000 && times.length < 50)) {
      const t = performance.now();
      binding.attention(heap, params);
      times.push(performance.now() - t);
    }
    writeFileSync(join(outDir, `case-${n}.f32`), new Uint8Array(heap, oOff, 4 * oFloats));
    return Math.min(...times);
  });
  console.log(JSON.stringify({ simd: binding.info().simd, ms: results }));
  process.exit(0);
}

const accel = await import(pathToFileURL(join(repo, 'packages', 'accel', 'dist', 'index.js')).href);
const status = accel.accelStatus();
if (!status.available) throw new Error(`the native binary is not available (${status.note}): npm run native:build -w @vl/accel`);
if (status.info.simd !== 'avx512') throw new Error(`this CPU runs the ${status.info.simd} build: the blocked path needs AVX-512`);
const reps = Number(flag('reps', '3'));
const self = fileURLToPath(import.meta.url);
const paths = { blocked: {}, sgemm: { VL_ACCEL_SIMD: 'avx2' } };
const best = { blocked: CASES.map(() => Infinity), sgemm: CASES.map(() => Infinity) };
const outDirs = { blocked: mkdtempSync(join(tmpdir(), 'vl-attn-a-')), sgemm: mkdtempSync(join(tmpdir(), 'vl-attn-b-')) };
const load0 = loadavg()[0];
for (let r = 0; r < reps; r++) {
  for (const [path, env] of Object.entries(paths)) {
    const run = spawnSync(process.execPath, [self, '--child', status.path, outDirs[path]], {
      encoding: 'utf8',
      env: { ...process.env, ...env },
    });
    if (run.status !== 0) throw new Error(`${path} sample failed: ${run.stderr}`);
    const sample = JSON.parse(run.stdout.trim().split('\n').pop());
    sample.ms.forEach((ms, i) => (best[path][i] = Math.min(best[path][i], ms)));
    process.stderr.write(`rep ${r + 1} ${path} (${sample.simd}): ${sample.ms.map((ms) => ms.toFixed(1)).join(', ')} ms\n`);
  }
}
const load1 = loadavg()[0];
const cases = CASES.map((c, i) => {
  const a = new Float32Array(readFileSync(join(outDirs.blocked, `case-${i}.f32`)).buffer.slice(0));
  const b = new Float32Array(readFileSync(join(outDirs.sgemm, `case-${i}.f32`)).buffer.slice(0));
  let scale = 0;
  let diff = 0;
  for (let j = 0; j < b.length; j++) {
    scale = Math.max(scale, Math.abs(b[j]));
    diff = Math.max(diff, Math.abs(a[j] - b[j]));
  }
  const gflop = (4 * c.b * HEADS * c.tq * c.tk * (D / HEADS)) / 1e9;
  return {
    name: c.name,
    gflop: Number(gflop.toFixed(2)),
    sgemmMs: Number(best.sgemm[i].toFixed(2)),
    blockedMs: Number(best.blocked[i].toFixed(2)),
    sgemmGflops: Number((gflop / (best.sgemm[i] / 1000)).toFixed(0)),
    blockedGflops: Number((gflop / (best.blocked[i] / 1000)).toFixed(0)),
    speedup: Number((best.sgemm[i] / best.blocked[i]).toFixed(2)),
    maxDifference: Number((diff / scale).toExponential(2)),
  };
});
for (const dir of Object.values(outDirs)) rmSync(dir, { recursive: true, force: true });
const command = `node packages/accel/scripts/bench-attention.mjs --reps ${reps} --write`;
const record = {
  date: new Date().toISOString(),
  machine: `${cpus()[0]?.model ?? 'unknown CPU'} (${cpus().length} cores), Node ${process.version}`,
  accel: status.note,
  loadAverage: [Number(load0.toFixed(2)), Number(load1.toFixed(2))],
  command,
  cases,
};
const table = [
  `<!-- bench-attention:start (generated by \`${command}\`) -->`,
  `${record.date.slice(0, 10)} · ${record.machine} · ${cpus().length} threads · load average ${record.loadAverage[0]} → ${record.loadAverage[1]} · best of ${reps} alternating child processes per path`,
  '',
  '| attention, 12 heads of 64 | GFLOP | sgemm path ms (GFLOP/s) | blocked AVX-512 ms (GFLOP/s) | speed-up | max difference / max output |',
  '| --- | ---: | ---: | ---: | ---: | ---: |',
  ...cases.map(
    (c) =>
      `| ${c.name} | ${c.gflop} | ${c.sgemmMs} (${c.sgemmGflops}) | ${c.blockedMs} (${c.blockedGflops}) | ${c.speedup}× | ${c.maxDifference} |`,
  ),
  '<!-- bench-attention:end -->',
].join('\n');
process.stdout.write(`${table}\n`);
if (args.includes('--write')) {
  const jsonPath = join(repo, 'docs', 'results', 'accel-attention.json');
  const prettier = await import('prettier');
  const options = (await prettier.resolveConfig(jsonPath)) ?? {};
  writeFileSync(jsonPath, await prettier.format(JSON.stringify(record), { ...options, filepath: jsonPath }));
  const doc = join(repo, 'docs', 'benchmarks-accel.md');
  const text = readFileSync(doc, 'utf8');
  const re = /<!-- bench-attention:start[\s\S]*?<!-- bench-attention:end -->/;
  writeFileSync(
    doc,
    re.test(text)
      ? text.replace(re, table)
      : `${text.trimEnd()}\n\n## Attention: the blocked AVX-512 kernel against the sgemm path\n\n${table}\n`,
  );
  process.stderr.write('wrote docs/results/accel-attention.json and docs/benchmarks-accel.md\n');
}
