// Two copies of @vl/core in one process (here its ESM and CJS builds, as an app that mixes import and require
// gets; two installed versions behave the same) share the runtime state on globalThis[Symbol.for('vl.runtime')]:
// the backend one copy chose is the one the other reports and keeps, and a VlError of one is a VlError to the
// other. Runs the built dist in a fresh Node process, so the copies are the files users install.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const dist = join(process.cwd(), 'dist');

const SCRIPT = `
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
const esm = await import(pathToFileURL(process.env.DIST + '/index.js').href);
const cjs = createRequire(import.meta.url)(process.env.DIST + '/index.cjs');
const tf = createRequire(import.meta.url)('@tensorflow/tfjs-core');
const out = { distinct: esm.initRuntime !== cjs.initRuntime };

// The app picks cpu through one copy; library code in the other copy must not switch to the "best" backend.
await cjs.initRuntime({ backend: 'cpu', accel: false });
out.afterCjsCpu = { esmInfo: esm.runtimeInfo()?.choice, esmEnsure: (await esm.ensureRuntime()).choice, tf: tf.getBackend() };

// And back: wasm through the ESM copy; the CJS copy sees it, and the kernels its copy of the code installed.
await esm.initRuntime({ backend: 'wasm', accel: false });
out.afterEsmWasm = {
  cjsInfo: cjs.runtimeInfo()?.choice,
  sameInfo: cjs.runtimeInfo() === esm.runtimeInfo(),
  tf: tf.getBackend(),
  cjsSeesCoreMatMul: cjs.coreWasmMatMulActive(),
  cjsBatchMatMulStock: cjs.isStockWasmKernel('BatchMatMul'),
};

// A second initRuntime from the other copy with the same request is a no-op returning the same info.
out.sameRequestSameInfo = (await cjs.initRuntime({ backend: 'wasm', accel: false })) === esm.runtimeInfo();

// Switching core's kernels off through one copy restores the stock kernel the first copy saved.
await cjs.initRuntime({ backend: 'wasm', wasmKernels: false, accel: false });
out.stockRestored = { esm: esm.isStockWasmKernel('BatchMatMul'), esmCoreMatMul: esm.coreWasmMatMulActive() };

const err = new cjs.VlError('CONFIG_INVALID', 'from the other copy');
out.errors = { instanceOf: err instanceof esm.VlError, isVlError: esm.isVlError(err, 'CONFIG_INVALID'), plain: new Error('x') instanceof esm.VlError };
process.stdout.write(JSON.stringify(out));
`;

describe('runtime state shared by two copies of @vl/core (ESM and CJS builds)', () => {
  it('agree on the chosen backend, the installed kernels and VlError', () => {
    expect(existsSync(join(dist, 'index.js')) && existsSync(join(dist, 'index.cjs')), 'run the build first').toBe(true);
    const stdout = execFileSync(process.execPath, ['--input-type=module', '-e', SCRIPT], {
      cwd: process.cwd(),
      env: { ...process.env, DIST: dist, VL_BACKEND: '' },
      encoding: 'utf8',
    });
    const out = JSON.parse(stdout) as Record<string, unknown>;
    expect(out).toEqual({
      distinct: true, // two copies of the code, not one module seen twice
      afterCjsCpu: { esmInfo: 'cpu', esmEnsure: 'cpu', tf: 'cpu' },
      afterEsmWasm: { cjsInfo: 'wasm', sameInfo: true, tf: 'wasm', cjsSeesCoreMatMul: true, cjsBatchMatMulStock: false },
      sameRequestSameInfo: true,
      stockRestored: { esm: true, esmCoreMatMul: false },
      errors: { instanceOf: true, isVlError: true, plain: false },
    });
  });
});
