// Fixture parity on the wasm backend (core's patched matMul kernels): every output of both official
// VLMo fixtures within 1e-4 (relative position indices exact), from model.safetensors and from the .pth.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime } from '@vl/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { verifyVlmo } from '../verify.js';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/vlmo-official/', import.meta.url));

describe('VLMo parity on wasm', () => {
  beforeAll(async () => {
    await initRuntime({ backend: 'wasm' });
    expect(tf.getBackend()).toBe('wasm');
  });

  for (const name of ['vlmo-seed0', 'vlmo-plus-seed4']) {
    for (const weights of ['model.safetensors', 'pytorch_model.pth']) {
      it(`${name} from ${weights}: every output within 1e-4`, async () => {
        const dir = join(FIXTURES, name);
        const report = await verifyVlmo({
          checkpoint: join(dir, weights),
          inputs: join(dir, 'inputs.json'),
          expected: join(dir, 'expected.json'),
          tol: 1e-4,
        });
        for (const c of report.checks) expect(c.passed, `${c.name}: max abs diff ${c.maxAbsDiff} ${c.note ?? ''}`).toBe(true);
        expect(report.checks.length).toBe(name === 'vlmo-seed0' ? 29 : 26);
        expect(report.passed).toBe(true);
      });
    }
  }
});
