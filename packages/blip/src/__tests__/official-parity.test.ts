// Salesforce's original BLIP checkpoints (fixtures/blip-official) through @vl/blip: `verify` reproduces every output
// of the three reference classes from model.safetensors and from pytorch_model.pth (a folder or the file itself);
// the same files load into the inference classes the way Hugging Face's converter uses them, with every key that is
// not read listed with its reason; `vl convert` and the spec's key map go both ways.
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { type DecodedTensor, decodeTensorJson, initRuntime, isVlError, Rng, type TensorJson } from '@vl/core';
import { readExpectedFile, readSafetensorsFile, readTensorJsonFile } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli.js';
import { blipModel } from '../model-spec.js';
import { BlipForConditionalGeneration, BlipForImageTextRetrieval } from '../modeling.js';
import type { OfficialBlipClass } from '../official-keys.js';
import { BlipForPretraining, type PretrainBatch } from '../pretraining.js';
import { BlipForRetrievalTraining } from '../retrieval-training.js';
import { verifyCheckpoint } from '../verify.js';
import { OFFICIAL, OFFICIAL_CLASSES } from './official-helpers.js';

const OUTPUTS: Readonly<Record<OfficialBlipClass, readonly string[]>> = {
  BLIP_Decoder: ['image_embeds', 'decoder_logits', 'loss_lm', 'greedy_sequences', 'beam_sequences', 'greedy_sequence_logits'],
  BLIP_Retrieval: [
    'image_embeds',
    'image_feat',
    'text_embeds',
    'text_feat',
    'sim_i2t',
    'sim_t2i',
    'sim_targets',
    'loss_ita_static',
    'itm_pos_embeds',
    'itm_logits_pos',
    'itm_logits_all',
    'loss_itm_static',
  ],
  BLIP_Pretrain: [
    'image_embeds',
    'image_feat',
    'text_embeds',
    'text_feat',
    'sim_i2t',
    'sim_t2i',
    'loss_ita_static',
    'itm_pos_embeds',
    'itm_logits_pos',
    'itm_logits_all',
    'loss_itm_static',
    'decoder_logits',
    'loss_lm_static',
  ],
};

let tmp: string;
beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
  tmp = await mkdtemp(join(tmpdir(), 'vl-blip-official-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A folder holding config.json and only the given weights file of a fixture. */
async function onlyFile(cls: OfficialBlipClass, file: string): Promise<string> {
  const dir = join(tmp, `${cls}-${file}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir);
  await copyFile(join(OFFICIAL[cls], 'config.json'), join(dir, 'config.json'));
  await copyFile(join(OFFICIAL[cls], file), join(dir, file));
  return dir;
}

async function expectPasses(cls: OfficialBlipClass, model: string): Promise<void> {
  const dir = OFFICIAL[cls];
  const { modelClass, report } = await verifyCheckpoint({
    model,
    inputs: join(dir, 'inputs.json'),
    expected: join(dir, 'expected.json'),
    tol: 1e-4,
  });
  expect(modelClass).toBe(cls);
  expect(report.checks.map((c) => c.name).sort()).toEqual([...OUTPUTS[cls]].sort());
  for (const c of report.checks) {
    expect(c.passed, `${cls} ${c.name}: max abs diff ${c.maxAbsDiff} ${c.note ?? ''}`).toBe(true);
    if (c.kind === 'int') expect(c.maxAbsDiff).toBe(0);
  }
}

describe('verify on the original BLIP fixtures', () => {
  for (const cls of OFFICIAL_CLASSES) {
    it(`${cls}: every output within 1e-4 (ids exact) from model.safetensors and from pytorch_model.pth`, async () => {
      const before = tf.memory().numTensors;
      await expectPasses(cls, join(OFFICIAL[cls], 'model.safetensors'));
      await expectPasses(cls, join(OFFICIAL[cls], 'pytorch_model.pth'));
      await expectPasses(cls, await onlyFile(cls, 'pytorch_model.pth'));
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('`vl verify blip --checkpoint FILE.pth --grads` exits 0: every output, and the gradients of ITC, ITM and LM', async () => {
    const dir = OFFICIAL.BLIP_Pretrain;
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    const args = [
      'verify',
      '--checkpoint',
      join(dir, 'pytorch_model.pth'),
      '--inputs',
      join(dir, 'inputs.json'),
      '--expected',
      join(dir, 'expected.json'),
    ];
    expect(await runCli([...args, '--grads', join(dir, 'grads.safetensors'), '--backend', 'cpu'], io)).toBe(0);
    const text = lines.join('\n');
    expect(text).toMatch(/^BLIP_Pretrain .*pytorch_model\.pth/);
    // Core's gradient comparison: each loss's value, and one row per loss over all its tensors (99, 126 and 129
    // parameters, as grads.json counts them; the LM head's gradient added onto the word embeddings it is tied to).
    for (const loss of ['ita', 'itm', 'lm']) expect(text).toMatch(new RegExp(`^${loss} loss .* ok$`, 'm'));
    expect(text).toMatch(/^ita gradients .* ok \(99 tensors;/m);
    expect(text).toMatch(/^itm gradients .* ok \(126 tensors;/m);
    expect(text).toMatch(/^lm gradients .* ok \(129 tensors;/m);
    expect(text).toContain('all outputs within tolerance');
    // Past a tiny tolerance the gradient checks fail too.
    lines.length = 0;
    expect(await runCli([...args, '--grads', join(dir, 'grads.safetensors'), '--tol', '1e-9', '--backend', 'cpu'], io)).toBe(1);
    expect(lines.join('\n')).toMatch(/^ita gradients .*FAIL/m);
    // Gradient fixtures exist for BLIP_Pretrain only.
    const r = OFFICIAL.BLIP_Retrieval;
    const other = ['verify', '--checkpoint', r, '--inputs', join(r, 'inputs.json'), '--expected', join(r, 'expected.json')];
    expect(await runCli([...other, '--grads', join(dir, 'grads.safetensors'), '--backend', 'cpu'], io)).not.toBe(0);
  });
});

/** Reads expected.json outputs and inputs.json tensors of a fixture. */
async function fixture(cls: OfficialBlipClass) {
  const dir = OFFICIAL[cls];
  return {
    expected: (await readExpectedFile(join(dir, 'expected.json'))).outputs,
    inputs: (await readTensorJsonFile(join(dir, 'inputs.json'))).tensors,
  };
}

const tensor = (t: DecodedTensor | undefined) => tf.tensor(t!.data, t!.shape, t!.kind === 'int' ? 'int32' : 'float32');

async function maxDiff(actual: tf.Tensor, expected: DecodedTensor | undefined): Promise<number> {
  expect(actual.shape).toEqual(expected!.shape);
  const a = await actual.data();
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (expected!.data[i] as number)));
  return m;
}

describe('official checkpoints into the inference classes', () => {
  it("BLIP_Pretrain → BlipForConditionalGeneration (Hugging Face's converter path): the pretrain decoder's logits, unused keys with reasons", async () => {
    const { expected, inputs } = await fixture('BLIP_Pretrain');
    const model = await BlipForConditionalGeneration.fromPretrained(join(OFFICIAL.BLIP_Pretrain, 'pytorch_model.pth'), { tokenizer: null });
    const logits = model.forward({
      pixelValues: tensor(inputs.image),
      inputIds: tensor(inputs.decoder_input_ids),
      attentionMask: tensor(inputs.attention_mask),
    });
    expect(await maxDiff(logits.decoderLogits, expected.decoder_logits)).toBeLessThan(1e-4);
    tf.dispose([logits.decoderLogits, logits.imageEmbeds]);
    const report = model.checkpointReport!;
    expect(report).toMatchObject({ layout: 'official', officialClass: 'BLIP_Pretrain', target: 'BlipForConditionalGeneration' });
    const unused = new Map(report.unused.map((u) => [u.key, u.reason]));
    expect([...unused.keys()].every((k) => !k.startsWith('text_decoder.') && !k.startsWith('visual_encoder.'))).toBe(true);
    expect(unused.get('text_encoder_m.embeddings.LayerNorm.weight')).toMatch(/momentum twin/);
    expect(unused.get('queue_ptr')).toMatch(/queue/);
    expect(unused.size).toBe(354 - 132); // everything but BLIP_Decoder's 132 entries
    expect(report.tied).toEqual([{ key: 'text_decoder.cls.predictions.decoder.bias', source: 'text_decoder.cls.predictions.bias' }]);
    model.dispose();
  });

  it('BLIP_Retrieval → BlipForImageTextRetrieval: ITM logits and ITC features; twins, queues and temp listed as unused', async () => {
    const { expected, inputs } = await fixture('BLIP_Retrieval');
    const model = await BlipForImageTextRetrieval.fromPretrained(OFFICIAL.BLIP_Retrieval, { tokenizer: null });
    const pixels = tensor(inputs.image);
    const itm = model.forwardItm({
      pixelValues: pixels,
      inputIds: tensor(inputs.encoder_input_ids),
      attentionMask: tensor(inputs.attention_mask),
    });
    expect(await maxDiff(itm.itmScore, expected.itm_logits_pos)).toBeLessThan(1e-4);
    expect(await maxDiff(itm.questionEmbeds, expected.itm_pos_embeds)).toBeLessThan(1e-4);
    const itc = model.forwardItc({ pixelValues: pixels, inputIds: tensor(inputs.input_ids), attentionMask: tensor(inputs.attention_mask) });
    expect(await maxDiff(itc.imageFeat, expected.image_feat)).toBeLessThan(1e-4);
    expect(await maxDiff(itc.textFeat, expected.text_feat)).toBeLessThan(1e-4);
    tf.dispose([pixels, ...Object.values(itm), ...Object.values(itc)]);
    const reasons = new Set(model.checkpointReport!.unused.map((u) => u.reason.split(':')[0]));
    expect([...reasons].sort()).toEqual(
      [
        'a momentum twin (training state',
        'the ITC feature queue (training state)',
        'the learned ITC temperature (training; inference ranks by cosine similarity)',
      ].sort(),
    );
    model.dispose();
  });

  it('a captioner checkpoint has no text encoder: loading it as a retrieval model lists the missing keys', async () => {
    const err = await BlipForImageTextRetrieval.fromPretrained(OFFICIAL.BLIP_Decoder, { tokenizer: null }).catch((e: unknown) => e);
    expect(isVlError(err, 'STATE_DICT_MISMATCH')).toBe(true);
    expect((err as Error).message).toMatch(/missing.*text_encoder\.embeddings\.word_embeddings\.weight/s);
  });

  it("BLIP_Pretrain → BlipForRetrievalTraining (train_retrieval.py's start): the queue's image ids are filled, with the reason", async () => {
    const model = await BlipForRetrievalTraining.fromPretrained(OFFICIAL.BLIP_Pretrain);
    expect(model.checkpointReport!.filled).toEqual([
      { key: 'queues.idx_queue', reason: expect.stringMatching(/BLIP_Pretrain keeps no image ids/) as unknown as string },
    ]);
    expect(Array.from(model.queues.get('idx_queue').dataSync())).toEqual(Array(8).fill(-100));
    expect(model.checkpointReport!.unused.every((u) => u.key.startsWith('text_decoder.'))).toBe(true);
    model.dispose();
  });

  it("another image size resizes the position embeddings as BLIP's load_checkpoint does, and says so", async () => {
    const dir = join(tmp, 'decoder-32px');
    await mkdir(dir, { recursive: true });
    const config = JSON.parse(await readFile(join(OFFICIAL.BLIP_Decoder, 'config.json'), 'utf8')) as {
      model_kwargs: { image_size: number };
    };
    config.model_kwargs.image_size = 32; // a 4×4 patch grid in the file, 8×8 for the model
    await writeFile(join(dir, 'config.json'), JSON.stringify(config));
    await copyFile(join(OFFICIAL.BLIP_Decoder, 'model.safetensors'), join(dir, 'model.safetensors'));
    const model = await BlipForConditionalGeneration.fromPretrained(dir, { tokenizer: null });
    expect(model.checkpointReport!.resized).toEqual([
      { key: 'vision_model.embeddings.position_embedding', from: [1, 17, 24], to: [1, 65, 24] },
    ]);
    const out = model.visionForward(tf.zeros([1, 3, 32, 32]));
    expect(out.lastHiddenState.shape).toEqual([1, 65, 24]);
    tf.dispose([out.lastHiddenState, out.poolerOutput]);
    model.dispose();
  });

  it('without config.json the sizes come from the shapes, which needs the bert-base-uncased vocabulary: the tiny fixture is refused with a hint', async () => {
    const dir = join(tmp, 'no-config');
    await mkdir(dir, { recursive: true });
    await copyFile(join(OFFICIAL.BLIP_Decoder, 'pytorch_model.pth'), join(dir, 'model_base_caption_capfilt_large.pth'));
    const err = await BlipForConditionalGeneration.fromPretrained(join(dir, 'model_base_caption_capfilt_large.pth')).catch(
      (e: unknown) => e,
    );
    expect(isVlError(err, 'CONFIG_INVALID')).toBe(true);
    expect((err as Error).message).toMatch(/99 entries, not bert-base-uncased/);
    // A Hugging Face config.json next to original weights is refused too.
    await writeFile(join(dir, 'config.json'), JSON.stringify({ architectures: ['BlipForConditionalGeneration'] }));
    const err2 = await BlipForConditionalGeneration.fromPretrained(dir).catch((e: unknown) => e);
    expect((err2 as Error).message).toMatch(/Hugging Face's form, but the weights use the original BLIP names/);
  });
});

describe("the training classes' forward against the reference's forward()", () => {
  /** The recorded `informative` values of a fixture: forward()'s losses and the queues after it. */
  async function informative(cls: OfficialBlipClass): Promise<Record<string, DecodedTensor>> {
    const raw = (await readTensorJsonFile(join(OFFICIAL[cls], 'expected.json'))).other.informative as Record<string, TensorJson>;
    return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, decodeTensorJson(v, k)]));
  }

  async function batchOf(cls: OfficialBlipClass, withIds: boolean): Promise<PretrainBatch> {
    const { inputs } = await fixture(cls);
    const [b, t] = inputs.input_ids!.shape as [number, number];
    return {
      pixels: inputs.image!.data as Float32Array,
      imageSize: inputs.image!.shape[2] as number,
      inputIds: inputs.input_ids!.data as Int32Array,
      attentionMask: inputs.attention_mask!.data as Int32Array,
      batchSize: b,
      seqLength: t,
      imageIds: withIds ? Array.from(inputs.idx!.data) : undefined,
    };
  }

  // With a batch of 2 every hard negative is forced (the other pair), so our draws equal the recorded ones.
  it('BlipForPretraining.forward: loss_ita, loss_itm, loss_lm and the queues after it', async () => {
    const rec = await informative('BLIP_Pretrain');
    const model = (await BlipForPretraining.fromPretrained(OFFICIAL.BLIP_Pretrain)).eval();
    const r = model.forward(await batchOf('BLIP_Pretrain', false), { rng: new Rng(0), alpha: 0.4 });
    expect(await maxDiff(r.losses.itc!, rec.loss_ita)).toBeLessThan(1e-4);
    expect(await maxDiff(r.losses.itm!, rec.loss_itm)).toBeLessThan(1e-4);
    expect(await maxDiff(r.losses.lm!, rec.loss_lm)).toBeLessThan(1e-4);
    tf.dispose([r.loss, ...Object.values(r.losses)]);
    expect(await maxDiff(model.queues!.get('image_queue'), rec.forward_image_queue_after)).toBeLessThan(1e-4);
    expect(await maxDiff(model.queues!.get('text_queue'), rec.forward_text_queue_after)).toBeLessThan(1e-4);
    expect(model.queues!.pointer).toBe(rec.forward_queue_ptr_after!.data[0]);
    model.dispose();
  });

  it('BlipForRetrievalTraining.forward: loss_ita, loss_itm and the queues, ids and pointer after it', async () => {
    const rec = await informative('BLIP_Retrieval');
    const model = await BlipForRetrievalTraining.fromPretrained(OFFICIAL.BLIP_Retrieval);
    const r = model.forward(await batchOf('BLIP_Retrieval', true), { rng: new Rng(0), alpha: 0.4 });
    expect(await maxDiff(r.losses.itc!, rec.loss_ita)).toBeLessThan(1e-4);
    expect(await maxDiff(r.losses.itm!, rec.loss_itm)).toBeLessThan(1e-4);
    tf.dispose([r.loss, ...Object.values(r.losses)]);
    expect(await maxDiff(model.queues.get('image_queue'), rec.forward_image_queue_after)).toBeLessThan(1e-4);
    expect(await maxDiff(model.queues.get('text_queue'), rec.forward_text_queue_after)).toBeLessThan(1e-4);
    expect(Array.from(model.queues.get('idx_queue').dataSync())).toEqual(Array.from(rec.forward_idx_queue_after!.data));
    expect(model.queues.pointer).toBe(rec.forward_ptr_queue_after!.data[0]);
    model.dispose();
  });
});

describe('the BLIP ModelSpec key map, both ways', () => {
  it('toOfficial gives back each reference state dict bit for bit; fromPretrained picks the class from the keys', async () => {
    const kinds = {
      BLIP_Decoder: BlipForConditionalGeneration,
      BLIP_Retrieval: BlipForRetrievalTraining,
      BLIP_Pretrain: BlipForPretraining,
    };
    for (const cls of OFFICIAL_CLASSES) {
      const model = await blipModel.checkpoint.fromPretrained(join(OFFICIAL[cls], 'pytorch_model.pth'));
      expect(model).toBeInstanceOf(kinds[cls]);
      const official = blipModel.checkpoint.keyMap.toOfficial(model);
      const { tensors } = await readSafetensorsFile(join(OFFICIAL[cls], 'model.safetensors'));
      expect([...official.keys()].sort()).toEqual([...tensors.keys()].sort());
      for (const [k, v] of tensors) {
        expect(official.get(k)!.shape, k).toEqual(v.shape);
        expect(Buffer.from(official.get(k)!.data.buffer).equals(Buffer.from(v.data.buffer)), k).toBe(true);
      }
      model.dispose();
    }
  });

  it('`vl convert blip` turns an original .pth into our layout, which passes verify', async () => {
    const out = join(tmp, 'converted-retrieval');
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    const code = await runCli(
      ['convert', '--in', join(OFFICIAL.BLIP_Retrieval, 'pytorch_model.pth'), '--out', out, '--backend', 'cpu'],
      io,
    );
    expect(code, lines.join('\n')).toBe(0);
    expect(lines.join('\n')).toContain('unused keys: none');
    await expectPasses('BLIP_Retrieval', out);
  });
});
