// ALBEF against the official reference fixture (fixtures/albef-official/albef-seed0, made by
// salesforce/ALBEF model_pretrain.py): official keys and shapes, every recorded output within
// 1e-4 through the same code path as `albef verify`, the recorded forward() draws replayed through
// our pretraining forward, the save → load round trip, and no tensor leaks.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, Rng } from '@vl/core';
import { readExpectedFile, readSafetensorsFile, readTensorJsonFile } from '@vl/core/node';
import { beforeAll, describe, expect, it } from 'vitest';
import { fromOfficialStateDict, loadAlbef, officialTensor, readAlbefConfig, saveAlbef, toOfficialStateDict } from '../checkpoint.js';
import { Albef } from '../model.js';
import { albefReferenceOutputs, parseReferenceInputs, verifyAlbef } from '../verify.js';

const DIR = fileURLToPath(new URL('../../../../fixtures/albef-official/albef-seed0/', import.meta.url));
const TOL = 1e-4;

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

describe('ALBEF official checkpoint (salesforce/ALBEF b9727e43)', () => {
  it('our state dict under official names equals the file key for key and shape for shape', async () => {
    const config = await readAlbefConfig(DIR);
    const file = await readSafetensorsFile(join(DIR, 'model.safetensors'));
    const model = new Albef(config);
    const ours = toOfficialStateDict(model);
    expect([...ours.keys()].sort()).toEqual([...file.tensors.keys()].sort());
    for (const [k, t] of file.tensors) {
      expect(ours.get(k)?.shape, k).toEqual(t.shape);
      expect(ours.get(k)?.fileDtype, k).toBe(t.fileDtype);
    }
    model.dispose();
  });

  it('reproduces every output in expected.json within 1e-4 (the verify code path)', async () => {
    const report = await verifyAlbef({ model: DIR, inputs: join(DIR, 'inputs.json'), expected: join(DIR, 'expected.json') });
    const expected = await readExpectedFile(join(DIR, 'expected.json'));
    expect(report.checks.map((c) => c.name).sort()).toEqual(Object.keys(expected.outputs).sort());
    for (const c of report.checks) expect(c.maxAbsDiff, c.name).toBeLessThanOrEqual(TOL);
    expect(report.passed).toBe(true);
    expect(report.checks.length).toBe(15);
  });

  it('a tighter tolerance than the port achieves fails, naming the outputs', async () => {
    const report = await verifyAlbef({ model: DIR, inputs: join(DIR, 'inputs.json'), expected: join(DIR, 'expected.json'), tol: 0 });
    expect(report.passed).toBe(false);
  });

  it("replaying forward()'s recorded draws gives its losses and queue state", async () => {
    const model = await loadAlbef(DIR);
    model.eval();
    const { tensors, other } = await readTensorJsonFile(join(DIR, 'inputs.json'));
    const inputs = parseReferenceInputs(tensors, other);
    const { informative } = JSON.parse(await readFile(join(DIR, 'expected.json'), 'utf8')) as {
      informative: Record<string, { data: unknown }>;
    };
    const flat = (name: string) => [informative[name]!.data].flat(Infinity) as number[];
    const [b, t] = inputs.input_ids.shape as [number, number];
    // ALBEF.forward: clamp temp and momentum update first (twins equal online: a no-op up to rounding).
    model.afterStep();
    const pixels = tf.tensor(inputs.image.data, inputs.image.shape);
    const result = model.forward(
      {
        pixels,
        inputIds: Int32Array.from(inputs.input_ids.data),
        attentionMask: Int32Array.from(inputs.attention_mask.data),
        seqLength: t,
      },
      { rng: new Rng(0), alpha: inputs.alpha },
      {
        negatives: {
          imageForText: Int32Array.from(flat('forward_neg_image_idx')),
          textForImage: Int32Array.from(flat('forward_neg_text_idx')),
        },
        mlm: { inputIds: Int32Array.from(flat('forward_mlm_input_ids')), labels: Int32Array.from(flat('forward_mlm_labels')) },
      },
    );
    expect(b).toBe(2);
    expect(Math.abs(result.losses.itc!.dataSync()[0]! - flat('loss_ita')[0]!)).toBeLessThan(TOL);
    expect(Math.abs(result.losses.itm!.dataSync()[0]! - flat('loss_itm')[0]!)).toBeLessThan(TOL);
    expect(Math.abs(result.losses.mlm!.dataSync()[0]! - flat('loss_mlm')[0]!)).toBeLessThan(TOL);
    expect(maxDiff(officialTensor(model, 'image_queue')!.dataSync(), flat('forward_image_queue_after'))).toBeLessThan(TOL);
    expect(maxDiff(officialTensor(model, 'text_queue')!.dataSync(), flat('forward_text_queue_after'))).toBeLessThan(TOL);
    expect(Array.from(officialTensor(model, 'queue_ptr')!.dataSync())).toEqual(flat('forward_queue_ptr_after'));
    tf.dispose([pixels, result.loss, ...Object.values(result.losses)]);
    model.dispose();
  });

  it('save → load round trip is exact and writes the tied duplicates and I64 buffers', async () => {
    const model = await loadAlbef(DIR);
    const out = await mkdtemp(join(tmpdir(), 'albef-'));
    try {
      await saveAlbef(model, out);
      const original = await readSafetensorsFile(join(DIR, 'model.safetensors'));
      const written = await readSafetensorsFile(join(out, 'model.safetensors'));
      expect([...written.tensors.keys()].sort()).toEqual([...original.tensors.keys()].sort());
      for (const [k, t] of original.tensors) {
        expect(written.tensors.get(k)?.fileDtype, k).toBe(t.fileDtype);
        expect(maxDiff(written.tensors.get(k)!.data, t.data), k).toBe(0);
      }
      const again = await loadAlbef(out);
      // Loaded for inference, as from_pretrained: dropout off.
      expect([model.training, again.training]).toEqual([false, false]);
      again.dispose();
    } finally {
      await rm(out, { recursive: true, force: true });
      model.dispose();
    }
  });

  it('refuses a file whose tied decoder differs from the word embeddings', async () => {
    const file = await readSafetensorsFile(join(DIR, 'model.safetensors'));
    const dict = new Map(file.tensors);
    const key = 'text_encoder.cls.predictions.decoder.weight';
    const bad = { ...dict.get(key)!, data: Float32Array.from(dict.get(key)!.data, (v) => v + 1) };
    dict.set(key, bad);
    expect(() => fromOfficialStateDict(dict)).toThrow(/ties them/);
  });

  it('computing the reference outputs leaks no tensors', async () => {
    const model = await loadAlbef(DIR);
    const { tensors, other } = await readTensorJsonFile(join(DIR, 'inputs.json'));
    const inputs = parseReferenceInputs(tensors, other);
    albefReferenceOutputs(model, inputs);
    const before = tf.memory().numTensors;
    albefReferenceOutputs(model, inputs);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });
});
