// Gradient parity with transformers' BLIP classes, run per backend by grads-cpu.test.ts and
// grads-wasm.test.ts: LM (captioning), ITM and ITC (retrieval) as fixtures/blip-hf/README.md
// ("Gradients") defines them give the reference's gradient for every parameter within 1e-4, through
// the code path of `blip verify --grads`; exactly the parameters the reference reaches get a
// gradient; nothing leaks.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { type BackendChoice, initRuntime } from '@vl/core';
import { readSafetensorsFile } from '@vl/core/node';
import { beforeAll, describe, expect, it } from 'vitest';
import { verifyBlipGradients } from '../verify-grads.js';
import { CAPTIONING, RETRIEVAL } from './helpers.js';

const TOL = 1e-4;

interface GradsJson {
  losses: Record<string, number>;
  count: Record<string, number>;
  no_gradient: Record<string, string[]>;
}

export const verifyGrads = (dir: string, grads = join(dir, 'grads.safetensors')) =>
  verifyBlipGradients({ model: dir, inputs: join(dir, 'inputs.json'), grads });

export function blipGradientSuite(backend: BackendChoice): void {
  describe(`BLIP gradients on ${backend}`, () => {
    beforeAll(async () => {
      await initRuntime({ backend });
      expect(tf.getBackend()).toBe(backend);
    });

    for (const [name, dir, losses] of [
      ['captioning (LM)', CAPTIONING, ['lm']],
      ['retrieval (ITM, ITC)', RETRIEVAL, ['itc', 'itm']],
    ] as const) {
      it(`${name}: every gradient within 1e-4, the parameters the reference reaches and no others, no leaks`, async () => {
        const meta = JSON.parse(await readFile(join(dir, 'grads.json'), 'utf8')) as GradsJson;
        await verifyGrads(dir); // warm-up: kernels and backend state are created once
        const before = tf.memory().numTensors;
        const report = await verifyGrads(dir);
        expect(tf.memory().numTensors).toBe(before);
        // No row but the summaries: no tensor out of tolerance, none on one side only.
        expect(report.checks.map((c) => c.name)).toEqual(losses.flatMap((l) => [`${l} loss`, `${l} gradients`]));
        for (const c of report.checks) {
          expect(c.passed, `${c.name}: ${c.maxAbsDiff} (${c.note ?? ''})`).toBe(true);
          expect(c.maxAbsDiff, c.name).toBeLessThanOrEqual(TOL);
        }
        const file = await readSafetensorsFile(join(dir, 'grads.safetensors'));
        for (const loss of losses) {
          const count = [...file.tensors.keys()].filter((k) => k.startsWith(`${loss}/`)).length;
          expect(count, loss).toBe(meta.count[loss]);
          // No tensor on one side only (the note would count them): we reach exactly the parameters the reference reaches.
          expect(report.checks.find((c) => c.name === `${loss} gradients`)?.note).toMatch(
            new RegExp(`^${count} tensors; worst ${loss}/[^;]+$`),
          );
        }
        expect(report.passed).toBe(true);
      });
    }
  });
}
