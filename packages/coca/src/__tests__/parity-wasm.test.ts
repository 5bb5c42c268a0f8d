// Fixture parity on the wasm backend: every CoCa and CLIP output of the OpenCLIP fixtures within 1e-4 and
// every generated token id exact (cached and uncached generation), from both weight files.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime } from '@vl/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { verifyClip, verifyCoca } from '../verify.js';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/coca-openclip/', import.meta.url));

describe('CoCa and CLIP parity on wasm', () => {
  beforeAll(async () => {
    await initRuntime({ backend: 'wasm' });
    expect(tf.getBackend()).toBe('wasm');
  });

  const cases = [
    ['coca-seed0', 'model.safetensors', true],
    ['coca-seed0', 'pytorch_model.pth', false],
    ['clip-seed0', 'model.safetensors', true],
    ['clip-seed0', 'pytorch_model.pth', true],
  ] as const;
  for (const [name, weights, cache] of cases) {
    it(`${name} from ${weights}${name.startsWith('coca') ? (cache ? ', cached generation' : ', uncached generation') : ''}`, async () => {
      const dir = join(FIXTURES, name);
      const options = { checkpoint: join(dir, weights), inputs: join(dir, 'inputs.json'), expected: join(dir, 'expected.json'), cache };
      const report = name.startsWith('coca') ? await verifyCoca(options) : await verifyClip(options);
      for (const c of report.checks) expect(c.passed, `${c.name}: max abs diff ${c.maxAbsDiff} ${c.note ?? ''}`).toBe(true);
      expect(report.checks.length).toBe(name.startsWith('coca') ? 22 : 8);
    });
  }
});
