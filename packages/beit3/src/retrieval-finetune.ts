// Retrieval fine-tuning of Beit3ForRetrieval on a caption dataset (core's loader and Trainer; `utils.ClipLoss`,
// i.e. `Beit3ForRetrieval.clipLoss`), from scratch or from an MDM checkpoint's backbone, and Recall@K on a
// test split (every image against every caption, `similarity` as RetrievalHandler scores). This is what the
// MDM ablation (docs/beit3.md) runs for both arms, so they differ only in the initial backbone.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { type BertTokenizer, DataReport, retrievalRecall, type RetrievalResult, Rng, VlError } from '@vl/core';
import { createDataLoader, loadBertTokenizer, readDataset, type StepRecord, Trainer } from '@vl/core/node';
import { BEIT3_IMAGE_NORM, beit3Preset, type Beit3PresetName } from './config.js';
import { loadBeit3Backbone } from './mdm-train.js';
import { Beit3ForRetrieval } from './model.js';

export interface Beit3RetrievalFinetuneOptions {
  train: string;
  test: string;
  vocab: string;
  out: string;
  /** An MDM output folder whose backbone starts the model; absent: from scratch (same seed, same heads). */
  init?: string;
  preset?: Beit3PresetName;
  imageSize?: number;
  textLength?: number;
  /** Use only the first N training records (a small labelled set). */
  maxTrainRecords?: number;
  batchSize?: number;
  maxSteps: number;
  lr?: number;
  weightDecay?: number;
  seed?: number;
}

export interface Beit3RetrievalFinetuneResult {
  steps: number;
  seconds: number;
  firstLoss: number;
  lastLoss: number;
  recall: RetrievalResult;
}

interface Batch {
  pixels: Float32Array;
  ids: Int32Array;
  pad: Int32Array;
  b: number;
  l: number;
}

const transform = (size: number) => ({ size, mode: 'squash' as const, interpolation: 'bicubic' as const, norm: BEIT3_IMAGE_NORM });

async function* batches(
  path: string,
  tok: BertTokenizer,
  o: { size: number; len: number; batchSize: number; seed: number; shuffle: boolean },
) {
  const { batches: it } = createDataLoader(
    { path },
    {
      batchSize: o.batchSize,
      tokenizer: tok,
      maxLength: o.len,
      padding: 'max_length',
      captions: 'first',
      transform: transform(o.size),
      shuffle: o.shuffle ? 100_000 : 0,
      seed: o.seed,
      dropLast: o.shuffle,
    },
  );
  for await (const b of it) {
    const am = (await b.attentionMask.data()) as Int32Array;
    const out: Batch = {
      pixels: (await b.pixelValues.data()) as Float32Array,
      ids: (await b.inputIds.data()) as Int32Array,
      pad: am.map((v) => 1 - v),
      b: b.keys.length,
      l: b.inputIds.shape[1],
    };
    b.dispose();
    yield out;
  }
}

/**
 * The first N records of a JSONL as `.first-N.jsonl` next to it: image paths stay relative to the same folder
 * (the reader refuses images outside the list's folder). Same N, same content, so runs may share it.
 */
export async function prefixRecords(path: string, n: number | undefined): Promise<string> {
  if (n === undefined) return path;
  const lines = (await readFile(path, 'utf8')).split('\n').filter((l) => l.trim());
  if (lines.length < n) throw new VlError('DATA_INVALID', `only ${lines.length} records, ${n} asked for`, { subject: path });
  const out = join(dirname(path), `.first-${n}.jsonl`);
  await writeFile(out, lines.slice(0, n).join('\n') + '\n');
  return out;
}

export async function finetuneBeit3Retrieval(o: Beit3RetrievalFinetuneOptions): Promise<Beit3RetrievalFinetuneResult> {
  const tok = await loadBertTokenizer(o.vocab);
  const seed = o.seed ?? 0;
  const base = beit3Preset(o.preset ?? 'tiny', { vocabSize: tok.vocabSize, imageSize: o.imageSize });
  const config = { ...base, tokens: { bos: tok.clsId, pad: tok.padId, eos: tok.sepId, unk: tok.unkId, mask: tok.maskId } };
  const model = new Beit3ForRetrieval(config, new Rng(seed).fork('finetune-init'));
  let trainer: Trainer<Batch> | null = null;
  try {
    if (o.init) await loadBeit3Backbone(model, o.init);
    model.train();
    const size = model.dims.imageSize;
    const len = o.textLength ?? 24;
    const batchSize = o.batchSize ?? 32;
    const train = await prefixRecords(o.train, o.maxTrainRecords);
    let n = 0;
    for await (const _ of readDataset({ path: train }, new DataReport())) n++;
    const stepsPerEpoch = Math.floor(n / batchSize);
    if (stepsPerEpoch < 1) throw new VlError('DATA_INVALID', `fewer than ${batchSize} training records`, { subject: train });
    const lr = o.lr ?? 1e-3;
    await mkdir(o.out, { recursive: true });
    trainer = new Trainer<Batch>({
      model,
      forward: (b, ctx) =>
        tf.tidy(() => {
          const r = model.forward(
            tf.tensor4d(b.pixels, [b.b, 3, size, size]),
            tf.tensor2d(b.ids, [b.b, b.l], 'int32'),
            tf.tensor2d(b.pad, [b.b, b.l], 'int32'),
            {
              rng: ctx.rng,
            },
          );
          return { loss: r.loss, losses: { itc: tf.clone(r.loss) as tf.Scalar }, metrics: {} };
        }) as never,
      stepsPerEpoch,
      optimizer: { lr, betas: [0.9, 0.999], eps: 1e-8, weightDecay: o.weightDecay ?? 0.05 },
      schedule: { kind: 'cosine', lr, minLr: 0, totalSteps: o.maxSteps, warmupSteps: Math.floor(o.maxSteps / 10) },
      seed,
      checkpointDir: join(o.out, 'ckpt'),
      checkpointEvery: o.maxSteps,
      keepCheckpoints: 1,
      metricsPath: join(o.out, 'metrics.jsonl'),
    });
    const t0 = Date.now();
    const fit = await trainer.fit((epoch) => batches(train, tok, { size, len, batchSize, seed: seed * 1000 + epoch, shuffle: true }), {
      maxSteps: o.maxSteps,
      // A fine-tuning run starts over: resuming from a finished run's checkpoint in `out` would take no steps.
      resume: false,
    });
    const seconds = (Date.now() - t0) / 1000;
    const recs: StepRecord[] = fit.records;
    const tenth = Math.max(1, Math.floor(recs.length / 10));
    const mean = (rs: StepRecord[]) => rs.reduce((s, r) => s + r.loss, 0) / rs.length;
    // Evaluation: every test image against every test caption.
    model.eval();
    const img: tf.Tensor[] = [];
    const txt: tf.Tensor[] = [];
    for await (const b of batches(o.test, tok, { size, len, batchSize: 64, seed: 0, shuffle: false })) {
      img.push(tf.tidy(() => model.encodeImage(tf.tensor4d(b.pixels, [b.b, 3, size, size])).cls));
      txt.push(tf.tidy(() => model.encodeText(tf.tensor2d(b.ids, [b.b, b.l], 'int32'), tf.tensor2d(b.pad, [b.b, b.l], 'int32')).cls));
    }
    const sims = tf.tidy(() => model.similarity(tf.concat(img), tf.concat(txt)));
    const numImages = sims.shape[0] as number;
    const recall = retrievalRecall({
      sims: sims.dataSync(),
      numImages,
      numTexts: numImages,
      textToImage: Int32Array.from({ length: numImages }, (_, i) => i),
    });
    tf.dispose([sims, ...img, ...txt]);
    return { steps: fit.steps, seconds, firstLoss: mean(recs.slice(0, tenth)), lastLoss: mean(recs.slice(-tenth)), recall };
  } finally {
    trainer?.dispose();
    model.dispose();
  }
}
