// `vl eval coca --task captioning`: a caption per held-out image (greedy or beam search), scored with
// core's CIDEr-D and BLEU-4 (coco-caption's, PTB-tokenised) against every reference caption of the
// record. Chance, as `vl eval blip` reports it: each image gets a reference caption of another image.
import * as tf from '@tensorflow/tfjs-core';
import { ciderD, corpusBleu, DataReport, IMAGE_NORMS, Rng, VlError } from '@vl/core';
import { type ImageTextExample, loadExamples, readDataset } from '@vl/core/node';
import { captionPixels, type CocaCaptionOptions, loadCocaTokenizer, modelDir } from './caption.js';
import { loadCoca } from './checkpoint.js';

export interface CocaCaptionEvalOptions extends CocaCaptionOptions {
  checkpoint: string;
  data: string;
  batchSize?: number;
  /** Seed of the chance baseline's choice of another image's caption. */
  chanceSeed?: number;
}

export interface CocaCaptionEvalResult {
  images: number;
  cider: number;
  bleu4: number;
  chance: { cider: number; bleu4: number };
  /** Every image's caption, in data order. */
  captions: { image: string; caption: string; references: string[] }[];
}

async function readExamples(data: string, size: number): Promise<ImageTextExample[]> {
  const report = new DataReport();
  const out: ImageTextExample[] = [];
  const transform = { size, mode: 'squash' as const, interpolation: 'bicubic' as const, norm: IMAGE_NORMS.clip };
  for await (const ex of loadExamples(readDataset({ format: 'jsonl', path: data }, report), { transform, report })) out.push(ex);
  return out;
}

export async function evaluateCocaCaptioning(o: CocaCaptionEvalOptions): Promise<CocaCaptionEvalResult> {
  const dir = modelDir(o.checkpoint);
  const model = await loadCoca(dir);
  try {
    const tok = await loadCocaTokenizer(dir, model);
    const size = model.config.modelCfg.visionCfg.imageSize;
    const examples = await readExamples(o.data, size);
    if (examples.length === 0) throw new VlError('DATA_INVALID', 'no images to caption', { subject: o.data });
    const noRefs = examples.find((e) => e.captions.length === 0);
    if (noRefs) throw new VlError('DATA_INVALID', `record ${noRefs.key} has no reference captions`, { subject: o.data });
    const bs = o.batchSize ?? 16;
    const hyps: string[] = [];
    for (let s = 0; s < examples.length; s += bs) {
      const chunk = examples.slice(s, s + bs);
      const buf = new Float32Array(chunk.length * 3 * size * size);
      chunk.forEach((e, i) => buf.set(e.pixels, i * 3 * size * size));
      const pixels = tf.tensor4d(buf, [chunk.length, 3, size, size]);
      try {
        hyps.push(...(await captionPixels(model, tok, pixels, o)).captions);
      } finally {
        pixels.dispose();
      }
    }
    const refs = examples.map((e) => e.captions);
    const rng = new Rng(o.chanceSeed ?? 0);
    const n = examples.length;
    const chanceHyps = examples.map((_, i) => {
      const j = n > 1 ? (i + 1 + rng.int(n - 1)) % n : i;
      const other = refs[j] as string[];
      return other[rng.int(other.length)] as string;
    });
    return {
      images: n,
      cider: ciderD(hyps, refs).score,
      bleu4: corpusBleu(hyps, refs).bleu[3] as number,
      chance: { cider: ciderD(chanceHyps, refs).score, bleu4: corpusBleu(chanceHyps, refs).bleu[3] as number },
      captions: examples.map((e, i) => ({ image: e.key, caption: hyps[i] as string, references: e.captions })),
    };
  } finally {
    model.dispose();
  }
}
