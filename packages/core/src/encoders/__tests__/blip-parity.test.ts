// BLIP-style vision and text encoders built from core pieces against the Hugging Face reference
// checkpoints in /fixtures: identical state-dict keys and shapes, and the reference outputs
// (max abs diff ≤ 1e-4, the fixtures' stated tolerance).
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { KVCache } from '../../attention/kv-cache.js';
import { initRuntime } from '../../runtime/backend.js';
import { maxAbsDiff } from '../../attention/__tests__/helpers.js';
import { blipConfig, FIXTURES, jsonTensor, readJson, readSafetensors, TinyBlipCaptioner, TinyBlipRetrieval } from './blip-fixture.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

function shapesOf(dict: Map<string, tf.Tensor>): Map<string, number[]> {
  return new Map([...dict].map(([k, t]) => [k, t.shape]));
}

const TOL = 1e-4;

describe('BLIP captioning checkpoint (HF transformers 4.30.2)', () => {
  const dir = 'blip-captioning-seed0';
  const file = readSafetensors(new URL(`${dir}/model.safetensors`, FIXTURES));
  const inputs = readJson(new URL(`${dir}/inputs.json`, FIXTURES));
  const expected = (readJson(new URL(`${dir}/expected.json`, FIXTURES)) as { outputs: Record<string, unknown> }).outputs;

  it('vision_model.* and text_decoder.* keys and shapes equal the file', () => {
    const model = new TinyBlipCaptioner(blipConfig(dir));
    const ours = shapesOf(model.stateDict());
    const theirs = new Map([...file.header].map(([k, e]) => [k, e.shape]));
    expect([...ours.keys()].sort()).toEqual([...theirs.keys()].sort());
    for (const [k, shape] of theirs) expect(ours.get(k), k).toEqual(shape);
    expect(model.storedDtypes().get('text_decoder.bert.embeddings.position_ids')).toBe('I64');
    model.dispose();
  });

  it('reproduces image_embeds, the pooler output and teacher-forced decoder logits', () => {
    const model = new TinyBlipCaptioner(blipConfig(dir));
    model.loadStateDict(file.tensors, { source: dir });
    model.eval();
    const pixels = jsonTensor(inputs.pixel_values);
    const ids = jsonTensor(inputs.input_ids);
    const mask = jsonTensor(inputs.attention_mask);
    const vision = model.vision.forward(pixels);
    expect(maxAbsDiff(vision.lastHiddenState, jsonTensor(expected.image_embeds))).toBeLessThan(TOL);
    expect(maxAbsDiff(vision.poolerOutput, jsonTensor(expected.vision_pooler_output))).toBeLessThan(TOL);
    const text = model.bert.forward({ inputIds: ids, attentionMask: mask, encoderHiddenStates: vision.lastHiddenState });
    const logits = model.lmHead.forward(text.lastHiddenState);
    // Padded positions included, as the fixture says.
    expect(maxAbsDiff(logits, jsonTensor(expected.decoder_logits))).toBeLessThan(TOL);
    model.dispose();
  });

  it('cached decoding with cross-attention, token by token, equals full recomputation', () => {
    const model = new TinyBlipCaptioner(blipConfig(dir));
    model.loadStateDict(file.tensors);
    model.eval();
    const image = model.vision.forward(jsonTensor(inputs.pixel_values)).lastHiddenState;
    const ids = jsonTensor(inputs.input_ids);
    const mask = jsonTensor(inputs.attention_mask);
    const [b, t] = ids.shape as [number, number];
    const full = model.lmHead.forward(
      model.bert.forward({ inputIds: ids, attentionMask: mask, encoderHiddenStates: image }).lastHiddenState,
    );
    const cache = new KVCache(model.bert.layer.length);
    const steps: tf.Tensor[] = [];
    // A 3-token prompt first, then one token at a time; image features only on the first call.
    const chunks: [number, number][] = [
      [0, 3],
      [3, 1],
      [4, 1],
      [5, 1],
      [6, 1],
    ];
    for (const [start, len] of chunks) {
      const out = model.bert.forward({
        inputIds: tf.slice(ids, [0, start], [b, len]),
        attentionMask: tf.slice(mask, [0, 0], [b, start + len]),
        encoderHiddenStates: start === 0 ? image : null,
        cache,
      });
      steps.push(model.lmHead.forward(out.lastHiddenState));
      expect(cache.length).toBe(start + len);
    }
    expect(maxAbsDiff(tf.concat(steps, 1), full)).toBeLessThan(1e-5);
    expect(t).toBe(7);
    // Beam-style reorder: duplicating row 1 then decoding one more token equals row 1's path.
    cache.reorder([1, 1]);
    const next = tf.tensor2d([[5], [5]], [2, 1], 'int32');
    // The mask keeps row 1's padding (positions 5, 6), which the cached keys were computed under.
    const row1Mask = tf.concat([tf.slice(mask, [1, 0], [1, 7]), tf.ones([1, 1])], 1); // [1, 8]
    const both = model.bert.forward({ inputIds: next, attentionMask: tf.tile(row1Mask, [2, 1]), cache }).lastHiddenState;
    const ref = model.bert.forward({
      inputIds: tf.concat([tf.slice(ids, [1, 0], [1, 7]), tf.tensor2d([[5]], [1, 1], 'int32')], 1),
      attentionMask: row1Mask,
      encoderHiddenStates: tf.slice(image, [1, 0, 0], [1, 17, 32]),
    }).lastHiddenState;
    const last = tf.slice(ref, [0, 7, 0], [1, 1, 32]);
    expect(maxAbsDiff(tf.slice(both, [0, 0, 0], [1, 1, 32]), last)).toBeLessThan(1e-5);
    expect(maxAbsDiff(tf.slice(both, [1, 0, 0], [1, 1, 32]), last)).toBeLessThan(1e-5);
    cache.dispose();
    model.dispose();
  });
});

describe('BLIP retrieval checkpoint (HF transformers 4.30.2)', () => {
  const dir = 'blip-retrieval-seed0';
  const file = readSafetensors(new URL(`${dir}/model.safetensors`, FIXTURES));
  const inputs = readJson(new URL(`${dir}/inputs.json`, FIXTURES));
  const expected = (readJson(new URL(`${dir}/expected.json`, FIXTURES)) as { outputs: Record<string, unknown> }).outputs;

  it('keys and shapes equal the file; the image-grounded and text-only encoders reproduce the reference', () => {
    const model = new TinyBlipRetrieval(blipConfig(dir));
    const ours = shapesOf(model.stateDict());
    const theirs = new Map([...file.header].map(([k, e]) => [k, e.shape]));
    expect([...ours.keys()].sort()).toEqual([...theirs.keys()].sort());
    for (const [k, shape] of theirs) expect(ours.get(k), k).toEqual(shape);
    model.loadStateDict(file.tensors, { source: dir });
    model.eval();
    const ids = jsonTensor(inputs.input_ids);
    const mask = jsonTensor(inputs.attention_mask);
    const image = model.vision.forward(jsonTensor(inputs.pixel_values)).lastHiddenState;
    expect(maxAbsDiff(image, jsonTensor(expected.image_embeds))).toBeLessThan(TOL);
    const itm = model.text.forward({ inputIds: ids, attentionMask: mask, encoderHiddenStates: image }).lastHiddenState;
    expect(maxAbsDiff(itm, jsonTensor(expected.itm_question_embeds))).toBeLessThan(TOL);
    const cls = (h: tf.Tensor) => tf.reshape(tf.slice(h, [0, 0, 0], [2, 1, 32]), [2, 32]);
    expect(maxAbsDiff(model.itmHead.forward(cls(itm)), jsonTensor(expected.itm_logits))).toBeLessThan(TOL);
    // Text-only: the same stack without image features skips cross-attention.
    const itc = model.text.forward({ inputIds: ids, attentionMask: mask }).lastHiddenState;
    expect(maxAbsDiff(itc, jsonTensor(expected.itc_question_embeds))).toBeLessThan(TOL);
    const imageFeat = model.visionProj.forward(cls(image));
    const textFeat = model.textProj.forward(cls(itc));
    expect(maxAbsDiff(imageFeat, jsonTensor(expected.itc_image_feat))).toBeLessThan(TOL);
    expect(maxAbsDiff(textFeat, jsonTensor(expected.itc_text_feat))).toBeLessThan(TOL);
    expect(maxAbsDiff(tf.matMul(imageFeat, textFeat, false, true), jsonTensor(expected.itc_similarity))).toBeLessThan(TOL);
    model.dispose();
  });
});
