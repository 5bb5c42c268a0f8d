// `vl train beit3`: `--task tokenizer` trains the visual tokenizer MDM predicts (core's k-means codebook over
// teacher patch features) on a caption dataset's images; `--task mdm` (the default) pretrains the tiny or base
// backbone by masked data modeling (mdm.ts) on the same dataset through core's loader and Trainer, resumable:
// `ckpt/` (Trainer checkpoints), `metrics.jsonl`, and `model/` (config.json with its `mdm` section +
// model.safetensors + vocab.txt), which `loadBeit3Mdm` reads and `loadBeit3Backbone` puts under a
// fine-tuned model.
import { copyFile, mkdir } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import {
  type BertTokenizer,
  DataReport,
  type ObjectivesConfig,
  reserveWasmHeapFor,
  Rng,
  type StateEntry,
  VlError,
  withoutWeightInit,
} from '@vl/core';
import {
  createDataLoader,
  loadBertTokenizer,
  loadClipVisionTeacher,
  loadVisualTokenizer,
  readCheckpoint,
  readDataset,
  readJsonFile,
  type StepRecord,
  Trainer,
  trainVisualTokenizer,
  type VisualTokenizerFile,
  type VisualTokenizerTeacher,
  writeJsonFile,
  writeSafetensorsFile,
} from '@vl/core/node';
import { BEIT3_IMAGE_NORM, beit3ConfigFromJson, beit3ConfigToJson, beit3Preset, type Beit3PresetName } from './config.js';
import { type Beit3MdmBatch, type Beit3MdmConfig, Beit3ForMaskedDataModeling, Beit3MdmPretrainer, type MdmMaskingOptions } from './mdm.js';
import type { Beit3Wrapper } from './model.js';

/** Texts are padded to this on the tiny preset (the synthetic captions fit; tiny has 62 text positions). */
export const BEIT3_MDM_TINY_TEXT_LEN = 24;
/** The tokenizer's vocabulary on the tiny preset (BEiT v2: 8192). */
export const BEIT3_MDM_TINY_VISUAL_VOCAB = 64;

/** The MDM model of a preset: the retrieval factory's backbone (its sizes; `normalize_output` on), ids from the tokenizer. */
export function beit3MdmConfig(
  preset: Beit3PresetName,
  o: { vocabSize: number; imageSize?: number; visualVocabSize: number; tokens: Beit3MdmConfig['tokens'] },
): Beit3MdmConfig {
  const base = beit3Preset(preset, { vocabSize: o.vocabSize, imageSize: o.imageSize });
  return { ...base, tokens: o.tokens, mdm: { visualVocabSize: o.visualVocabSize } };
}

/** Writes config.json (snake_case, with `mdm`) and model.safetensors under the official backbone keys plus the two heads. */
export async function saveBeit3Mdm(model: Beit3ForMaskedDataModeling, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeJsonFile(join(dir, 'config.json'), beit3ConfigToJson(model.config));
  const host = new Map(
    [...model.stateDict()].map(([k, t]) => [
      k,
      { dtype: 'float32' as const, shape: [...t.shape], data: Float32Array.from(t.dataSync()), fileDtype: 'F32' as const },
    ]),
  );
  await writeSafetensorsFile(join(dir, 'model.safetensors'), host);
}

/** `DIR/model` when DIR is a `vl train beit3` output folder, else DIR. */
export function beit3ModelDir(dir: string): string {
  const inner = join(dir, 'model');
  return existsSync(join(inner, 'config.json')) ? inner : dir;
}

async function readMdmConfig(dir: string): Promise<Beit3MdmConfig> {
  const path = join(dir, 'config.json');
  const config = beit3ConfigFromJson(await readJsonFile(path), path) as Beit3MdmConfig;
  if (!config.mdm) {
    throw new VlError('CONFIG_INVALID', 'config.json has no mdm section: not a masked-data-modeling checkpoint', {
      subject: path,
      hint: 'load fine-tuned checkpoints with loadBeit3',
    });
  }
  return config;
}

/** Reads an MDM model folder (strict). Comes back in eval mode. */
export async function loadBeit3Mdm(dir: string): Promise<Beit3ForMaskedDataModeling> {
  const folder = beit3ModelDir(dir);
  const config = await readMdmConfig(folder);
  // As loadBeit3: F32 safetensors data straight into the variables (a .pth takes the copy path), the heap grown
  // once, and no random weights drawn for a strict load to overwrite.
  const { tensors, report } = await readCheckpoint(folder, { deferData: true });
  reserveWasmHeapFor(tensors);
  const model = withoutWeightInit(() => new Beit3ForMaskedDataModeling(config));
  try {
    model.loadStateDict(tensors, { source: report.files.join(', ') });
  } catch (err) {
    model.dispose();
    throw err;
  }
  model.eval();
  return model;
}

/**
 * Copies an MDM checkpoint's backbone (`beit3.*`) into a fine-tuned model, whose heads stay as built. Every
 * backbone key must be there with its shape (VlError STATE_DICT_MISMATCH listing those that are not).
 * `heads` (key prefixes, e.g. `mlm_head.`) are copied too: the official loader fills every parameter whose name
 * and shape match, so the captioning model's `mlm_head` takes MDM's text head; each must be in both.
 */
export async function loadBeit3Backbone(
  target: Beit3Wrapper,
  dir: string,
  options: { heads?: readonly string[] } = {},
): Promise<{ loaded: number; from: string }> {
  const folder = beit3ModelDir(dir);
  // Only the backbone (and `heads`) is read, each straight into the target's variable on wasm (core's deferData;
  // safetensors only). The target was built with drawn weights by the caller: its other heads stay as built.
  const { tensors } = await readCheckpoint(folder, { deferData: true });
  const prefixes = ['beit3.', ...(options.heads ?? [])];
  const backbone = new Map<string, StateEntry>([...tensors].filter(([k]) => prefixes.some((p) => k.startsWith(p))));
  target.loadStateDict(backbone, { strict: false, source: folder });
  const missing = [...target.stateDict().keys()].filter((k) => prefixes.some((p) => k.startsWith(p)) && !backbone.has(k));
  for (const h of options.heads ?? []) {
    if (![...backbone.keys()].some((k) => k.startsWith(h))) missing.push(`${h}* (not in the checkpoint)`);
  }
  if (missing.length) {
    throw new VlError(
      'STATE_DICT_MISMATCH',
      `the checkpoint lacks ${missing.length} backbone tensor(s): ${missing.slice(0, 5).join(', ')}`,
      {
        subject: folder,
      },
    );
  }
  return { loaded: backbone.size, from: folder };
}

export interface Beit3MdmTrainOptions extends MdmMaskingOptions {
  train: string;
  vocab: string;
  out: string;
  /** A folder written by `--task tokenizer` (or its parent training folder). */
  tokenizer: string;
  preset?: Beit3PresetName;
  imageSize?: number;
  textLength?: number;
  objectives?: ObjectivesConfig;
  /** Module.freeze patterns (e.g. `beit3.vision_embed.**`), left bit-identical. */
  freeze?: string[];
  batchSize?: number;
  epochs?: number;
  maxSteps?: number;
  lr?: number;
  warmupSteps?: number;
  weightDecay?: number;
  seed?: number;
  checkpointEvery?: number;
  resume?: boolean;
  onProgress?: (done: number, total: number, record: StepRecord) => void;
}

export interface Beit3MdmTrainSummary {
  steps: number;
  seconds: number;
  first: Record<string, number>;
  last: Record<string, number>;
  resumedFrom: string | null;
  frozen: string[];
  rows: Record<string, number>;
  tokenizer: VisualTokenizerFile;
  out: { model: string; metrics: string; ckpt: string };
}

function transform(size: number) {
  // datasets.py: bicubic resize to S×S, mean = std = 0.5; no crop or flip (the scenes' captions name positions).
  return { size, mode: 'squash' as const, interpolation: 'bicubic' as const, norm: BEIT3_IMAGE_NORM };
}

async function countRecords(train: string): Promise<number> {
  let n = 0;
  for await (const _ of readDataset({ path: train }, new DataReport())) n++;
  return n;
}

function tokenIds(tok: BertTokenizer): Beit3MdmConfig['tokens'] {
  // BERT ids in BEiT-3's roles: [CLS] is bos, [SEP] eos.
  return { bos: tok.clsId, pad: tok.padId, eos: tok.sepId, unk: tok.unkId, mask: tok.maskId };
}

const meanOf = (rs: StepRecord[]) => {
  const sums: Record<string, number> = {};
  for (const r of rs) for (const [k, v] of Object.entries(r.losses)) sums[k] = (sums[k] ?? 0) + v / rs.length;
  return sums;
};

export async function pretrainBeit3Mdm(o: Beit3MdmTrainOptions): Promise<Beit3MdmTrainSummary> {
  const tok = await loadBertTokenizer(o.vocab);
  const { tokenizer: visual, file: tokFile } = await loadVisualTokenizer(o.tokenizer);
  const preset = o.preset ?? 'tiny';
  const imageSize = o.imageSize ?? (preset === 'tiny' ? tokFile.image_size : undefined);
  const config = beit3MdmConfig(preset, { vocabSize: tok.vocabSize, imageSize, visualVocabSize: visual.vocabSize, tokens: tokenIds(tok) });
  const seed = o.seed ?? 0;
  const model = new Beit3ForMaskedDataModeling(config, new Rng(seed).fork('init'));
  let trainer: Trainer<Beit3MdmBatch> | null = null;
  try {
    const dims = model.dims;
    if (tokFile.image_size !== dims.imageSize) {
      throw new VlError(
        'CONFIG_INVALID',
        `the visual tokenizer was trained on ${tokFile.image_size} px images, the model reads ${dims.imageSize} px`,
        {
          subject: o.tokenizer,
          hint: 'train the tokenizer at the image size of the model (--image-size)',
        },
      );
    }
    const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => Math.abs(v - b[i]!) < 1e-6);
    if (tokFile.norm && !(same(tokFile.norm.mean, BEIT3_IMAGE_NORM.mean) && same(tokFile.norm.std, BEIT3_IMAGE_NORM.std))) {
      throw new VlError(
        'CONFIG_INVALID',
        `the visual tokenizer was fitted on pixels normalised with mean ${tokFile.norm.mean} / std ${tokFile.norm.std}`,
        {
          subject: o.tokenizer,
          hint: `BEiT-3 feeds mean ${BEIT3_IMAGE_NORM.mean} / std ${BEIT3_IMAGE_NORM.std}: train the tokenizer with that normalisation`,
        },
      );
    }
    const textLength = o.textLength ?? (preset === 'tiny' ? BEIT3_MDM_TINY_TEXT_LEN : 64);
    if (textLength > dims.maxTextLength) {
      throw new VlError('CONFIG_INVALID', `text length ${textLength} exceeds the ${dims.maxTextLength} text positions`, {
        subject: 'beit3 mdm',
      });
    }
    const frozen = o.freeze?.length ? model.freeze(o.freeze) : [];
    const pretrainer = new Beit3MdmPretrainer(model, visual, o);
    const batchSize = o.batchSize ?? 32;
    const stepsPerEpoch = Math.floor((await countRecords(o.train)) / batchSize);
    if (stepsPerEpoch < 1) throw new VlError('DATA_INVALID', `fewer than ${batchSize} training records`, { subject: o.train });
    const totalSteps = o.maxSteps ?? stepsPerEpoch * (o.epochs ?? 1);
    const lr = o.lr ?? 1e-3;
    await mkdir(o.out, { recursive: true });
    const paths = { model: join(o.out, 'model'), metrics: join(o.out, 'metrics.jsonl'), ckpt: join(o.out, 'ckpt') };
    trainer = new Trainer<Beit3MdmBatch>({
      model,
      forward: (batch, ctx) => pretrainer.forward(batch, ctx.rng),
      stepsPerEpoch,
      // The paper's pretraining optimizer (§3.1): AdamW, β (0.9, 0.98), ε 1e-6, weight decay 0.05, cosine after warm-up;
      // no decay on the class/mask tokens and position tables (BEiT's no_weight_decay).
      optimizer: {
        lr,
        betas: [0.9, 0.98],
        eps: 1e-6,
        weightDecay: o.weightDecay ?? 0.05,
        noDecay: ['beit3.vision_embed.cls_token', 'beit3.vision_embed.mask_token', 'beit3.encoder.embed_positions.**'],
      },
      schedule: { kind: 'cosine', lr, minLr: 0, totalSteps, warmupSteps: o.warmupSteps ?? Math.floor(totalSteps / 10) },
      seed,
      checkpointDir: paths.ckpt,
      checkpointEvery: o.checkpointEvery ?? 200,
      keepCheckpoints: 2,
      metricsPath: paths.metrics,
      onProgress: (p) => o.onProgress?.(p.step, totalSteps, p.record),
      extraState: () => ({ task: 'mdm', train: o.train, tokenizer: o.tokenizer, frozen: o.freeze ?? [], options: pretrainer.options }),
    });
    const size = dims.imageSize;
    const epochData = async function* (epoch: number): AsyncGenerator<Beit3MdmBatch> {
      const { batches } = createDataLoader(
        { path: o.train },
        {
          batchSize,
          tokenizer: tok,
          maxLength: textLength,
          padding: 'max_length',
          captions: 'random',
          transform: transform(size),
          shuffle: 100_000,
          seed: seed * 1000 + epoch,
          dropLast: true,
        },
      );
      for await (const b of batches) {
        const batch: Beit3MdmBatch = {
          pixels: (await b.pixelValues.data()) as Float32Array,
          imageSize: size,
          batchSize: b.keys.length,
          inputIds: (await b.inputIds.data()) as Int32Array,
          attentionMask: (await b.attentionMask.data()) as Int32Array,
          seqLength: b.inputIds.shape[1],
        };
        b.dispose();
        yield batch;
      }
    };
    const t0 = Date.now();
    const fit = await trainer.fit(epochData, { maxSteps: totalSteps, resume: o.resume ?? true });
    const seconds = (Date.now() - t0) / 1000;
    await saveBeit3Mdm(model, paths.model);
    const vocabFile = statSync(o.vocab).isDirectory() ? join(o.vocab, 'vocab.txt') : o.vocab;
    await copyFile(vocabFile, join(paths.model, basename(vocabFile).endsWith('.json') ? 'tokenizer.json' : 'vocab.txt'));
    const tenth = Math.max(1, Math.floor(fit.records.length / 10));
    return {
      steps: fit.steps,
      seconds,
      first: meanOf(fit.records.slice(0, tenth)),
      last: meanOf(fit.records.slice(-tenth)),
      resumedFrom: fit.resumedFrom,
      frozen,
      rows: pretrainer.rowCounts(batchSize),
      tokenizer: tokFile,
      out: paths,
    };
  } finally {
    trainer?.dispose();
    visual.dispose();
    model.dispose();
  }
}

export interface Beit3TokenizerTrainOptions {
  train: string;
  /** Held-out images for the usage report (default: val.jsonl next to train when it exists). */
  val?: string;
  out: string;
  preset?: Beit3PresetName;
  imageSize?: number;
  visualVocabSize?: number;
  featureDim?: number;
  /**
   * `random` (default: a seeded random feature map of the raw patch) or `clip:DIR`: the vision tower of a
   * CLIP saved by `vl train clip` (its patch tokens after ln_post), a semantic teacher as in BEiT v2.
   */
  teacher?: string;
  maxImages?: number;
  seed?: number;
}

/** `--teacher`: undefined for the random teacher, else the CLIP tower read from disk. */
async function beit3Teacher(spec: string | undefined, imageSize: number): Promise<VisualTokenizerTeacher | undefined> {
  if (spec === undefined || spec === 'random') return undefined;
  if (!spec.startsWith('clip:') || spec.length === 5) {
    throw new VlError('INVALID_ARGUMENT', `--teacher must be 'random' or 'clip:DIR', got '${spec}'`, {
      subject: '--teacher',
      hint: "clip:DIR is the --out folder of `vl train clip` (trained at the model's image and patch size)",
    });
  }
  const { teacher, source } = await loadClipVisionTeacher(spec.slice(5), { inputNorm: BEIT3_IMAGE_NORM });
  if (teacher.config.imageSize !== imageSize) {
    teacher.dispose();
    throw new VlError('CONFIG_INVALID', `the CLIP teacher reads ${teacher.config.imageSize} px images, the model ${imageSize} px`, {
      subject: source.path,
      hint: 'train the CLIP at the image size of the model (--image-size)',
    });
  }
  return {
    module: teacher,
    file: { kind: 'vit', dim: teacher.dim, config: teacher.config, source: { kind: 'clip', path: source.path, weights: source.weights } },
  };
}

/** `--task tokenizer`: the k-means tokenizer at the preset's patch and image size, written to `out/tokenizer`. */
export async function trainBeit3VisualTokenizer(o: Beit3TokenizerTrainOptions): Promise<{ dir: string; file: VisualTokenizerFile }> {
  const preset = o.preset ?? 'tiny';
  const e = beit3Preset(preset, { imageSize: o.imageSize }).encoderConfig;
  const siblingVal = join(o.train, '..', 'val.jsonl');
  const dir = join(o.out, 'tokenizer');
  const teacher = await beit3Teacher(o.teacher, e.imgSize);
  const t = await trainVisualTokenizer({
    train: o.train,
    // An empty val.jsonl (a synth split without validation) is no held-out set.
    val: o.val ?? (existsSync(siblingVal) && statSync(siblingVal).size > 0 ? siblingVal : undefined),
    out: dir,
    vocabSize: o.visualVocabSize ?? (preset === 'tiny' ? BEIT3_MDM_TINY_VISUAL_VOCAB : 8192),
    imageSize: e.imgSize,
    patchSize: e.patchSize,
    channels: e.inChans,
    norm: BEIT3_IMAGE_NORM,
    featureDim: o.featureDim,
    teacher,
    maxImages: o.maxImages,
    seed: o.seed,
  });
  t.tokenizer.dispose();
  return { dir, file: t.file };
}
