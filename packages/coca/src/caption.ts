// `vl caption coca` and `vl eval coca --task captioning`: generated ids (open_clip's layout, see text.ts)
// back to text with the folder's tokenizer: the WordPiece vocab.txt `vl train coca` writes, or open_clip's
// BPE merges file. The CLI's
// flags map onto open_clip's `generate` kwargs: --beams 1 is greedy (top_k with k = 1), --beams k > 1
// one group of k beams, --sample nucleus sampling. --max-length counts the tokens after sot (eot
// included), so seqLen = maxLength + 1 (at most the text context + 1); --min-length counts the words
// before eot (minSeqLen = n + 1, at most seqLen − 1).
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { type BertTokenizer, IMAGE_NORMS, Rng, VlError } from '@vl/core';
import { loadBertTokenizer, preprocessImage } from '@vl/core/node';
import { loadCoca } from './checkpoint.js';
import { type CocaGenerateOptions, generateCoca } from './generation.js';
import type { CoCa } from './model.js';
import { CLIP_BPE_FILE, ClipTokenizer } from './clip-tokenizer.js';
import { openClipSpecialIds } from './text.js';

/** A model folder, or a `vl train` output folder holding one under model/. */
export function modelDir(dir: string): string {
  const inner = join(dir, 'model');
  return existsSync(join(inner, 'config.json')) ? inner : dir;
}

/** Word ids (no sot/eot) ↔ text: the two tokenizers a CoCa folder can hold. */
export interface CaptionTokenizer {
  readonly kind: 'wordpiece' | 'bpe';
  encode(text: string): number[];
  decode(wordIds: readonly number[]): string;
}

/** core's BertTokenizer (vocab.txt) as `vl train coca` uses it; BERT specials are skipped on decode. */
export function wordPieceCaptionTokenizer(tok: BertTokenizer): CaptionTokenizer {
  return {
    kind: 'wordpiece',
    encode: (text) => tok.encode(text, { addSpecialTokens: false }).ids,
    decode: (ids) => tok.decode(ids, { skipSpecialTokens: true }),
  };
}

/** open_clip's BPE; its decode ends every word with a space, trimmed here. */
export function bpeCaptionTokenizer(tok: ClipTokenizer): CaptionTokenizer {
  return { kind: 'bpe', encode: (text) => tok.encode(text), decode: (ids) => tok.decode(ids).trim() };
}

/**
 * The folder's tokenizer, checked to fit the model: open_clip's `bpe_simple_vocab_16e6.txt.gz` (vocabulary
 * = the model's, sot/eot at its end) if present, else `vl train coca`'s vocab.txt (model vocabulary =
 * WordPiece + 2).
 */
export async function loadCocaTokenizer(dir: string, model: CoCa): Promise<CaptionTokenizer> {
  const bpeFile = join(dir, CLIP_BPE_FILE);
  if (existsSync(bpeFile)) {
    const bpe = ClipTokenizer.fromFile(bpeFile);
    if (bpe.vocabSize !== model.vocabSize) {
      throw new VlError('CHECKPOINT_INVALID', `the BPE merges give ${bpe.vocabSize} tokens but the model has ${model.vocabSize}`, {
        subject: bpeFile,
      });
    }
    return bpeCaptionTokenizer(bpe);
  }
  const file = join(dir, 'vocab.txt');
  if (!existsSync(file)) {
    throw new VlError('INVALID_ARGUMENT', `no vocab.txt or ${CLIP_BPE_FILE} next to the model`, {
      subject: dir,
      hint: 'pass a `vl train coca` output folder',
    });
  }
  const tok = await loadBertTokenizer(file);
  if (tok.vocabSize + 2 !== model.vocabSize) {
    throw new VlError(
      'CHECKPOINT_INVALID',
      `vocab.txt has ${tok.vocabSize} tokens but the model ${model.vocabSize} (expected vocab + 2: sot, eot)`,
      {
        subject: file,
        hint: 'the captioning decoder must have been trained with this vocab.txt',
      },
    );
  }
  return wordPieceCaptionTokenizer(tok);
}

/**
 * One generated row → its word ids: sot dropped, cut at the first eot or pad 0 (generation pads finished
 * rows with 0), and any id outside the WordPiece range (a sot generated mid-caption) dropped.
 */
export function openClipWordIds(row: readonly number[], modelVocabSize: number): number[] {
  const { sot, eot, pad } = openClipSpecialIds(modelVocabSize);
  const out: number[] = [];
  for (let i = 0; i < row.length; i++) {
    const id = row[i] as number;
    if (i === 0 && id === sot) continue;
    if (id === eot || id === pad) break;
    if (id > 0 && id < sot) out.push(id);
  }
  return out;
}

/** Generated rows → captions, the word ids decoded by the folder's tokenizer. */
export function decodeCaptions(rows: readonly (readonly number[])[], tok: CaptionTokenizer, modelVocabSize: number): string[] {
  return rows.map((r) => tok.decode(openClipWordIds(r, modelVocabSize)));
}

export interface CocaCaptionOptions {
  numBeams?: number;
  maxLength?: number;
  minLength?: number;
  sample?: boolean;
  topP?: number;
  seed?: number;
  /** Text the caption starts with (greedy or sampling only: open_clip's beam search ignores prompts). */
  prompt?: string;
  cache?: boolean;
}

/** The CLI's flags as open_clip `generate` kwargs for a model with these special ids. */
export function generateOptions(model: CoCa, tok: CaptionTokenizer, o: CocaCaptionOptions, batch: number): CocaGenerateOptions {
  const { sot, eot } = openClipSpecialIds(model.vocabSize);
  const numBeams = o.sample ? 1 : (o.numBeams ?? 1);
  // Capped at what the decoder's positions allow (the CLI's default 30 is longer than tiny contexts)
  // and min below max, since generate refuses minSeqLen ≥ seqLen.
  const seqLen = Math.min((o.maxLength ?? 30) + 1, model.config.modelCfg.textCfg.contextLength + 1);
  const base: CocaGenerateOptions = {
    seqLen,
    minSeqLen: Math.min((o.minLength ?? 0) + 1, seqLen - 1),
    sotTokenId: sot,
    eosTokenId: eot,
    padTokenId: 0,
    cache: o.cache ?? true,
  };
  const prompt = o.prompt ? tok.encode(o.prompt) : [];
  if (prompt.length && numBeams > 1) {
    throw new VlError('INVALID_ARGUMENT', "CoCa's beam search ignores prompts (as open_clip's does)", {
      subject: '--prompt',
      hint: 'use --beams 1 or --sample with --prompt',
    });
  }
  const text = prompt.length ? Array.from({ length: batch }, () => [sot, ...prompt]) : undefined;
  if (o.sample) return { ...base, generationType: 'top_p', topP: o.topP ?? 0.9, rng: new Rng(o.seed ?? 0), text };
  if (numBeams === 1) return { ...base, generationType: 'top_k', topK: 1, text };
  return { ...base, generationType: 'beam_search', numBeams, numBeamGroups: 1 };
}

/** Image files → normalised [B, 3, S, S] as `vl eval coca` and training read them (squash, bicubic, CLIP norm). */
export async function readImages(paths: readonly string[], size: number): Promise<tf.Tensor4D> {
  const per = 3 * size * size;
  const buf = new Float32Array(paths.length * per);
  for (let i = 0; i < paths.length; i++) {
    const p = paths[i] as string;
    const bytes = await readFile(p).catch((e: unknown) => {
      throw new VlError('INVALID_ARGUMENT', `cannot read image: ${(e as Error).message}`, { subject: p });
    });
    await preprocessImage(
      new Uint8Array(bytes),
      { size, mode: 'squash', interpolation: 'bicubic', norm: IMAGE_NORMS.clip, subject: p },
      buf,
      i * per,
    );
  }
  return tf.tensor4d(buf, [paths.length, 3, size, size]);
}

/** Captions a batch of pixel tensors; returns the ids and the decoded text per image. */
export async function captionPixels(
  model: CoCa,
  tok: CaptionTokenizer,
  pixels: tf.Tensor4D,
  o: CocaCaptionOptions = {},
): Promise<{ ids: number[][]; captions: string[] }> {
  const ids = await generateCoca(model, pixels, generateOptions(model, tok, o, pixels.shape[0]));
  return { ids, captions: decodeCaptions(ids, tok, model.vocabSize) };
}

/** `vl caption coca`: a model folder (or `vl train coca` output) and image files → one caption each. */
export async function captionImages(checkpoint: string, images: readonly string[], o: CocaCaptionOptions = {}): Promise<string[]> {
  const dir = modelDir(checkpoint);
  const model = await loadCoca(dir);
  try {
    const tok = await loadCocaTokenizer(dir, model);
    const pixels = await readImages(images, model.config.modelCfg.visionCfg.imageSize);
    try {
      return (await captionPixels(model, tok, pixels, o)).captions;
    } finally {
      pixels.dispose();
    }
  } finally {
    model.dispose();
  }
}
