// Ablation data: core's synthetic captioned scenes, planned and drawn in memory (the same records
// and pixels `vl data synth` writes for the same seed, before PNG encoding), normalised and
// tokenised once per distinct data config and shared by every variant and seed that uses it.
import { type AblationData, BertTokenizer, drawScene, planSynthDataset, Rng, type SynthRecord, synthVocabulary } from '@vl/core';
import type { DataConfig } from './config.js';

export type PreparedData = AblationData;
type ImageSet = AblationData['train']['images'];
type CaptionSet = AblationData['train']['captions'];

/** Scene pixels as the synth writer draws them: same seed and record id → same image. */
function render(records: readonly SynthRecord[], seed: number, size: number, norm: ImageNorm): ImageSet {
  const { mean, std } = norm;
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

/** The model's image normalisation (its ablation adapter's `imageNorm`). */
export interface ImageNorm {
  mean: readonly number[];
  std: readonly number[];
}

export function prepareSynthData(spec: DataConfig, norm: ImageNorm): PreparedData {
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
    train: { images: render(train, spec.seed, spec.imageSize, norm), captions: trainCaps, noisy: trainCaps.noisy },
    eval: { images: render(test, spec.seed, spec.imageSize, norm), captions: evalCaps },
    summary: {
      trainImages: train.length,
      trainCaptions: trainCaps.imageOf.length,
      noisyCaptions: trainCaps.noisy,
      evalImages: test.length,
      evalCaptions: evalCaps.imageOf.length,
    },
  };
}
