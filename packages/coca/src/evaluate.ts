// `vl eval clip|coca`: image-text retrieval (Recall@K of the contrastive features) and zero-shot
// classification with prompt ensembling on a caption dataset. On the synthetic scenes (`vl data synth`)
// the zero-shot classes are the scene backgrounds (white / gray / black), read from each record's
// `scene.background`; the class prompts use the captions' own wording ("… on a {} background").
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { BACKGROUNDS, type BertTokenizer, IMAGE_NORMS, retrievalRecall, type RetrievalResult, VlError } from '@vl/core';
import { createDataLoader, loadBertTokenizer } from '@vl/core/node';
import { modelDir } from './caption.js';
import { loadClip, loadCoca } from './checkpoint.js';
import type { Clip, CoCa } from './model.js';
import { bertToOpenClipIds } from './text.js';
import { openClipRowsFromBert } from './train.js';
import { promptsFor, zeroShotAccuracy, zeroShotWeights } from './zero-shot.js';

export type OpenClipEvalTask = 'retrieval' | 'zero-shot';

/** Prompt templates for the synthetic scenes' backgrounds (prompt ensembling averages them). */
export const SYNTH_BACKGROUND_TEMPLATES: readonly string[] = [
  'shapes on a {} background',
  'a shape on a {} background',
  'a {} background',
  'there are shapes on a {} background',
];

export interface OpenClipEvalOptions {
  model: 'clip' | 'coca';
  /** A `vl train` output folder (its model/) or a model folder with vocab.txt. */
  checkpoint: string;
  data: string;
  tasks: readonly OpenClipEvalTask[];
  vocab?: string;
  templates?: readonly string[];
  batchSize?: number;
}

export interface OpenClipEvalResult {
  images: number;
  texts: number;
  retrieval?: RetrievalResult;
  zeroShot?: { classes: string[]; templates: string[]; accuracy: number; chance: number; perClass: Record<string, number> };
}

export { modelDir };

function tokenizeAll(texts: readonly string[], tok: BertTokenizer, vocabSize: number, context: number): number[][] {
  return texts.map((t) =>
    bertToOpenClipIds(tok.encode(t, { addSpecialTokens: false, maxLength: 4 * context, truncation: true }).ids, vocabSize, context),
  );
}

export async function evaluateOpenClip(o: OpenClipEvalOptions): Promise<OpenClipEvalResult> {
  const dir = modelDir(o.checkpoint);
  const vocab = o.vocab ?? join(dir, 'vocab.txt');
  if (!existsSync(vocab)) throw new VlError('INVALID_ARGUMENT', 'no vocab.txt next to the model', { subject: dir, hint: 'pass --vocab' });
  const tok = await loadBertTokenizer(vocab);
  const model: Clip | CoCa = o.model === 'coca' ? await loadCoca(dir) : await loadClip(dir);
  const m = model.config.modelCfg;
  const context = m.textCfg.contextLength;
  const vocabSize = m.textCfg.vocabSize;
  const imageFeats: tf.Tensor[] = [];
  const textFeats: tf.Tensor[] = [];
  const textToImage: number[] = [];
  const backgrounds: string[] = [];
  let images = 0;
  try {
    const { batches } = createDataLoader(
      { path: o.data },
      {
        batchSize: o.batchSize ?? 32,
        tokenizer: tok,
        maxLength: 4 * context,
        padding: 'longest',
        captions: 'all',
        transform: { size: m.visionCfg.imageSize, mode: 'squash', interpolation: 'bicubic', norm: IMAGE_NORMS.clip },
      },
    );
    for await (const b of batches) {
      try {
        imageFeats.push(model.encodeImage(b.pixelValues, { normalize: true }));
        const ids = openClipRowsFromBert(
          (await b.inputIds.data()) as Int32Array,
          b.inputIds.shape[0],
          b.inputIds.shape[1],
          tok,
          vocabSize,
          context,
        );
        textFeats.push(tf.tidy(() => model.encodeText(tf.tensor2d(ids, undefined, 'int32'), { normalize: true })));
        for (const i of b.textToImage) textToImage.push(images + i);
        for (const meta of b.meta) backgrounds.push(String((meta.scene as { background?: unknown } | undefined)?.background ?? ''));
        images += b.keys.length;
      } finally {
        b.dispose();
      }
    }
    if (images === 0) throw new VlError('DATA_INVALID', 'no images to evaluate', { subject: o.data });
    const result: OpenClipEvalResult = { images, texts: textToImage.length };
    const img = tf.concat(imageFeats);
    try {
      if (o.tasks.includes('retrieval')) {
        const sims = tf.tidy(() => tf.matMul(img, tf.concat(textFeats), false, true));
        result.retrieval = retrievalRecall({ sims: sims.dataSync(), numImages: images, numTexts: textToImage.length, textToImage });
        sims.dispose();
      }
      if (o.tasks.includes('zero-shot')) {
        const classes = Object.keys(BACKGROUNDS);
        const labels = backgrounds.map((bg) => classes.indexOf(bg));
        if (labels.some((l) => l < 0)) {
          throw new VlError('DATA_INVALID', 'zero-shot needs scene.background on every record (the synthetic scenes)', { subject: o.data });
        }
        const templates = [...(o.templates ?? SYNTH_BACKGROUND_TEMPLATES)];
        const weights = zeroShotWeights(
          model,
          classes.map((c) => tokenizeAll(promptsFor(c, templates), tok, vocabSize, context)),
        );
        const logits = tf.tidy(() => tf.mul(tf.matMul(img, weights), 100) as tf.Tensor2D);
        const { predictions, accuracy } = zeroShotAccuracy(logits, labels);
        logits.dispose();
        weights.dispose();
        const perClass: Record<string, number> = {};
        classes.forEach((c, k) => {
          const idx = labels.map((l, i) => (l === k ? i : -1)).filter((i) => i >= 0);
          perClass[c] = idx.length ? idx.filter((i) => predictions[i] === k).length / idx.length : 0;
        });
        result.zeroShot = { classes, templates, accuracy, chance: 1 / classes.length, perClass };
      }
    } finally {
      img.dispose();
    }
    return result;
  } finally {
    for (const t of [...imageFeats, ...textFeats]) t.dispose();
    model.dispose();
  }
}
