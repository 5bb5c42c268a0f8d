// Reads the repo's BLIP and ALBEF fixture checkpoints and checks them against an independent decoder and config facts.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors, writeSafetensors } from '../safetensors.js';
import { readSafetensorsFile, readSafetensorsHeader, writeSafetensorsFile } from '../../node/safetensors-file.js';
import { readJsonFile } from '../../node/json-file.js';
import { FIXTURE_CHECKPOINTS, makeTempDir, referenceDecode, sameBytes } from './helpers.js';

const cases = [
  ['blip-captioning', FIXTURE_CHECKPOINTS.blipCaptioning, 93],
  ['blip-retrieval', FIXTURE_CHECKPOINTS.blipRetrieval, 93],
  ['albef', FIXTURE_CHECKPOINTS.albef, 268],
] as const;

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups) await c();
});

describe.each(cases)('fixture %s', (_label, dir, tensorCount) => {
  const file = join(dir, 'model.safetensors');

  it('matches an independent decoder on every key, dtype, shape and value', async () => {
    const bytes = new Uint8Array(await readFile(file));
    const reference = referenceDecode(bytes);
    const { tensors, metadata } = await readSafetensorsFile(file);
    expect(metadata).toEqual({ format: 'pt' });
    expect(reference.metadata).toEqual({ format: 'pt' });
    expect(tensors.size).toBe(tensorCount);
    expect([...tensors.keys()].sort()).toEqual([...reference.tensors.keys()].sort());
    for (const [name, ref] of reference.tensors) {
      const t = tensors.get(name)!;
      expect(t.fileDtype, name).toBe(ref.dtype);
      expect(t.shape, name).toEqual(ref.shape);
      expect(t.dtype, name).toBe(ref.dtype === 'F32' ? 'float32' : 'int32');
      expect(t.data).toBeInstanceOf(ref.dtype === 'F32' ? Float32Array : Int32Array);
      expect(Array.from(t.data), name).toEqual(ref.values);
    }
  });

  it('reads the same from a buffer as from the file, and the header alone agrees', async () => {
    const bytes = new Uint8Array(await readFile(file));
    const fromFile = await readSafetensorsFile(file);
    const fromBuffer = readSafetensors(bytes, file);
    expect(fromBuffer).toEqual(fromFile);
    const header = await readSafetensorsHeader(file);
    expect(header.metadata).toEqual({ format: 'pt' });
    expect(8 + header.headerByteLength + header.dataByteLength).toBe(bytes.length);
    expect([...header.entries.keys()]).toEqual([...fromFile.tensors.keys()]);
    for (const [name, entry] of header.entries) {
      expect(entry.shape).toEqual(fromFile.tensors.get(name)!.shape);
      expect(entry.dtype).toBe(fromFile.tensors.get(name)!.fileDtype);
    }
  });

  it('round-trips write → read bit-exactly, and rewriting is idempotent', async () => {
    const original = await readSafetensorsFile(file);
    const bytes = writeSafetensors(original.tensors, original.metadata);
    const again = readSafetensors(bytes);
    expect(again.metadata).toEqual(original.metadata);
    expect([...again.tensors.keys()].sort()).toEqual([...original.tensors.keys()].sort());
    for (const [name, t] of original.tensors) {
      const u = again.tensors.get(name)!;
      expect(u.fileDtype).toBe(t.fileDtype);
      expect(u.shape).toEqual(t.shape);
      expect(u.data.constructor).toBe(t.data.constructor);
      expect(sameBytes(u.data, t.data), name).toBe(true);
    }
    expect(sameBytes(writeSafetensors(again.tensors, again.metadata), bytes)).toBe(true);

    const tmp = await makeTempDir('fixture');
    cleanups.push(tmp.cleanup);
    const out = join(tmp.dir, 'model.safetensors');
    await writeSafetensorsFile(out, original.tensors, original.metadata);
    expect(sameBytes(await readFile(out), bytes)).toBe(true);
  });
});

describe('fixture facts', () => {
  it('BLIP position_ids are I64 [1,64] holding 0..63, read as int32', async () => {
    for (const [dir, key] of [
      [FIXTURE_CHECKPOINTS.blipCaptioning, 'text_decoder.bert.embeddings.position_ids'],
      [FIXTURE_CHECKPOINTS.blipRetrieval, 'text_encoder.embeddings.position_ids'],
      [FIXTURE_CHECKPOINTS.albef, 'text_encoder.bert.embeddings.position_ids'],
    ] as const) {
      const { tensors } = await readSafetensorsFile(join(dir, 'model.safetensors'));
      const ids = tensors.get(key)!;
      expect(ids.fileDtype).toBe('I64');
      expect(ids.dtype).toBe('int32');
      expect(ids.shape).toEqual([1, 64]);
      expect(Array.from(ids.data)).toEqual(Array.from({ length: 64 }, (_, i) => i));
    }
  });

  it('BLIP captioning shapes follow its config.json', async () => {
    const dir = FIXTURE_CHECKPOINTS.blipCaptioning;
    const config = await readJsonFile<{
      text_config: { vocab_size: number; hidden_size: number; max_position_embeddings: number };
      vision_config: { hidden_size: number; image_size: number; patch_size: number; intermediate_size: number };
    }>(join(dir, 'config.json'));
    const { entries } = await readSafetensorsHeader(join(dir, 'model.safetensors'));
    const { text_config: text, vision_config: vision } = config;
    const tokens = (vision.image_size / vision.patch_size) ** 2 + 1;
    expect(entries.get('text_decoder.bert.embeddings.word_embeddings.weight')!.shape).toEqual([text.vocab_size, text.hidden_size]);
    expect(entries.get('text_decoder.bert.embeddings.position_embeddings.weight')!.shape).toEqual([
      text.max_position_embeddings,
      text.hidden_size,
    ]);
    expect(entries.get('text_decoder.cls.predictions.decoder.weight')!.shape).toEqual([text.vocab_size, text.hidden_size]);
    expect(entries.get('vision_model.embeddings.position_embedding')!.shape).toEqual([1, tokens, vision.hidden_size]);
    expect(entries.get('vision_model.embeddings.patch_embedding.weight')!.shape).toEqual([
      vision.hidden_size,
      3,
      vision.patch_size,
      vision.patch_size,
    ]);
    expect(entries.get('vision_model.encoder.layers.0.self_attn.qkv.weight')!.shape).toEqual([3 * vision.hidden_size, vision.hidden_size]);
    expect(entries.get('vision_model.encoder.layers.0.mlp.fc1.weight')!.shape).toEqual([vision.intermediate_size, vision.hidden_size]);
    // The tied decoder bias is not in the file (README: it is the same tensor as predictions.bias).
    expect(entries.has('text_decoder.cls.predictions.decoder.bias')).toBe(false);
    expect(entries.has('text_decoder.cls.predictions.bias')).toBe(true);
  });

  it('BLIP LayerNorm weights scatter around 1 and biases are not zero (README: "LayerNorm weights 1±0.1")', async () => {
    const { tensors } = await readSafetensorsFile(join(FIXTURE_CHECKPOINTS.blipRetrieval, 'model.safetensors'));
    const weight = Array.from(tensors.get('text_encoder.embeddings.LayerNorm.weight')!.data);
    const bias = Array.from(tensors.get('text_encoder.embeddings.LayerNorm.bias')!.data);
    const mean = weight.reduce((a, b) => a + b, 0) / weight.length;
    expect(Math.abs(mean - 1)).toBeLessThan(0.1);
    expect(new Set(weight).size).toBeGreaterThan(1);
    expect(Math.max(...bias.map(Math.abs))).toBeGreaterThan(0.01);
  });

  it('ALBEF: temp is a 0-d F32 equal to config temp, queue_ptr I64 [1], tied tensors stored twice, queue columns unit-norm', async () => {
    const dir = FIXTURE_CHECKPOINTS.albef;
    const config = await readJsonFile<{ albef_config: { temp: number; embed_dim: number; queue_size: number } }>(join(dir, 'config.json'));
    const { tensors } = await readSafetensorsFile(join(dir, 'model.safetensors'));
    const temp = tensors.get('temp')!;
    expect(temp.shape).toEqual([]);
    expect(temp.data.length).toBe(1);
    expect(temp.data[0]).toBe(Math.fround(config.albef_config.temp));
    const ptr = tensors.get('queue_ptr')!;
    expect(ptr.fileDtype).toBe('I64');
    expect(ptr.shape).toEqual([1]);
    const decoderWeight = tensors.get('text_encoder.cls.predictions.decoder.weight')!.data;
    const wordEmbeddings = tensors.get('text_encoder.bert.embeddings.word_embeddings.weight')!.data;
    expect(decoderWeight).toEqual(wordEmbeddings);
    const queue = tensors.get('image_queue')!;
    const [dim, size] = queue.shape as [number, number];
    expect([dim, size]).toEqual([config.albef_config.embed_dim, config.albef_config.queue_size]);
    for (let col = 0; col < size; col++) {
      let sq = 0;
      for (let row = 0; row < dim; row++) sq += queue.data[row * size + col]! ** 2;
      expect(Math.sqrt(sq)).toBeCloseTo(1, 5);
    }
  });
});
