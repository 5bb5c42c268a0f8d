// VLMo against the official reference fixtures (fixtures/vlmo-official, made by microsoft/unilm vlmo at
// 768a3c8): both code paths (vlmo-seed0: relative position bias + layer scale; vlmo-plus-seed4: absolute
// positions), from model.safetensors and from pytorch_model.pth, every recorded output within 1e-4
// through the same code path as `vl verify vlmo`; official keys and shapes; the forward() ITM replay;
// save → load round trip; bad checkpoints; no tensor leaks.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { type HostTensor, initRuntime, isVlError, itmLoss } from '@vl/core';
import { readExpectedFile, readSafetensorsFile, readTensorJsonFile, writeSafetensorsFile } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadVlmo, readVlmoConfig, saveVlmo, toOfficialStateDict } from '../checkpoint.js';
import { vlmoDims } from '../config.js';
import { Vlmo } from '../model.js';
import { parseReferenceInputs, verifyVlmo, vlmoReferenceOutputs } from '../verify.js';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/vlmo-official/', import.meta.url));
const CASES = ['vlmo-seed0', 'vlmo-plus-seed4'] as const;
const TOL = 1e-4;
let tmp = '';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
  tmp = await mkdtemp(join(tmpdir(), 'vlmo-parity-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const dirOf = (name: string) => join(FIXTURES, name);

async function inputsOf(dir: string) {
  const { tensors, other } = await readTensorJsonFile(join(dir, 'inputs.json'));
  return parseReferenceInputs(tensors, other);
}

describe.each(CASES)('VLMo official fixture %s', (name) => {
  const dir = dirOf(name);

  it('our state dict equals the file key for key, shape for shape and stored dtype', async () => {
    const config = await readVlmoConfig(dir);
    const file = await readSafetensorsFile(join(dir, 'model.safetensors'));
    const model = new Vlmo(config);
    const ours = toOfficialStateDict(model);
    expect([...ours.keys()].sort()).toEqual([...file.tensors.keys()].sort());
    for (const [k, t] of file.tensors) {
      expect(ours.get(k)?.shape, k).toEqual(t.shape);
      expect(ours.get(k)?.fileDtype, k).toBe(t.fileDtype);
    }
    // Sizes come from config.json (the fixtures' own `derived` section says what they must be).
    const raw = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as { derived: Record<string, unknown> };
    const dims = vlmoDims(config);
    expect(dims.numImageTokens).toBe(raw.derived.num_image_tokens);
    expect(dims.headDim).toBe(raw.derived.head_dim);
    expect(dims.intermediateSize).toBe(raw.derived.mlp_hidden);
    const vlLayers = Array.from({ length: dims.depth }, (_, i) => i).filter((i) => i >= dims.vlffnStart);
    expect(vlLayers).toEqual(raw.derived.vlffn_layers);
    model.dispose();
  });

  for (const weights of ['model.safetensors', 'pytorch_model.pth']) {
    it(`reproduces every output in expected.json within 1e-4 from ${weights} (the verify code path)`, async () => {
      const checkpoint = weights === 'model.safetensors' ? dir : join(dir, weights);
      const report = await verifyVlmo({ checkpoint, inputs: join(dir, 'inputs.json'), expected: join(dir, 'expected.json') });
      const expected = await readExpectedFile(join(dir, 'expected.json'));
      expect(report.checks.map((c) => c.name).sort()).toEqual(Object.keys(expected.outputs).sort());
      for (const c of report.checks) expect(c.maxAbsDiff, c.name).toBeLessThanOrEqual(c.kind === 'int' ? 0 : TOL);
      expect(report.passed).toBe(true);
      expect(report.notes).toEqual([]);
    });
  }

  it("replays forward()'s ITM logits and loss from the recorded hard negatives", async () => {
    const model = await loadVlmo(dir);
    model.eval();
    const inputs = await inputsOf(dir);
    const { informative } = JSON.parse(await readFile(join(dir, 'expected.json'), 'utf8')) as {
      informative: Record<string, { data: unknown; shape: number[] }>;
    };
    const flat = (n: string) => [informative[n]!.data].flat(Infinity) as number[];
    const negImage = flat('forward_neg_image_idx');
    const negText = flat('forward_neg_text_idx');
    tf.tidy(() => {
      const image = tf.tensor(inputs.image.data, inputs.image.shape);
      const ids = tf.tensor(inputs.text_ids.data, inputs.text_ids.shape, 'int32');
      const mask = tf.tensor(inputs.text_masks.data, inputs.text_masks.shape, 'int32');
      // itm_score(cat(infer(batch), infer(image=images_neg, text), infer(image, text=text_neg))).
      const pos = model.fuse(image, ids, mask).clsFeats;
      const negI = model.fuse(tf.gather(image, negImage), ids, mask).clsFeats;
      const negT = model.fuse(image, tf.gather(ids, negText), tf.gather(mask, negText)).clsFeats;
      const logits = model.itmLogits(tf.concat([pos, negI, negT], 0));
      const want = flat('forward_itm_logits');
      const got = logits.dataSync();
      let diff = 0;
      for (let i = 0; i < want.length; i++) diff = Math.max(diff, Math.abs(got[i]! - want[i]!));
      expect(diff).toBeLessThanOrEqual(TOL);
      const b = pos.shape[0] as number;
      const labels = Int32Array.from({ length: 3 * b }, (_, i) => (i < b ? 1 : 0));
      const loss = itmLoss(logits, labels).loss.dataSync()[0]!;
      expect(Math.abs(loss - flat('forward_itm_loss')[0]!)).toBeLessThanOrEqual(TOL);
    });
    model.dispose();
  });

  it('save → load round trip: the same outputs and a config.json that reads back equal', async () => {
    const model = await loadVlmo(dir);
    const out = join(tmp, `${name}-saved`);
    await saveVlmo(model, out);
    const again = await loadVlmo(out);
    expect(again.config).toEqual(model.config);
    // Loaded for inference, as from_pretrained: dropout and drop-path off.
    expect([model.training, again.training]).toEqual([false, false]);
    const inputs = await inputsOf(dir);
    const a = vlmoReferenceOutputs(model, inputs);
    const b = vlmoReferenceOutputs(again, inputs);
    for (const k of Object.keys(a)) expect(Array.from(b[k]!.data), k).toEqual(Array.from(a[k]!.data));
    model.dispose();
    again.dispose();
  });

  it('does not grow tf.memory().numTensors across forwards in any mode', async () => {
    const model = (await loadVlmo(dir)).eval();
    const inputs = await inputsOf(dir);
    const image = tf.tensor(inputs.image.data, inputs.image.shape);
    const ids = tf.tensor(inputs.text_ids.data, inputs.text_ids.shape, 'int32');
    const mask = tf.tensor(inputs.text_masks.data, inputs.text_masks.shape, 'int32');
    const runs: (() => tf.Tensor[])[] = [
      () => Object.values(model.encodeImage(image)).filter((t): t is tf.Tensor => t !== null),
      () => Object.values(model.encodeText(ids, mask)).filter((t): t is tf.Tensor => t !== null),
      () => Object.values(model.fuse(image, ids, mask)),
      () => [tf.tidy(() => model.mlmLogits(model.fuse(image, ids, mask).textFeats))],
    ];
    for (const run of runs) {
      tf.dispose(run()); // warm-up: kernels and caches
      const before = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) tf.dispose(run());
      expect(tf.memory().numTensors).toBe(before);
    }
    vlmoReferenceOutputs(model, inputs);
    const before = tf.memory().numTensors;
    vlmoReferenceOutputs(model, inputs);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([image, ids, mask]);
    model.dispose();
  });
});

describe('VLMo checkpoints that do not fit', () => {
  const dir = dirOf('vlmo-seed0');

  async function writeVariant(label: string, edit: (tensors: Map<string, HostTensor>) => void): Promise<string> {
    const { tensors } = await readSafetensorsFile(join(dir, 'model.safetensors'));
    edit(tensors);
    const out = join(tmp, label);
    await rm(out, { recursive: true, force: true });
    await (await import('node:fs/promises')).mkdir(out, { recursive: true });
    await (await import('node:fs/promises')).copyFile(join(dir, 'config.json'), join(out, 'config.json'));
    await writeSafetensorsFile(join(out, 'model.safetensors'), tensors);
    return out;
  }

  it('lists every missing, extra and mis-shaped key in one typed error, and loads nothing', async () => {
    const out = await writeVariant('bad-keys', (t) => {
      t.delete('transformer.blocks.2.mlp_vl.fc1.weight');
      t.delete('itm_score.fc.bias');
      t.set('transformer.blocks.0.mlp_extra.weight', { dtype: 'float32', shape: [2], data: new Float32Array(2), fileDtype: 'F32' });
      const w = t.get('pooler.dense.weight')!;
      t.set('pooler.dense.weight', { ...w, shape: [16, 64], data: new Float32Array(16 * 64) });
    });
    const before = tf.memory().numTensors;
    const err = await loadVlmo(out).catch((e: unknown) => e);
    expect(isVlError(err, 'STATE_DICT_MISMATCH')).toBe(true);
    const message = (err as Error).message;
    for (const key of [
      'transformer.blocks.2.mlp_vl.fc1.weight',
      'itm_score.fc.bias',
      'transformer.blocks.0.mlp_extra.weight',
      'pooler.dense.weight',
    ]) {
      expect(message).toContain(key);
    }
    expect(message).toMatch(/2 missing.*1 unexpected.*1 mis-shaped/);
    expect(message).toContain('expected [32,32] got [16,64]');
    expect(tf.memory().numTensors).toBe(before); // the half-built model was disposed
  });

  it("skips and reports a released file's legacy index buffers, and cuts longer position rows as VLMo's loader does", async () => {
    const config = await readVlmoConfig(dir);
    const dims = vlmoDims(config);
    const out = await writeVariant('released-like', (t) => {
      const p = dims.numImageTokens;
      const n = dims.maxTextLen;
      t.set('relative_position_index', { dtype: 'int32', shape: [p, p], data: new Int32Array(p * p), fileDtype: 'I64' });
      t.set('text_relative_position_index', { dtype: 'int32', shape: [n, n], data: new Int32Array(n * n), fileDtype: 'I64' });
      t.set('text_imag_relative_position_index', {
        dtype: 'float32',
        shape: [n + p, n + p],
        data: new Float32Array((n + p) ** 2),
        fileDtype: 'F32',
      });
      const w = t.get('text_embeddings.position_embeddings.weight')!;
      const d = dims.hiddenSize;
      const longer = new Float32Array((n + 3) * d);
      longer.set(w.data as Float32Array);
      t.set('text_embeddings.position_embeddings.weight', { ...w, shape: [n + 3, d], data: longer });
      t.set('text_embeddings.position_ids', {
        dtype: 'int32',
        shape: [1, n + 3],
        data: Int32Array.from({ length: n + 3 }, (_, i) => i),
        fileDtype: 'I64',
      });
    });
    const report = await verifyVlmo({ checkpoint: out, inputs: join(dir, 'inputs.json'), expected: join(dir, 'expected.json') });
    expect(report.passed).toBe(true);
    expect(report.notes.join('\n')).toMatch(
      /skipped 3 legacy index buffer\(s\).*relative_position_index, text_relative_position_index, text_imag_relative_position_index/,
    );
    expect(report.notes.join('\n')).toMatch(/position rows cut from 12 to max_text_len 9/);
  });
});

describe('VLMo text length', () => {
  it('fusion: a text longer than max_text_len is an error that says to truncate, or is truncated when asked', async () => {
    const dir = dirOf('vlmo-seed0');
    const model = (await loadVlmo(dir)).eval();
    const inputs = await inputsOf(dir);
    const t = model.dims.maxTextLen;
    const image = tf.tensor(inputs.image.data, inputs.image.shape);
    const b = image.shape[0] as number;
    const longIds = tf.tensor2d(
      Int32Array.from({ length: b * (t + 2) }, (_, i) => 5 + (i % 50)),
      [b, t + 2],
      'int32',
    );
    const longMask = tf.onesLike(longIds);
    const err = (() => {
      try {
        model.fuse(image, longIds, longMask);
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(isVlError(err, 'SHAPE_MISMATCH')).toBe(true);
    expect((err as Error).message).toMatch(new RegExp(`${t + 2} tokens but max_text_len is ${t}.*truncate`));
    const cut = model.fitText(longIds, longMask, { truncate: true });
    expect(cut.ids.shape).toEqual([b, t]);
    expect(cut.ids.arraySync()).toEqual(
      (longIds.arraySync() as number[][]).map((row) => [...row.slice(0, t - 1), model.config.tokens.sep]),
    );
    const fused = model.fuse(image, longIds, longMask, { truncate: true });
    const byHand = model.fuse(image, cut.ids, cut.mask);
    expect(tf.max(tf.abs(tf.sub(fused.clsFeats, byHand.clsFeats))).dataSync()[0]).toBe(0);
    // A shorter text is padded to max_text_len in fusion (the expert split sits there): same as padding by hand.
    const ids = tf.tensor(inputs.text_ids.data, inputs.text_ids.shape, 'int32');
    const mask = tf.tensor(inputs.text_masks.data, inputs.text_masks.shape, 'int32');
    const short = tf.slice(ids, [1, 0], [1, 6]); // row 1 has 6 real tokens, then [PAD]s
    const shortFused = model.fuse(tf.slice(image, [1, 0, 0, 0], [1, -1, -1, -1]), short, tf.onesLike(short));
    const full = model.fuse(image, ids, mask);
    expect(shortFused.textFeats.shape).toEqual([1, t, model.dims.hiddenSize]);
    expect(tf.max(tf.abs(tf.sub(shortFused.clsFeats, tf.slice(full.clsFeats, [1, 0], [1, -1])))).dataSync()[0]).toBeLessThan(1e-6);
    model.dispose();
  });
});
