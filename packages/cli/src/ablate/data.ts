// Ablation data: core's synthetic captioned scenes, planned and drawn in memory (the same records
// and pixels `vl data synth` writes for the same seed, before PNG encoding), normalised and
// tokenised once per distinct data config and shared by every variant and seed that uses it.
import { BertTokenizer, drawScene, MODEL_IMAGE_NORMS, planSynthDataset, Rng, type SynthRecord, synthVocabulary } from '@vl/core';
import type { DataConfig } from './config.js';

export interface ImageSet {
  /** [N, 3, S, S] normalised pixels. */
  pixels: Float32Array;
  count: number;
  size: number;
}

export interface CaptionSet {
  /** [P, L] */
  inputIds: Int32Array;
  /** [P, L] */
  attentionMask: Int32Array;
  seqLength: number;
  /** Image index (into the ImageSet) of each caption. */
  imageOf: Int32Array;
}

export interface PreparedData {
  key: string;
  vocabSize: number;
  tokens: { pad: number; unk: number; cls: number; sep: number; mask: number };
  train: { images: ImageSet; captions: CaptionSet; noisy: number };
  eval: { images: ImageSet; captions: CaptionSet };
  summary: { trainImages: number; trainCaptions: number; noisyCaptions: number; evalImages: number; evalCaptions: number };
}

/** Scene pixels as the synth writer draws them: same seed and record id → same image. */
function render(records: readonly SynthRecord[], seed: number, size: number): ImageSet {
  const { mean, std } = MODEL_IMAGE_NORMS.albef;
  const plane = size * size;
  const pixels = new Float32Array(records.length * 3 * plane);
  records.forEach((rec, n) => {
    const px = drawScene(rec.scene, size, new Rng(seed).fork(`pixels/${rec.id}`)); // HWC RGB
    const base = n * 3 * plane;
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) pixels[base + c * plane + i] = (px[i * 3 + c]! / 255 - mean[c]!) / std[c]!; // → CHW
    }
  });
  return { pixels, count: records.length, size };
}

function captions(records: readonly SynthRecord[], tokenizer: BertTokenizer, maxLength: number): CaptionSet & { noisy: number } {
  const texts: string[] = [];
  const imageOf: number[] = [];
  let noisy = 0;
  records.forEach((rec, i) => {
    rec.captions.forEach((text, c) => {
      texts.push(text);
      imageOf.push(i);
      if (rec.noise[c]) noisy++;
    });
  });
  const enc = tokenizer.encodeBatch(texts, { maxLength, truncation: true, padding: 'max_length' });
  return { inputIds: enc.inputIds, attentionMask: enc.attentionMask, seqLength: enc.seqLength, imageOf: Int32Array.from(imageOf), noisy };
}

export function dataKey(spec: DataConfig): string {
  return JSON.stringify([
    spec.images,
    spec.imageSize,
    spec.captionsPerImage,
    spec.noise,
    spec.seed,
    spec.maxLength,
    spec.evalImages,
    spec.splits,
  ]);
}

export function prepareSynthData(spec: DataConfig): PreparedData {
  const { records } = planSynthDataset({
    out: '',
    images: spec.images,
    seed: spec.seed,
    noise: spec.noise,
    imageSize: spec.imageSize,
    captionsPerImage: spec.captionsPerImage,
    splits: spec.splits,
  });
  const vocab = synthVocabulary();
  const tokenizer = BertTokenizer.fromVocab(vocab);
  const id = (t: string) => tokenizer.tokenToId(t) ?? 0;
  const train = records.filter((r) => r.split === 'train');
  const test = records.filter((r) => r.split === 'test').slice(0, spec.evalImages);
  const trainCaps = captions(train, tokenizer, spec.maxLength);
  const evalCaps = captions(test, tokenizer, spec.maxLength);
  return {
    key: dataKey(spec),
    vocabSize: vocab.length,
    tokens: { pad: id('[PAD]'), unk: id('[UNK]'), cls: id('[CLS]'), sep: id('[SEP]'), mask: id('[MASK]') },
    train: { images: render(train, spec.seed, spec.imageSize), captions: trainCaps, noisy: trainCaps.noisy },
    eval: { images: render(test, spec.seed, spec.imageSize), captions: evalCaps },
    summary: {
      trainImages: train.length,
      trainCaptions: trainCaps.imageOf.length,
      noisyCaptions: trainCaps.noisy,
      evalImages: test.length,
      evalCaptions: evalCaps.imageOf.length,
    },
  };
}

/** One epoch's batches of (image, caption) pairs, shuffled by (seed, epoch); a last partial batch is dropped. */
export function* pairBatches(
  data: PreparedData['train'],
  batchSize: number,
  seed: number,
  epoch: number,
): Generator<{
  pixels: { data: Float32Array; shape: [number, number, number, number] };
  inputIds: Int32Array;
  attentionMask: Int32Array;
  seqLength: number;
  imageIds: number[];
}> {
  const { images, captions: caps } = data;
  const n = caps.imageOf.length;
  const order = new Rng(seed).fork(`epoch-${epoch}`).shuffle(Array.from({ length: n }, (_, i) => i));
  const L = caps.seqLength;
  const per = 3 * images.size * images.size;
  for (let s = 0; s + batchSize <= n; s += batchSize) {
    const idx = order.slice(s, s + batchSize);
    const pixels = new Float32Array(batchSize * per);
    const inputIds = new Int32Array(batchSize * L);
    const attentionMask = new Int32Array(batchSize * L);
    const imageIds: number[] = [];
    idx.forEach((p, k) => {
      const img = caps.imageOf[p]!;
      pixels.set(images.pixels.subarray(img * per, (img + 1) * per), k * per);
      inputIds.set(caps.inputIds.subarray(p * L, (p + 1) * L), k * L);
      attentionMask.set(caps.attentionMask.subarray(p * L, (p + 1) * L), k * L);
      imageIds.push(img);
    });
    // A batch where every pair shows one image has no ITM negative; skip it (never happens with ≥ 2 images per batch).
    if (new Set(imageIds).size < 2) continue;
    yield { pixels: { data: pixels, shape: [batchSize, 3, images.size, images.size] }, inputIds, attentionMask, seqLength: L, imageIds };
  }
}
