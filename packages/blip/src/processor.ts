// Image and text preprocessing as HF `BlipProcessor` does it: images resized to image_size×image_size
// (bicubic), scaled to [0, 1] and normalised with OpenAI CLIP's mean/std; a BERT WordPiece
// tokenizer with BLIP's [DEC]/[ENC] tokens, loaded from a checkpoint folder when present.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { type BertTokenizer, IMAGE_NORMS, type ImageNorm, imagesToTensor, VlError } from '@vl/core';
import { preprocessImage, loadBertTokenizer } from '@vl/core/node';

/** BLIP normalises pixels with OpenAI CLIP's mean/std (`BlipImageProcessor`, the original `transform_test`). */
export const BLIP_IMAGE_NORM: ImageNorm = IMAGE_NORMS.clip;

/**
 * BLIP's `init_tokenizer` adds `[DEC]` (the decoder's bos, 30522 on bert-base-uncased) and `[ENC]` (the
 * image-grounded encoder's first token, 30523).
 */
export const BLIP_ADDED_TOKENS = ['[DEC]', '[ENC]'] as const;

/** A file path, encoded image bytes (JPEG/PNG/…), or normalised pixels [3,H,W] / [B,3,H,W]. */
export type ImageInput = string | Uint8Array | tf.Tensor;

/** Bytes or a path → normalised [3, size, size] float32. */
export async function preprocessBlipImage(image: string | Uint8Array, size: number): Promise<Float32Array> {
  const bytes = typeof image === 'string' ? await readFile(image) : image;
  return preprocessImage(bytes, {
    size,
    mode: 'squash',
    interpolation: 'bicubic',
    norm: BLIP_IMAGE_NORM,
    subject: typeof image === 'string' ? image : undefined,
  });
}

/** Any mix of image inputs → one [B, 3, size, size] tensor the caller disposes. Tensors are copied, not consumed. */
export async function pixelValuesFrom(images: ImageInput | readonly ImageInput[], size: number): Promise<tf.Tensor4D> {
  const list: readonly ImageInput[] = Array.isArray(images) ? images : [images as ImageInput];
  if (list.length === 0) throw new Error('no images given');
  const parts: tf.Tensor4D[] = [];
  try {
    let hostBatch: Float32Array[] = [];
    const flush = () => {
      if (hostBatch.length) parts.push(imagesToTensor(hostBatch, size, size));
      hostBatch = [];
    };
    for (const img of list) {
      if (img instanceof tf.Tensor) {
        flush();
        if (img.rank === 3) parts.push(tf.expandDims(img, 0) as tf.Tensor4D);
        else if (img.rank === 4) parts.push(tf.clone(img) as tf.Tensor4D);
        else throw new Error(`a pixel tensor must be [3,H,W] or [B,3,H,W], got [${img.shape}]`);
      } else {
        hostBatch.push(await preprocessBlipImage(img, size));
      }
    }
    flush();
    if (parts.length === 1) return parts.pop() as tf.Tensor4D;
    return tf.concat(parts, 0);
  } finally {
    for (const p of parts) p.dispose();
  }
}

/** The token ids of a BLIP text config that must be the tokenizer's ([DEC] starts captions, [SEP] ends them). */
export interface BlipTokenIds {
  bosTokenId: number;
  padTokenId: number;
  sepTokenId: number;
}

/** Where a tokenizer and a config came from, for the error message (file paths, or how they were made). */
export interface TokenizerCheckSources {
  tokenizer: string;
  config: string;
}

/**
 * Throws CONFIG_INVALID when the tokenizer's `[DEC]` (else `[CLS]`, as `withTokenizerIds` picks), `[PAD]` or
 * `[SEP]` id is not the config's `bos_token_id`, `pad_token_id` or `sep_token_id`: the model would start
 * captions on the wrong token and decode ids through the wrong vocabulary (captions of `[UNK]`), silently.
 */
export function checkTokenizerIds(tokenizer: BertTokenizer, ids: BlipTokenIds, sources: TokenizerCheckSources): void {
  const pairs = [
    { token: '[DEC]', key: 'bos_token_id', tokenizerId: tokenizer.tokenToId('[DEC]') ?? tokenizer.clsId, configId: ids.bosTokenId },
    { token: '[PAD]', key: 'pad_token_id', tokenizerId: tokenizer.padId, configId: ids.padTokenId },
    { token: '[SEP]', key: 'sep_token_id', tokenizerId: tokenizer.sepId, configId: ids.sepTokenId },
  ];
  const wrong = pairs.filter((p) => p.tokenizerId !== p.configId);
  if (wrong.length === 0) return;
  throw new VlError(
    'CONFIG_INVALID',
    `the tokenizer and the config disagree on token ids: ${wrong
      .map((w) => `${w.token} is ${w.tokenizerId} in ${sources.tokenizer} but text_config.${w.key} is ${w.configId} in ${sources.config}`)
      .join('; ')}`,
    {
      subject: `${sources.tokenizer} vs ${sources.config}`,
      hint:
        'use the tokenizer the checkpoint was trained with (BLIP adds [DEC] and [ENC] right after the BERT vocabulary: ' +
        '30522 and 30523 for bert-base-uncased), or correct the ids in config.json',
    },
  );
}

/**
 * The tokenizer in a checkpoint folder (tokenizer.json, else vocab.txt), with [DEC]/[ENC] added when missing;
 * null when neither file exists. With `against`, its [DEC]/[PAD]/[SEP] ids are checked against the config's
 * (`checkTokenizerIds`).
 */
export async function loadTokenizerFrom(dir: string, against?: { ids: BlipTokenIds; configFile: string }): Promise<BertTokenizer | null> {
  const file = ['tokenizer.json', 'vocab.txt'].map((f) => join(dir, f)).find((f) => existsSync(f));
  if (file === undefined) return null;
  const tokenizer = await loadBertTokenizer(dir, { addedTokens: BLIP_ADDED_TOKENS });
  if (against) checkTokenizerIds(tokenizer, against.ids, { tokenizer: file, config: against.configFile });
  return tokenizer;
}

export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'vocab.txt', 'special_tokens_map.json'] as const;
