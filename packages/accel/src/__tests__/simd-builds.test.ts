// The element-wise kernels are compiled three times (AVX-512, AVX2+FMA, baseline x86-64) and the CPU picks one
// at load. kernels.test.ts checks the picked build against tfjs's cpu backend; this file runs the other builds
// (VL_ACCEL_SIMD=avx2 / baseline, in child processes) on the same inputs and requires the same results up to
// the order of the row sums (a few float32 ulps of the largest output).
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { loadAccel } from '../binding.js';
import { accelStatus } from '../index.js';

const status = accelStatus();

/** Softmax, LayerNorm and GELU (erf and tanh, forward and backward) on fixed inputs, in a child process. */
function runBuild(cap: string | null): { simd: string; outputs: number[][] } {
  const script = `
    const binding = require(process.argv[1]);
    const rows = 37, d = 577, n = rows * d;
    const heap = new ArrayBuffer(4 * (6 * n + 2 * d + 2 * rows));
    const f = (i) => new Float32Array(heap, 4 * i * n, n);
    const x = f(0), dy = f(1);
    for (let i = 0; i < n; i++) { x[i] = 6 * Math.sin(i * 0.37); dy[i] = Math.cos(i * 0.11); }
    const gammaOff = 4 * 6 * n, betaOff = gammaOff + 4 * d, meanOff = betaOff + 4 * d, rstdOff = meanOff + 4 * rows;
    const gamma = new Float32Array(heap, gammaOff, d), beta = new Float32Array(heap, betaOff, d);
    for (let j = 0; j < d; j++) { gamma[j] = 1 + 0.01 * j; beta[j] = 0.5 - 0.002 * j; }
    const out = [];
    const take = (i) => out.push(Array.from(f(i)));
    binding.softmaxFwd(heap, new Float64Array([rows, d, 0, 4 * 2 * n])); take(2);
    binding.layerNormFwd(heap, new Float64Array([rows, d, 0, gammaOff, betaOff, 4 * 2 * n, meanOff, rstdOff, 1e-5])); take(2);
    for (const approx of [0, 1]) {
      binding.geluFwd(heap, new Float64Array([n, 0, 4 * 2 * n, approx])); take(2);
      binding.geluBwd(heap, new Float64Array([n, 4 * n, 0, 4 * 3 * n, approx])); take(3);
    }
    console.log(JSON.stringify({ simd: binding.info().simd, outputs: out }));`;
  const path = (loadAccel() as { path: string }).path;
  const env = { ...process.env };
  delete env['VL_ACCEL_SIMD'];
  if (cap) env['VL_ACCEL_SIMD'] = cap;
  const r = spawnSync(process.execPath, ['-e', script, path], { encoding: 'utf8', env, maxBuffer: 64 << 20 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as { simd: string; outputs: number[][] };
}

describe.runIf(status.available && process.arch === 'x64')('element-wise kernel builds', () => {
  it('agree with the build this CPU picked, to a few ulps of the largest output', () => {
    const picked = runBuild(null);
    expect(picked.simd).toBe(status.info?.simd);
    const names = ['softmax', 'layerNorm', 'gelu erf', 'gelu erf grad', 'gelu tanh', 'gelu tanh grad'];
    for (const cap of ['avx2', 'baseline']) {
      const other = runBuild(cap);
      if (cap === 'baseline') expect(other.simd).toBe('x86-64 baseline');
      else expect(['avx2+fma', 'x86-64 baseline']).toContain(other.simd); // a CPU without AVX2 takes the baseline
      other.outputs.forEach((values, k) => {
        const want = picked.outputs[k] as number[];
        expect(values.length, names[k]).toBe(want.length);
        let scale = 0;
        let worst = 0;
        for (let i = 0; i < want.length; i++) {
          scale = Math.max(scale, Math.abs(want[i] as number));
          worst = Math.max(worst, Math.abs((values[i] as number) - (want[i] as number)));
        }
        expect(worst / scale, `${names[k]} (${cap} vs ${picked.simd})`).toBeLessThan(2e-6);
      });
    }
  });
});
