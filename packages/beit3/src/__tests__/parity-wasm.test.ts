// Fixture parity on the wasm backend (core's patched matMul kernels): every output of the five official
// BEiT-3 fixtures within 1e-4 (ids, including the captions of both beam searches, exact), from
// model.safetensors and from the .pth.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime } from '@vl/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { BEIT3_TASKS } from '../config.js';
import { verifyBeit3 } from '../verify.js';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/beit3-official/', import.meta.url));
const OUTPUTS = { retrieval: 18, captioning: 11, vqa: 4, classification: 4, nlvr2: 4 };

describe('BEiT-3 parity on wasm', () => {
  beforeAll(async () => {
    await initRuntime({ backend: 'wasm' });
    expect(tf.getBackend()).toBe('wasm');
  });

  for (const task of BEIT3_TASKS) {
    for (const weights of ['model.safetensors', 'pytorch_model.pth']) {
      it(`${task} from ${weights}: every output within 1e-4`, async () => {
        const dir = join(FIXTURES, `beit3-${task}-seed0`);
        const report = await verifyBeit3({
          checkpoint: join(dir, weights),
          inputs: join(dir, 'inputs.json'),
          expected: join(dir, 'expected.json'),
          tol: 1e-4,
        });
        for (const c of report.checks) expect(c.passed, `${c.name}: max abs diff ${c.maxAbsDiff} ${c.note ?? ''}`).toBe(true);
        expect(report.checks.length).toBe(OUTPUTS[task]);
        expect(report.passed).toBe(true);
      });
    }
  }
});
