// Pretraining and evaluation drivers behind `blip pretrain` / `blip eval`: a caption dataset
// (JSONL + images, e.g. `vl data synth`) through core's loader into the core Trainer, HF-layout
// exports at the end, and held-out retrieval Recall@K and captioning BLEU/CIDEr-D with chance
// baselines (random ranking; another image's reference caption).
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { type BertTokenizer, ciderD, corpusBleu, DataReport, retrievalRecall, Rng, VlError } from '@vl/core';
import {
  createDataLoader,
  type ImageTextExample,
  loadExamples,
  readDataset,
  readJsonFile,
  type StepRecord,
  Trainer,
  loadBertTokenizer,
} from '@vl/core/node';
import { type BlipConfig, type BlipPresetName, blipPreset, withTokenizerIds } from './config.js';
import { BlipForConditionalGeneration, BlipForImageTextRetrieval } from './modeling.js';
import { BLIP_ADDED_TOKENS, BLIP_IMAGE_NORM } from './processor.js';
import { type BlipPretrainingOptions, BlipForPretraining, type PretrainBatch } from './pretraining.js';
import { DecodedImages } from './decoded-cache.js';

export interface PretrainOptions {
  /** train JSONL (image + captions per line), images relative to its folder. */
  train: string;
  /** BERT vocab.txt or tokenizer.json ([DEC]/[ENC] are appended when missing). */
  vocab: string;
  out: string;
  preset?: BlipPresetName;
  /** Vision input side; default the preset's. */
  imageSize?: number;
  pretraining?: Partial<BlipPretrainingOptions>;
  batchSize?: number;
  epochs?: number;
  maxSteps?: number;
  lr?: number;
  minLr?: number;
  warmupSteps?: number;
  weightDecay?: number;
  /** Longest caption in tokens (BLIP pretraining: 30). */
  maxTextLength?: number;
  seed?: number;
  /** Distillation weight after its first-epoch ramp (ALBEF/BLIP 0.4). */
  alpha?: number;
  checkpointEvery?: number;
  /**
   * Keep the decoded training images for every epoch when they fit in this many bytes (default 256 MiB;
   * false: decode every epoch). The batches are the same either way.
   */
  cacheImages?: number | false;
  /** Continue from out/ckpt when it has a checkpoint (default true). */
  resume?: boolean;
  onProgress?: (done: number, total: number, record: StepRecord) => void;
}

export interface PretrainSummary {
  steps: number;
  seconds: number;
  /** Mean of each loss over the first and the last 10% of steps. */
  first: Record<string, number>;
  last: Record<string, number>;
  out: { pretrain: string; captioning: string; retrieval: string; metrics: string };
}

/** FNV-1a of a record's image id: a stable integer id for ITC positives and the idx queue. */
export function imageIdOf(ex: { key: string; meta: Record<string, unknown> }): number {
  const id = typeof ex.meta.id === 'string' || typeof ex.meta.id === 'number' ? String(ex.meta.id) : String(ex.meta.image ?? ex.key);
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 16777619) >>> 0;
  return h & 0x3fffffff;
}

function transform(size: number) {
  // BLIP's eval transform (Resize((s, s)), bicubic, CLIP normalisation); the synthetic scenes'
  // captions name positions, so no crop or flip.
  return { size, mode: 'squash' as const, interpolation: 'bicubic' as const, norm: BLIP_IMAGE_NORM };
}

async function loadTokenizer(vocab: string): Promise<BertTokenizer> {
  return loadBertTokenizer(vocab, { addedTokens: BLIP_ADDED_TOKENS });
}

/** The model config for a preset on this tokenizer's vocabulary. */
export function pretrainConfig(preset: BlipPresetName, tok: BertTokenizer, imageSize?: number): BlipConfig {
  return withTokenizerIds(blipPreset(preset, { vocabSize: tok.vocabSize, imageSize }), tok);
}

/** Counts the records of the training file (read only, no image decoded). */
async function countRecords(train: string): Promise<number> {
  let n = 0;
  for await (const _ of readDataset({ format: 'jsonl', path: train }, new DataReport())) n++;
  return n;
}

export async function pretrainBlip(o: PretrainOptions): Promise<PretrainSummary> {
  const tok = await loadTokenizer(o.vocab);
  const preset = o.preset ?? 'tiny';
  const config = pretrainConfig(preset, tok, o.imageSize);
  const size = config.visionConfig.imageSize;
  const batchSize = o.batchSize ?? 32;
  const seed = o.seed ?? 0;
  const model = new BlipForPretraining(config, o.pretraining ?? {}, new Rng(seed).fork('init'), tok.tokenToId('[ENC]') ?? null);
  model.tokenizer = tok;
  model.tokenizerDir = existsSync(o.vocab) && !o.vocab.endsWith('.txt') && !o.vocab.endsWith('.json') ? o.vocab : dirname(o.vocab);
  const recordCount = await countRecords(o.train);
  const stepsPerEpoch = Math.floor(recordCount / batchSize);
  if (stepsPerEpoch < 1) throw new VlError('DATA_INVALID', `fewer than ${batchSize} training records`, { subject: o.train });
  const totalSteps = o.maxSteps ?? stepsPerEpoch * (o.epochs ?? 1);
  const lr = o.lr ?? 1e-3;
  await mkdir(o.out, { recursive: true });
  const metricsPath = join(o.out, 'metrics.jsonl');
  const trainer = new Trainer<PretrainBatch>({
    model,
    forward: (batch, ctx) => model.forward(batch, ctx),
    afterStep: () => model.afterStep(),
    stepsPerEpoch,
    optimizer: { lr, weightDecay: o.weightDecay ?? 0.05 },
    schedule: {
      kind: 'cosine',
      lr,
      minLr: o.minLr ?? lr / 100,
      totalSteps,
      warmupSteps: o.warmupSteps ?? Math.min(100, Math.floor(totalSteps / 10)),
      warmupInitLr: lr / 100,
    },
    alpha: o.alpha ?? 0.4,
    seed,
    checkpointDir: join(o.out, 'ckpt'),
    checkpointEvery: o.checkpointEvery ?? 200,
    keepCheckpoints: 2,
    metricsPath,
    onProgress: (p) => o.onProgress?.(p.step, totalSteps, p.record),
    extraState: () => ({ config, options: model.options, train: o.train }),
  });
  const spec = { format: 'jsonl', path: o.train } as const;
  const batching = { batchSize, tokenizer: tok, maxLength: o.maxTextLength ?? 30, shuffle: 100_000, dropLast: true };
  // Small datasets are decoded once for all epochs (same batches as core's loader; null when too big).
  const decoded = o.cacheImages === false ? null : await DecodedImages.load(spec, transform(size), recordCount, o.cacheImages);
  const epochData = async function* (epoch: number): AsyncGenerator<PretrainBatch> {
    const batches = decoded
      ? decoded.batches(seed * 1000 + epoch, batching)
      : createDataLoader(spec, { ...batching, captions: 'random', transform: transform(size), seed: seed * 1000 + epoch }).batches;
    for await (const b of batches) {
      const pb: PretrainBatch = {
        pixels: (await b.pixelValues.data()) as Float32Array,
        imageSize: size,
        inputIds: (await b.inputIds.data()) as Int32Array,
        attentionMask: (await b.attentionMask.data()) as Int32Array,
        batchSize: b.keys.length,
        seqLength: b.inputIds.shape[1],
        imageIds: b.keys.map((key, i) => imageIdOf({ key, meta: b.meta[i] ?? {} })),
      };
      b.dispose();
      yield pb;
    }
  };
  const t0 = Date.now();
  const fit = await trainer.fit(epochData, { maxSteps: totalSteps, resume: o.resume ?? true });
  const seconds = (Date.now() - t0) / 1000;
  const records = fit.records;
  const tenth = Math.max(1, Math.floor(records.length / 10));
  const meanOf = (rs: StepRecord[]) => {
    const sums: Record<string, number> = {};
    for (const r of rs) for (const [k, v] of Object.entries(r.losses)) sums[k] = (sums[k] ?? 0) + v / rs.length;
    return sums;
  };
  const out = {
    pretrain: join(o.out, 'pretrain'),
    captioning: join(o.out, 'captioning'),
    retrieval: join(o.out, 'retrieval'),
    metrics: metricsPath,
  };
  await model.savePretrained(out.pretrain);
  const cap = model.toConditionalGeneration();
  await cap.savePretrained(out.captioning);
  cap.dispose();
  const ret = model.toRetrieval();
  await ret.savePretrained(out.retrieval);
  ret.dispose();
  trainer.optimizer.dispose();
  model.dispose();
  return { steps: fit.steps, seconds, first: meanOf(records.slice(0, tenth)), last: meanOf(records.slice(-tenth)), out };
}

export interface EvalOptions {
  /** A `blip pretrain` output folder (or its `pretrain/` folder). */
  model: string;
  /** Held-out JSONL (e.g. the synthetic test split). */
  data: string;
  /** Caption decoding: beams (1 = greedy) and max length. */
  numBeams?: number;
  maxLength?: number;
  /** Images per forward. */
  batchSize?: number;
  seed?: number;
  /** Write the report here as JSON. */
  out?: string;
  onProgress?: (done: number, total: number) => void;
}

export interface EvalReport {
  images: number;
  texts: number;
  retrieval: {
    textToImage: Record<number, number>;
    imageToText: Record<number, number>;
    chance: { textToImageR1: number; imageToTextR1: number };
  };
  captioning: {
    cider: number;
    bleu4: number;
    chance: { cider: number; bleu4: number };
    examples: { image: string; caption: string; references: string[] }[];
  };
}

/** Loads the two HF-layout exports of a pretraining run (or exports them from `pretrain/`). */
async function loadEvalModels(dir: string): Promise<{ cap: BlipForConditionalGeneration; ret: BlipForImageTextRetrieval }> {
  const root = existsSync(join(dir, 'pretrain')) ? dir : dirname(dir);
  if (existsSync(join(root, 'captioning')) && existsSync(join(root, 'retrieval'))) {
    return {
      cap: await BlipForConditionalGeneration.fromPretrained(join(root, 'captioning')),
      ret: await BlipForImageTextRetrieval.fromPretrained(join(root, 'retrieval')),
    };
  }
  const cfg = (await readJsonFile(join(dir, 'config.json'))) as { architectures?: string[] };
  if (cfg.architectures?.[0] !== 'BlipForPretraining')
    throw new VlError('INVALID_ARGUMENT', 'not a blip pretrain output folder', { subject: dir });
  const pre = await BlipForPretraining.fromPretrained(dir);
  const out = { cap: pre.toConditionalGeneration(), ret: pre.toRetrieval() };
  pre.dispose();
  return out;
}

async function readExamples(data: string, size: number): Promise<ImageTextExample[]> {
  const report = new DataReport();
  const out: ImageTextExample[] = [];
  for await (const ex of loadExamples(readDataset({ format: 'jsonl', path: data }, report), { transform: transform(size), report }))
    out.push(ex);
  return out;
}

export async function evaluateBlip(o: EvalOptions): Promise<EvalReport> {
  const { cap, ret } = await loadEvalModels(o.model);
  const tok = ret.tokenizer;
  if (!tok) throw new VlError('INVALID_ARGUMENT', 'the checkpoint has no tokenizer (vocab.txt)', { subject: o.model });
  try {
    const size = ret.config.visionConfig.imageSize;
    const examples = await readExamples(o.data, size);
    const texts: string[] = [];
    const textToImage: number[] = [];
    examples.forEach((ex, i) => ex.captions.forEach((c) => (texts.push(c), textToImage.push(i))));
    const bs = o.batchSize ?? 64;
    const plane = 3 * size * size;
    const pixelsOf = (from: number, to: number) => {
      const buf = new Float32Array((to - from) * plane);
      for (let i = from; i < to; i++) buf.set((examples[i] as ImageTextExample).pixels, (i - from) * plane);
      return tf.tensor4d(buf, [to - from, 3, size, size]);
    };
    // Retrieval: ITC similarities of every image with every caption.
    const imageFeats: tf.Tensor[] = [];
    for (let i = 0; i < examples.length; i += bs) {
      const px = pixelsOf(i, Math.min(examples.length, i + bs));
      imageFeats.push(ret.getImageFeatures(px));
      px.dispose();
    }
    const textFeats: tf.Tensor[] = [];
    for (let i = 0; i < texts.length; i += bs) {
      const enc = tok.encodeBatch(texts.slice(i, i + bs), { maxLength: 35 });
      const ids = tf.tensor2d(enc.inputIds, [enc.batchSize, enc.seqLength], 'int32');
      const mask = tf.tensor2d(enc.attentionMask, [enc.batchSize, enc.seqLength], 'int32');
      textFeats.push(ret.getTextFeatures(ids, mask));
      tf.dispose([ids, mask]);
    }
    const sims = tf.tidy(() => tf.matMul(tf.concat(imageFeats, 0), tf.concat(textFeats, 0), false, true));
    const simData = (await sims.data()) as Float32Array;
    tf.dispose([sims, ...imageFeats, ...textFeats]);
    const r = retrievalRecall({ sims: simData, numImages: examples.length, numTexts: texts.length, textToImage });
    const perImage = texts.length / examples.length;
    // Captioning on every held-out image.
    const hyps: string[] = [];
    for (let i = 0; i < examples.length; i += bs) {
      const px = pixelsOf(i, Math.min(examples.length, i + bs));
      hyps.push(...(await cap.caption(px, { numBeams: o.numBeams ?? 3, maxLength: o.maxLength ?? 30 })));
      px.dispose();
      o.onProgress?.(Math.min(examples.length, i + bs), examples.length);
    }
    const refs = examples.map((e) => e.captions);
    // Chance: each image gets a reference caption of another random held-out image.
    const rng = new Rng(o.seed ?? 0);
    const n = examples.length;
    const chanceHyps = examples.map((_, i) => {
      const j = n > 1 ? (i + 1 + rng.int(n - 1)) % n : i;
      const other = refs[j] as string[];
      return other[rng.int(other.length)] as string;
    });
    const report: EvalReport = {
      images: n,
      texts: texts.length,
      retrieval: {
        textToImage: r.textToImage.recall,
        imageToText: r.imageToText.recall,
        chance: { textToImageR1: 100 / n, imageToTextR1: (100 * perImage) / texts.length },
      },
      captioning: {
        cider: ciderD(hyps, refs).score,
        bleu4: corpusBleu(hyps, refs).bleu[3] as number,
        chance: { cider: ciderD(chanceHyps, refs).score, bleu4: corpusBleu(chanceHyps, refs).bleu[3] as number },
        examples: examples.slice(0, 5).map((e, i) => ({ image: e.key, caption: hyps[i] as string, references: e.captions })),
      },
    };
    if (o.out) {
      await mkdir(dirname(o.out), { recursive: true });
      await writeFile(o.out, `${JSON.stringify(report, null, 2)}\n`);
    }
    return report;
  } finally {
    cap.dispose();
    ret.dispose();
  }
}
