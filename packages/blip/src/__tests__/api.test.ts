// The friendly API: caption() and match() on paths, encoded bytes and tensors, with the tokenizer
// loaded from the checkpoint folder; the same numbers as the low-level calls.
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime } from '@vl/core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlipForConditionalGeneration, BlipForImageTextRetrieval } from '../modeling.js';
import { pixelValuesFrom } from '../processor.js';
import { CAPTIONING, leakedTensors, RETRIEVAL } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'blip-api-'));
const capDir = join(tmp, 'cap');
const retDir = join(tmp, 'ret');
const images = [join(tmp, 'a.png'), join(tmp, 'b.jpg')];

/** A 99-entry BERT vocab matching the fixtures' ids: [PAD] 0, [SEP] 3, [CLS] 4, [DEC] 97, [ENC] 98. */
function fixtureVocab(): string[] {
  const words = 'a picture of the red blue green circle square on left right two one three photo small large top bottom and is'.split(' ');
  const v = ['[PAD]', '[UNK]', '[unused0]', '[SEP]', '[CLS]', '[MASK]', ...words];
  for (let i = 0; v.length < 97; i++) v.push(`w${i}`);
  return [...v, '[DEC]', '[ENC]'];
}

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
  for (const [src, dst] of [
    [CAPTIONING, capDir],
    [RETRIEVAL, retDir],
  ] as const) {
    cpSync(src, dst, { recursive: true });
    writeFileSync(join(dst, 'vocab.txt'), `${fixtureVocab().join('\n')}\n`);
  }
  const px = (seed: number) => Buffer.from(Array.from({ length: 40 * 48 * 3 }, (_, i) => (i * seed * 37) % 256));
  await sharp(px(3), { raw: { width: 48, height: 40, channels: 3 } })
    .png()
    .toFile(images[0] as string);
  await sharp(px(7), { raw: { width: 48, height: 40, channels: 3 } })
    .jpeg()
    .toFile(images[1] as string);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('caption', () => {
  it('loads the tokenizer from the folder and captions paths, bytes and tensors alike', async () => {
    const captioner = await BlipForConditionalGeneration.fromPretrained(capDir);
    expect(captioner.tokenizer?.tokenToId('[DEC]')).toBe(97);
    const fromPaths = await captioner.caption(images, { numBeams: 3, maxLength: 10 });
    const bytes = await Promise.all(images.map((p) => readFile(p)));
    const fromBytes = await captioner.caption(bytes, { numBeams: 3, maxLength: 10 });
    const pixels = await pixelValuesFrom(images, 32);
    const fromTensor = await captioner.caption(pixels, { numBeams: 3, maxLength: 10 });
    expect(fromPaths).toHaveLength(2);
    expect(fromBytes).toEqual(fromPaths);
    expect(fromTensor).toEqual(fromPaths);
    // The text is the decoded generate() output without special tokens.
    const out = await captioner.generate(pixels, { numBeams: 3, maxLength: 10 });
    expect(fromPaths).toEqual(out.sequences.map((s) => captioner.tokenizer?.decode(s).trim()));
    pixels.dispose();
    captioner.dispose();
  });

  it('a prompt conditions generation and is cut from the returned text', async () => {
    const captioner = await BlipForConditionalGeneration.fromPretrained(capDir);
    const tok = captioner.tokenizer;
    const [withPrompt] = await captioner.caption(images[0] as string, { prompt: 'a picture of ', maxLength: 12 });
    const pixels = await pixelValuesFrom(images[0] as string, 32);
    const ids = tok?.encode('a picture of ').ids as number[];
    const out = await captioner.generate(pixels, { inputIds: [ids], maxLength: 12 });
    const seq = out.sequences[0] as number[];
    expect(seq.slice(0, 4)).toEqual([97, ...ids.slice(1, 4)]); // [DEC] a picture of
    expect(withPrompt).toBe(tok?.decode(seq.slice(4)));
    pixels.dispose();
    captioner.dispose();
  });

  it('caption leaks no tensors', async () => {
    const captioner = await BlipForConditionalGeneration.fromPretrained(capDir);
    expect(
      await leakedTensors(async () => void (await captioner.caption(images, { prompt: 'a picture of ', numBeams: 2, maxLength: 9 }))),
    ).toBe(0);
    captioner.dispose();
  });
});

describe('match', () => {
  it('scores every image against every text: ITM probabilities and ITC cosine similarities', async () => {
    const model = await BlipForImageTextRetrieval.fromPretrained(retDir);
    const texts = ['a red circle', 'two blue squares on the left', 'photo'];
    const r = await model.match(images, texts);
    expect(r.itm).toHaveLength(2);
    expect(r.itm[0]).toHaveLength(3);
    for (const row of r.itm) for (const p of row) expect(p > 0 && p < 1).toBe(true);
    // ITC = forwardItc on the same tokens; ITM = forwardItm with [ENC] first, pair by pair.
    const tok = model.tokenizer;
    const enc = tok?.encodeBatch(texts, { maxLength: 35 });
    const encItm = tok?.encodeBatch(texts, { maxLength: 35, firstToken: '[ENC]' });
    if (!enc || !encItm) throw new Error('no tokenizer');
    const pixels = await pixelValuesFrom(images, 32);
    const ids = tf.tensor2d(enc.inputIds, [3, enc.seqLength], 'int32');
    const mask = tf.tensor2d(enc.attentionMask, [3, enc.seqLength], 'int32');
    const itc = model.forwardItc({ pixelValues: pixels, inputIds: ids, attentionMask: mask });
    const sim = (await itc.itmScore.array()) as number[][];
    for (let i = 0; i < 2; i++)
      for (let t = 0; t < 3; t++) expect(Math.abs((r.itc[i]?.[t] as number) - (sim[i]?.[t] as number))).toBeLessThan(1e-5);
    const one = model.forwardItm({
      pixelValues: tf.slice(pixels, [1, 0, 0, 0], [1, -1, -1, -1]),
      inputIds: tf.tensor2d(encItm.inputIds.slice(2 * encItm.seqLength), [1, encItm.seqLength], 'int32'),
      attentionMask: tf.tensor2d(encItm.attentionMask.slice(2 * encItm.seqLength), [1, encItm.seqLength], 'int32'),
    });
    const p = tf.softmax(one.itmScore).dataSync()[1] as number;
    expect(Math.abs((r.itm[1]?.[2] as number) - p)).toBeLessThan(1e-5);
    tf.dispose([pixels, ids, mask, ...Object.values(itc), ...Object.values(one)]);
    expect(await leakedTensors(async () => void (await model.match(images, texts)))).toBe(0);
    model.dispose();
  });
});

describe('caption and match commands', () => {
  it('print one caption per image and one score row per pair', async () => {
    const { runCli } = await import('../cli.js');
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    expect(
      await runCli(['caption', '--model', capDir, '--beams', '3', '--max-length', '10', '--json', '--backend', 'cpu', ...images], io),
    ).toBe(0);
    const captioner = await BlipForConditionalGeneration.fromPretrained(capDir);
    const expected = await captioner.caption(images, { numBeams: 3, maxLength: 10 });
    captioner.dispose();
    expect(lines.map((l) => (JSON.parse(l) as { caption: string }).caption)).toEqual(expected);
    lines.length = 0;
    expect(await runCli(['match', '--model', retDir, '--text', 'a red circle', '--text', 'photo', '--backend', 'cpu', ...images], io)).toBe(
      0,
    );
    expect(lines).toHaveLength(1 + 4);
    expect(lines[1]).toMatch(/a\.png\ta red circle\t0\.\d{4}\t-?\d\.\d{4}/);
  });
});
