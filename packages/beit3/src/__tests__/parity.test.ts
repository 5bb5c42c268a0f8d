// BEiT-3 against the official reference fixtures (fixtures/beit3-official, made by microsoft/unilm beit3 at
// 768a3c8 on torchscale v0.2.0): the five fine-tuned models from model.safetensors and from
// pytorch_model.pth, every recorded output within 1e-4 (ids exact) through the same code path as
// `vl verify beit3`; official keys and shapes; save → load round trip; checkpoints that do not fit (bad
// keys, another task's weights, another image size); no tensor leaks.
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { type HostTensor, initRuntime, isVlError } from '@vl/core';
import { readExpectedFile, readSafetensorsFile, readTensorJsonFile, writeJsonFile, writeSafetensorsFile } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBeit3, readBeit3Config, saveBeit3, toOfficialStateDict } from '../checkpoint.js';
import { BEIT3_TASKS, beit3ConfigToJson, beit3Dims, type Beit3Task } from '../config.js';
import { generateCaptions } from '../generation.js';
import {
  type Beit3ForCaptioning,
  type Beit3ForImageClassification,
  type Beit3ForRetrieval,
  type Beit3ForVisualQuestionAnswering,
  type Beit3ForVisualReasoning,
  buildBeit3,
} from '../model.js';
import { beit3ReferenceOutputs, parseReferenceInputs, verifyBeit3 } from '../verify.js';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/beit3-official/', import.meta.url));
const TOL = 1e-4;
const dirOf = (task: Beit3Task) => join(FIXTURES, `beit3-${task}-seed0`);
let tmp = '';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
  tmp = await mkdtemp(join(tmpdir(), 'beit3-parity-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function inputsOf(dir: string) {
  const { tensors, other } = await readTensorJsonFile(join(dir, 'inputs.json'));
  return parseReferenceInputs(tensors, other);
}

const tensorOf = (t: { data: Float32Array | Int32Array; shape: number[]; kind: string }) =>
  tf.tensor(t.data, t.shape, t.kind === 'int' ? 'int32' : 'float32');

describe.each(BEIT3_TASKS)('BEiT-3 official fixture: %s', (task) => {
  const dir = dirOf(task);

  it('our state dict equals the file key for key and shape for shape; sizes come from config.json', async () => {
    const config = await readBeit3Config(dir);
    const file = await readSafetensorsFile(join(dir, 'model.safetensors'));
    const model = buildBeit3(config);
    expect(model.task).toBe(task);
    const ours = toOfficialStateDict(model);
    expect([...ours.keys()].sort()).toEqual([...file.tensors.keys()].sort());
    for (const [k, t] of file.tensors) expect(ours.get(k)?.shape, k).toEqual(t.shape);
    const raw = beit3ConfigToJson(config) as { vision_tokens: number };
    expect(beit3Dims(config).numVisionTokens).toBe(raw.vision_tokens);
    model.dispose();
  });

  for (const weights of ['model.safetensors', 'pytorch_model.pth']) {
    it(`reproduces every output in expected.json within 1e-4, ids exactly, from ${weights} (the verify code path)`, async () => {
      const checkpoint = weights === 'model.safetensors' ? dir : join(dir, weights);
      const report = await verifyBeit3({ checkpoint, inputs: join(dir, 'inputs.json'), expected: join(dir, 'expected.json') });
      const expected = await readExpectedFile(join(dir, 'expected.json'));
      expect(report.checks.map((c) => c.name).sort()).toEqual(Object.keys(expected.outputs).sort());
      for (const c of report.checks) expect(c.maxAbsDiff, `${c.name} ${c.note ?? ''}`).toBeLessThanOrEqual(c.kind === 'int' ? 0 : TOL);
      expect(report.passed).toBe(true);
      expect(report.notes).toEqual([]);
      expect(report.task).toBe(task);
    });
  }

  it('save → load round trip: the same outputs and a config that reads back equal', async () => {
    const model = await loadBeit3(dir);
    const out = join(tmp, `${task}-saved`);
    await saveBeit3(model, out);
    const again = await loadBeit3(out);
    expect(again.config).toEqual(model.config);
    // Loaded for inference, as from_pretrained: no drop-path without an Rng.
    expect([model.training, again.training]).toEqual([false, false]);
    const inputs = await inputsOf(dir);
    const a = await beit3ReferenceOutputs(model, inputs);
    const b = await beit3ReferenceOutputs(again, inputs);
    for (const k of Object.keys(a)) expect(Array.from(b[k]!.data), k).toEqual(Array.from(a[k]!.data));
    model.dispose();
    again.dispose();
  });

  it('does not grow tf.memory().numTensors across forwards (and generation)', async () => {
    const model = (await loadBeit3(dir)).eval();
    const inputs = await inputsOf(dir);
    const image = tensorOf(inputs.image);
    const ids = inputs.language_tokens ? tensorOf(inputs.language_tokens) : null;
    const pad = inputs.padding_mask ? tensorOf(inputs.padding_mask) : null;
    const image2 = inputs.image2 ? tensorOf(inputs.image2) : null;
    const run = (): tf.TensorContainer => {
      switch (task) {
        case 'retrieval': {
          const m = model as Beit3ForRetrieval;
          return [m.encodeImage(image), m.encodeText(ids!, pad), m.forward(image, ids!, pad)] as unknown as tf.TensorContainer;
        }
        case 'captioning':
          return (model as Beit3ForCaptioning).forward({ pixels: image, textIds: ids!, paddingMask: pad }) as unknown as tf.TensorContainer;
        case 'vqa':
          return (model as Beit3ForVisualQuestionAnswering).forward(image, ids!, pad) as unknown as tf.TensorContainer;
        case 'classification':
          return (model as Beit3ForImageClassification).forward(image) as unknown as tf.TensorContainer;
        case 'nlvr2':
          return (model as Beit3ForVisualReasoning).forward(image, image2!, ids!, pad) as unknown as tf.TensorContainer;
      }
    };
    tf.dispose(run()); // warm-up
    let before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) tf.dispose(run());
    expect(tf.memory().numTensors).toBe(before);
    await beit3ReferenceOutputs(model, inputs);
    before = tf.memory().numTensors;
    await beit3ReferenceOutputs(model, inputs);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([image, ids, pad, image2].filter((t): t is tf.Tensor => t !== null));
    model.dispose();
  });
});

describe('BEiT-3 checkpoints that do not fit', () => {
  async function writeVariant(
    label: string,
    from: Beit3Task,
    edit: (tensors: Map<string, HostTensor>) => void,
    configFrom: Beit3Task = from,
    editConfig?: (json: Record<string, unknown>) => void,
  ): Promise<string> {
    const { tensors } = await readSafetensorsFile(join(dirOf(from), 'model.safetensors'));
    edit(tensors);
    const out = join(tmp, label);
    await rm(out, { recursive: true, force: true });
    await mkdir(out, { recursive: true });
    if (editConfig) {
      const json = beit3ConfigToJson(await readBeit3Config(dirOf(configFrom)));
      editConfig(json);
      await writeJsonFile(join(out, 'config.json'), json);
    } else {
      await copyFile(join(dirOf(configFrom), 'config.json'), join(out, 'config.json'));
    }
    await writeSafetensorsFile(join(out, 'model.safetensors'), tensors);
    return out;
  }

  it('lists every missing, extra and mis-shaped key in one typed error, and loads nothing', async () => {
    const out = await writeVariant('bad-keys', 'retrieval', (t) => {
      t.delete('beit3.encoder.layers.2.ffn.B.fc1.weight');
      t.delete('language_head.weight');
      t.set('beit3.encoder.layers.0.self_attn.C.weight', { dtype: 'float32', shape: [2], data: new Float32Array(2), fileDtype: 'F32' });
      const w = t.get('beit3.encoder.layers.1.self_attn.q_proj.A.weight')!;
      t.set('beit3.encoder.layers.1.self_attn.q_proj.A.weight', { ...w, shape: [16, 32], data: new Float32Array(16 * 32) });
    });
    const before = tf.memory().numTensors;
    const err = await loadBeit3(out).catch((e: unknown) => e);
    expect(isVlError(err, 'STATE_DICT_MISMATCH')).toBe(true);
    const message = (err as Error).message;
    for (const key of [
      'beit3.encoder.layers.2.ffn.B.fc1.weight',
      'language_head.weight',
      'beit3.encoder.layers.0.self_attn.C.weight',
      'beit3.encoder.layers.1.self_attn.q_proj.A.weight',
    ]) {
      expect(message).toContain(key);
    }
    expect(message).toMatch(/2 missing.*1 unexpected.*1 mis-shaped/);
    expect(message).toContain('expected [32,32] got [16,32]');
    expect(tf.memory().numTensors).toBe(before); // the half-built model was disposed
  });

  it("another task's weights are a typed error that names both tasks (VQA weights into the retrieval model)", async () => {
    const out = await writeVariant('vqa-into-retrieval', 'vqa', () => {}, 'retrieval');
    const before = tf.memory().numTensors;
    const err = await loadBeit3(out).catch((e: unknown) => e);
    expect(isVlError(err, 'STATE_DICT_MISMATCH')).toBe(true);
    expect((err as Error).message).toMatch(
      /the weights are a vqa model \(pooler.*\), but config.json's factory 'beit3_base_patch16_384_retrieval' builds the retrieval model/,
    );
    expect((err as Error).message).toMatch(/_vqav2/);
    expect(tf.memory().numTensors).toBe(before);
    const backbone = await writeVariant('backbone-only', 'classification', (t) => {
      for (const k of [...t.keys()]) if (!k.startsWith('beit3.')) t.delete(k);
    });
    expect(String(await loadBeit3(backbone).catch((e: unknown) => e))).toMatch(/no task head \(a pretrained backbone\?\)/);
  });

  it('a config of another image size loads the checkpoint with the vision positions interpolated, and says so', async () => {
    // 32 px / patch 8 (4×4 grid, 19 rows) → 48 px (6×6 grid, 39 rows).
    const out = await writeVariant(
      'vqa-48px',
      'vqa',
      () => {},
      'vqa',
      (json) => {
        (json.encoder_config as Record<string, unknown>).img_size = 48;
      },
    );
    const model = (await loadBeit3(out)).eval() as Beit3ForVisualQuestionAnswering;
    expect(model.loadNotes).toEqual([
      'vision positions interpolated from 4×4 to 6×6 patches (bicubic, as utils.load_model_and_may_interpolate does)',
    ]);
    const { tensors } = await readSafetensorsFile(join(dirOf('vqa'), 'model.safetensors'));
    const original = tensors.get('beit3.encoder.embed_positions.A.weight')!;
    const table = model.beit3.visionPositions.weight;
    expect(table.shape).toEqual([39, 32]);
    // The two offset rows and CLS are kept exactly.
    expect(Array.from(tf.slice(table, [0, 0], [3, 32]).dataSync())).toEqual(Array.from((original.data as Float32Array).slice(0, 96)));
    const inputs = await inputsOf(dirOf('vqa'));
    const image = tf.image.resizeBilinear(tf.transpose(tensorOf(inputs.image), [0, 2, 3, 1]) as tf.Tensor4D, [48, 48]);
    const res = model.forward(tf.transpose(image, [0, 3, 1, 2]), tensorOf(inputs.language_tokens!), tensorOf(inputs.padding_mask!));
    expect(res.logits.shape).toEqual([2, 13]);
    expect(Array.from(res.logits.dataSync()).every(Number.isFinite)).toBe(true);
    // An image of the checkpoint's own size is now a typed error that says what to do.
    expect(() => model.forward(tensorOf(inputs.image), tensorOf(inputs.language_tokens!), null)).toThrow(
      /images must be \[B, 3, 48, 48\].*resize images to 48×48/,
    );
    model.dispose();
  });
});

describe('BEiT-3 captioning generation', () => {
  it("the cached steps' logits equal a full causal forward of image + [bos, w1…ws, mask] at every active step", async () => {
    const dir = dirOf('captioning');
    const model = (await loadBeit3(dir)).eval() as Beit3ForCaptioning;
    const inputs = await inputsOf(dir);
    const image = tensorOf(inputs.image);
    const res = await generateCaptions(model, image, { numBeams: 1, maxLength: 10, recordStepLogits: true });
    // expected.json beam1_decoded: [0, 97, 2, 1, …] and [0, 49, 48, 10, 48, 48, 63, 48, 97, 2]; the words without the special ids.
    expect(res.tokens).toEqual([[], [49, 48, 10, 48, 48, 63, 48]]);
    const v = model.dims.vocabSize;
    const { mask } = model.config.tokens;
    // With one beam, row b's prefix at step s is the words chosen at steps 0..s−1 (the argmax of the
    // non-eos candidates), recorded in the decoding results; rebuild it from the step logits.
    for (let b = 0; b < 2; b++) {
      const words: number[] = [];
      for (let s = 0; s < res.steps; s++) {
        if (!res.stepActive[s]![b]) break;
        const ids = [model.config.tokens.bos, ...words, mask];
        const full = tf.tidy(() => {
          const out = model.forward({
            pixels: tf.slice(image, [b, 0, 0, 0], [1, -1, -1, -1]),
            textIds: tf.tensor2d([ids], [1, ids.length], 'int32'),
            languageMaskedPos: tf.tensor2d([ids.map((_, i) => (i === ids.length - 1 ? 1 : 0))], [1, ids.length], 'int32'),
          });
          return out.logits.dataSync();
        });
        const cached = res.stepLogits![s]!.slice(b * v, (b + 1) * v);
        let diff = 0;
        for (let i = 0; i < v; i++) diff = Math.max(diff, Math.abs(cached[i]! - full[i]!));
        expect(diff, `row ${b} step ${s}`).toBeLessThan(1e-5);
        // The next word: the best candidate that is not eos (a single beam goes on after recording eos).
        const order = Array.from(cached.keys()).sort((x, y) => cached[y]! - cached[x]!);
        words.push(order.find((w) => w !== model.config.tokens.eos)!);
      }
      // Image 1 runs to max_len: what is decoded is bos, the first 7 words, the placeholder and eos (its last word is lost).
      if (b === 1) expect(Array.from(res.decoded[1]!)).toEqual([0, ...words.slice(0, 7), mask, model.config.tokens.eos]);
    }
    image.dispose();
    model.dispose();
  });

  it('a too long generation and too few tokens are typed errors; the cache is freed on every path', async () => {
    const model = (await loadBeit3(dirOf('captioning'))) as Beit3ForCaptioning;
    const image = tf.zeros([1, 3, 32, 32]);
    const before = tf.memory().numTensors;
    await expect(generateCaptions(model, image, { maxLength: 63 })).rejects.toThrow(/needs 65 text position rows, but this model has 64/);
    await expect(generateCaptions(model, image, { maxLength: 2 })).rejects.toThrow(/leaves no room/);
    await expect(generateCaptions(model, tf.zeros([1, 3, 16, 16]), { maxLength: 5 })).rejects.toThrow(/images must be/);
    expect(tf.memory().numTensors).toBe(before + 1); // the zeros passed in above
    image.dispose();
    model.dispose();
  });
});
