// fromPretrained reads every weights format core reads: the captioning fixture saved as transformers' older
// pytorch_model.bin loads to the same weights as its model.safetensors, from the folder or the file, and passes verify.
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime } from '@vl/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlipForConditionalGeneration } from '../modeling.js';
import { verifyCheckpoint } from '../verify.js';
import { CAPTIONING } from './helpers.js';

const BIN = fileURLToPath(new URL('../../../../fixtures/torch-pickle/blip-hf-captioning.bin', import.meta.url));

async function sameWeights(a: BlipForConditionalGeneration, b: BlipForConditionalGeneration): Promise<void> {
  const sa = a.stateDict();
  const sb = b.stateDict();
  expect([...sa.keys()].sort()).toEqual([...sb.keys()].sort());
  for (const [name, t] of sa) {
    const u = sb.get(name)!;
    expect(t.shape, name).toEqual(u.shape);
    const [x, y] = await Promise.all([t.data(), u.data()]);
    expect(Buffer.compare(Buffer.from(x.buffer, x.byteOffset, x.byteLength), Buffer.from(y.buffer, y.byteOffset, y.byteLength)), name).toBe(
      0,
    );
  }
}

describe('BLIP fromPretrained on a pytorch_model.bin folder', () => {
  let dir: string;
  beforeAll(async () => {
    await initRuntime({ backend: 'cpu' });
    dir = await mkdtemp(join(tmpdir(), 'vl-blip-bin-'));
    await copyFile(join(CAPTIONING, 'config.json'), join(dir, 'config.json'));
    await copyFile(BIN, join(dir, 'pytorch_model.bin'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads the same weights as model.safetensors, from the folder and from the file, without leaking tensors', async () => {
    const reference = await BlipForConditionalGeneration.fromPretrained(CAPTIONING, { tokenizer: null });
    const before = tf.memory().numTensors;
    for (const path of [dir, join(dir, 'pytorch_model.bin')]) {
      const model = await BlipForConditionalGeneration.fromPretrained(path, { tokenizer: null });
      await sameWeights(model, reference);
      model.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    reference.dispose();
  });

  it('passes verify against the fixture outputs when loaded from the .bin file', async () => {
    const { report } = await verifyCheckpoint({
      model: join(dir, 'pytorch_model.bin'),
      inputs: join(CAPTIONING, 'inputs.json'),
      expected: join(CAPTIONING, 'expected.json'),
      tol: 1e-4,
    });
    for (const c of report.checks) expect(c.passed, `${c.name}: max abs diff ${c.maxAbsDiff}`).toBe(true);
    expect(report.passed).toBe(true);
  });
});
