// `vl eval vlmo` and `vl match vlmo`: a VLMo folder (a `vl train vlmo` output, or any folder with
// config.json + weights + vocab.txt) on held-out image–caption data read through core's readers —
// retrieval Recall@1/5/10 both ways from the dual encoder, optionally re-ranked by ITM over the top-k
// (`--rerank-k`, VLMo's `k_test`), and image–text matching accuracy / AUC, with chance baselines.
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { type BertTokenizer, DataReport, itmMatchProbabilities, VlError } from '@vl/core';
import { type ImageTextExample, loadBertTokenizer, loadExamples, preprocessImage, readDataset, readImageFile } from '@vl/core/node';
import { loadVlmo } from './checkpoint.js';
import { VLMO_IMAGE_NORM } from './config.js';
import type { Vlmo } from './model.js';
import {
  type VlmoItmEvaluation,
  vlmoItmEvaluation,
  vlmoDualEncoderFeatures,
  vlmoItmLogits,
  vlmoRetrievalMetrics,
  vlmoRetrievalScores,
  type VlmoTexts,
} from './retrieval.js';
import { vlmoModelDir } from './train.js';

export type VlmoEvalTask = 'retrieval' | 'itm';

export interface VlmoEvalOptions {
  /** A VLMo folder, or a `vl train vlmo` output folder (its `model/`). */
  checkpoint: string;
  /** Held-out data (JSONL/CSV/COCO/WebDataset), e.g. the synthetic test split. */
  data: string;
  tasks?: readonly VlmoEvalTask[];
  /** Re-rank each query's top-k by ITM (0: dual encoder only). Default 0. */
  rerankK?: number;
  /** vocab.txt / tokenizer.json; default the one in the checkpoint folder. */
  vocab?: string;
  batchSize?: number;
  seed?: number;
  /** Also write the report here (JSON). */
  out?: string;
  onProgress?: (done: number, total: number) => void;
}

interface Recall {
  imageToText: Record<number, number>;
  textToImage: Record<number, number>;
  meanRecall: number;
}

export interface VlmoEvalReport {
  checkpoint: string;
  images: number;
  texts: number;
  retrieval?: {
    /** The dual encoder (ITC cosine). */
    itc: Recall;
    /** ITM re-ranking of the top-k, when rerankK > 0. */
    reranked?: Recall & { k: number };
    /** Recall@1 of a random ranking. */
    chance: { imageToTextR1: number; textToImageR1: number };
  };
  itm?: VlmoItmEvaluation & { chance: { accuracy: number; auc: number } };
}

/** The tokenizer next to a VLMo folder (vocab.txt or tokenizer.json), or the one given. */
export async function vlmoTokenizer(dir: string, vocab?: string): Promise<BertTokenizer> {
  const path = vocab ?? [join(dir, 'vocab.txt'), join(dir, 'tokenizer.json')].find((p) => existsSync(p));
  if (!path) {
    throw new VlError('INVALID_ARGUMENT', 'no vocab.txt or tokenizer.json in the checkpoint folder', {
      subject: dir,
      hint: 'give --vocab (a BERT vocab.txt); `vl train vlmo` writes one into its model/ folder',
    });
  }
  return loadBertTokenizer(path);
}

/** Tokenizes texts padded to exactly max_text_len (VLMo's padding="max_length"; longer texts are cut). */
export function vlmoEncodeTexts(model: Vlmo, tok: BertTokenizer, texts: readonly string[]): VlmoTexts {
  const maxLength = model.dims.maxTextLen;
  const enc = tok.encodeBatch(texts, { maxLength, padding: 'max_length' });
  return { inputIds: enc.inputIds, attentionMask: enc.attentionMask, seqLength: enc.seqLength };
}

function transform(size: number) {
  return { size, mode: 'squash' as const, interpolation: 'bicubic' as const, norm: VLMO_IMAGE_NORM };
}

async function loadModel(checkpoint: string): Promise<{ model: Vlmo; dir: string }> {
  if (!existsSync(checkpoint)) throw new VlError('INVALID_ARGUMENT', 'no such folder', { subject: checkpoint });
  const dir = vlmoModelDir(checkpoint);
  return { model: (await loadVlmo(dir)).eval(), dir };
}

const recall = (m: ReturnType<typeof vlmoRetrievalMetrics>): Recall => ({
  imageToText: m.imageToText.recall,
  textToImage: m.textToImage.recall,
  meanRecall: m.meanRecall,
});

export async function evaluateVlmo(o: VlmoEvalOptions): Promise<VlmoEvalReport> {
  const tasks = o.tasks ?? ['retrieval', 'itm'];
  const { model, dir } = await loadModel(o.checkpoint);
  let pixels: tf.Tensor4D | null = null;
  try {
    const tok = await vlmoTokenizer(dir, o.vocab);
    const size = model.dims.imageSize;
    const report = new DataReport();
    const examples: ImageTextExample[] = [];
    for await (const ex of loadExamples(readDataset({ path: o.data }, report), { transform: transform(size), report })) examples.push(ex);
    if (examples.length < 2) throw new VlError('DATA_INVALID', `${examples.length} usable record(s): need at least 2`, { subject: o.data });
    const texts: string[] = [];
    const textToImage: number[] = [];
    examples.forEach((ex, i) => ex.captions.forEach((c) => (texts.push(c), textToImage.push(i))));
    const plane = 3 * size * size;
    const buf = new Float32Array(examples.length * plane);
    examples.forEach((ex, i) => buf.set(ex.pixels, i * plane));
    pixels = tf.tensor4d(buf, [examples.length, 3, size, size]);
    const enc = vlmoEncodeTexts(model, tok, texts);
    const out: VlmoEvalReport = { checkpoint: dir, images: examples.length, texts: texts.length };
    const k = o.rerankK ?? 0;
    const scores = vlmoRetrievalScores(model, pixels, enc, { rerankK: tasks.includes('retrieval') ? k : 0, batchSize: o.batchSize });
    o.onProgress?.(1, 2);
    if (tasks.includes('retrieval')) {
      out.retrieval = {
        itc: recall(vlmoRetrievalMetrics(scores, textToImage, [1, 5, 10], 'itc')),
        // A random ranking puts one of the image's c captions (of T = c·I) first with chance c/T = 1/I.
        chance: { imageToTextR1: 100 / examples.length, textToImageR1: 100 / examples.length },
      };
      if (k > 0) out.retrieval.reranked = { ...recall(vlmoRetrievalMetrics(scores, textToImage)), k };
    }
    if (tasks.includes('itm')) {
      out.itm = {
        ...vlmoItmEvaluation(model, pixels, enc, textToImage, scores.itc, { seed: o.seed }),
        chance: { accuracy: 0.5, auc: 0.5 },
      };
    }
    o.onProgress?.(2, 2);
    if (o.out) {
      await mkdir(dirname(o.out), { recursive: true });
      await writeFile(o.out, `${JSON.stringify(out, null, 2)}\n`);
    }
    return out;
  } finally {
    pixels?.dispose();
    model.dispose();
  }
}

/** `vl match vlmo`: P(match) by the ITM head and the dual-encoder cosine for every image × text. */
export async function matchVlmo(
  checkpoint: string,
  images: readonly string[],
  texts: readonly string[],
): Promise<{ itm: number[][]; itc: number[][] }> {
  const { model, dir } = await loadModel(checkpoint);
  let pixels: tf.Tensor4D | null = null;
  try {
    const tok = await vlmoTokenizer(dir);
    const size = model.dims.imageSize;
    const plane = 3 * size * size;
    const buf = new Float32Array(images.length * plane);
    for (let i = 0; i < images.length; i++) {
      const path = images[i] as string;
      await preprocessImage(await readImageFile(path), { ...transform(size), subject: path }, buf, i * plane);
    }
    pixels = tf.tensor4d(buf, [images.length, 3, size, size]);
    const enc = vlmoEncodeTexts(model, tok, texts);
    const f = vlmoDualEncoderFeatures(model, pixels, enc);
    const I = images.length;
    const T = texts.length;
    const itc = Array.from({ length: I }, (_, i) =>
      Array.from({ length: T }, (_, t) => {
        let s = 0;
        for (let j = 0; j < f.dim; j++) s += f.image[i * f.dim + j]! * f.text[t * f.dim + j]!;
        return s;
      }),
    );
    const imgIdx = Array.from({ length: I * T }, (_, n) => Math.floor(n / T));
    const txtIdx = Array.from({ length: I * T }, (_, n) => n % T);
    const probs = itmMatchProbabilities(vlmoItmLogits(model, pixels, enc, imgIdx, txtIdx));
    const itm = Array.from({ length: I }, (_, i) => Array.from(probs.subarray(i * T, (i + 1) * T)));
    return { itm, itc };
  } finally {
    pixels?.dispose();
    model.dispose();
  }
}
