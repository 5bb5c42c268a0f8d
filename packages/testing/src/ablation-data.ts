// A tiny random AblationData for the `vl ablate` adapter tests: "scenes" of noise images with token captions.
import { type AblationData, Rng } from '@vl/core';

export interface TinyAblationDataOptions {
  /** Image side in pixels. */
  imageSize: number;
  /** Padded caption length. */
  seqLength: number;
  /** Caption p has 4 + (p % lengthSpread) tokens ([CLS] … [SEP]), so lengths vary within the padding. */
  lengthSpread: number;
}

/**
 * 8 train images with 2 captions each, 4 eval images with 1 each, from Rng(5): pixels tanh(normal), captions
 * [CLS]=2, words 5..44, [SEP]=3, in a vocabulary of 50 (pad 0, unk 1, cls 2, sep 3, mask 4).
 */
export function tinyAblationData({ imageSize, seqLength, lengthSpread }: TinyAblationDataOptions): AblationData {
  const rng = new Rng(5);
  const images = (count: number) => ({
    pixels: Float32Array.from({ length: count * 3 * imageSize * imageSize }, () => Math.tanh(rng.normal())),
    count,
    size: imageSize,
  });
  const captions = (count: number, perImage: number) => {
    const L = seqLength;
    const n = count * perImage;
    const inputIds = new Int32Array(n * L);
    const attentionMask = new Int32Array(n * L);
    for (let p = 0; p < n; p++) {
      const len = 4 + (p % lengthSpread);
      for (let j = 0; j < len; j++) {
        inputIds[p * L + j] = j === 0 ? 2 : j === len - 1 ? 3 : 5 + rng.int(40);
        attentionMask[p * L + j] = 1;
      }
    }
    return { inputIds, attentionMask, seqLength: L, imageOf: Int32Array.from({ length: n }, (_, p) => Math.floor(p / perImage)) };
  };
  return {
    key: 'test',
    vocabSize: 50,
    tokens: { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 },
    train: { images: images(8), captions: captions(8, 2), noisy: 0 },
    eval: { images: images(4), captions: captions(4, 1) },
    summary: { trainImages: 8, trainCaptions: 16, noisyCaptions: 0, evalImages: 4, evalCaptions: 4 },
  };
}
