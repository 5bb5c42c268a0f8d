// Gradient parity with salesforce/ALBEF, run per backend by grads-cpu.test.ts and grads-wasm.test.ts:
// the official forward's ITA, ITM and MLM (recorded draws replayed, each loss on its own from a fresh
// model) give the reference's gradient for every parameter within 1e-4 (fixtures/albef-official
// README, "Gradients"), through the code path of `albef verify --grads`; exactly the parameters the
// reference reaches get a gradient; nothing leaks.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { type BackendChoice, initRuntime, officialNames, parameterGradients } from '@vl/core';
import { readSafetensorsFile, readTensorJsonFile } from '@vl/core/node';
import { beforeAll, describe, expect, it } from 'vitest';
import { albefGradientReplay, recordedDraws, verifyAlbefGradients } from '../verify-grads.js';
import { parseReferenceInputs } from '../verify.js';

export const DIR = fileURLToPath(new URL('../../../../fixtures/albef-official/albef-seed0/', import.meta.url));
const TOL = 1e-4;
const LOSSES = ['ita', 'itm', 'mlm'] as const;

interface GradsJson {
  losses: Record<string, number>;
  count: Record<string, number>;
  no_gradient: Record<string, string[]>;
}

export function albefGradientSuite(backend: BackendChoice): void {
  describe(`ALBEF gradients on ${backend}`, () => {
    let meta: GradsJson;
    beforeAll(async () => {
      await initRuntime({ backend });
      expect(tf.getBackend()).toBe(backend);
      meta = JSON.parse(await readFile(join(DIR, 'grads.json'), 'utf8')) as GradsJson;
    });

    it('each loss reaches exactly the parameters it reaches in the reference', async () => {
      const file = await readSafetensorsFile(join(DIR, 'grads.safetensors'));
      const { tensors, other } = await readTensorJsonFile(join(DIR, 'inputs.json'));
      const expected = await readTensorJsonFile(join(DIR, 'expected.json'));
      const replay = albefGradientReplay(
        DIR,
        parseReferenceInputs(tensors, other),
        recordedDraws(expected.other.informative, 'expected.json'),
      );
      for (const loss of LOSSES) {
        const model = await replay.load();
        const names = officialNames(model, replay.keyMap as Required<typeof replay.keyMap>);
        const { value, grads } = parameterGradients(model, () => replay.loss(model, loss));
        model.dispose();
        const ours = [...grads.keys()].map((k) => names.get(k) ?? k).sort();
        const theirs = [...file.tensors.keys()].filter((k) => k.startsWith(`${loss}/`)).map((k) => k.slice(loss.length + 1));
        expect(ours, loss).toEqual(theirs.sort());
        expect(ours.length, loss).toBe(meta.count[loss]);
        for (const absent of meta.no_gradient[loss]!) expect(ours, `${loss} ${absent}`).not.toContain(absent);
        expect(Math.abs(value - meta.losses[loss]!), loss).toBeLessThanOrEqual(TOL);
      }
    });

    it('every gradient of ITA, ITM and MLM within 1e-4 (the verify --grads path), leaking no tensors', async () => {
      const before = tf.memory().numTensors;
      const report = await verifyAlbefGradients({
        model: DIR,
        inputs: join(DIR, 'inputs.json'),
        expected: join(DIR, 'expected.json'),
        grads: join(DIR, 'grads.safetensors'),
      });
      expect(tf.memory().numTensors).toBe(before);
      expect(report.checks.map((c) => c.name)).toEqual(LOSSES.flatMap((l) => [`${l} loss`, `${l} gradients`]));
      for (const c of report.checks) {
        expect(c.passed, `${c.name}: ${c.maxAbsDiff} (${c.note ?? ''})`).toBe(true);
        expect(c.maxAbsDiff, c.name).toBeLessThanOrEqual(TOL);
        expect(c.tolerance).toBe(TOL);
      }
      for (const loss of LOSSES) {
        expect(report.checks.find((c) => c.name === `${loss} gradients`)?.note).toMatch(
          new RegExp(`^${meta.count[loss]} tensors; worst ${loss}/[^;]+$`),
        );
      }
      expect(report.passed).toBe(true);
    });
  });
}
