// `vl train vlmo --stage 1|2|3`: one stage of VLMo's stagewise pretraining on a caption dataset (JSONL +
// images, e.g. `vl data synth`) through core's loader and Trainer. A stage starts from a preset or from
// the previous stage's output (`--init DIR`: its architecture and weights; keys the new stage lacks are
// dropped and keys it adds are freshly initialised, as the official loader's strict=False does), freezes
// what the stage's config names, and writes a resumable run: `ckpt/` (Trainer checkpoints),
// `metrics.jsonl`, and `model/` (config.json + model.safetensors + vocab.txt), which `--init` of the next
// stage, `vl eval vlmo` and `vl match vlmo` read.
import { copyFile, mkdir } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import {
  type BertTokenizer,
  DataReport,
  type KMeansVisualTokenizer,
  type ObjectivesConfig,
  PatchCodebookTokenizer,
  Rng,
  type StateEntry,
  VlError,
} from '@vl/core';
import {
  createDataLoader,
  loadBertTokenizer,
  loadVisualTokenizer,
  readCheckpoint,
  readDataset,
  type StepRecord,
  Trainer,
  type VisualTokenizerFile,
} from '@vl/core/node';
import { fromOfficialStateDict, readVlmoConfig, saveVlmo } from './checkpoint.js';
import { parseVlmoConfig, VLMO_IMAGE_NORM, type VlmoConfig, type VlmoPresetName, vlmoPreset } from './config.js';
import { Vlmo } from './model.js';
import { type VlmoPretrainBatch, VlmoPretrainer } from './pretraining.js';
import { VLMO_STAGES, type VlmoStage, vlmoStageConfig } from './stages.js';

/** Text length for training on a preset: tiny's 9 is the fixture's, too short for captions; 24 fits the synthetic ones. */
export const VLMO_TINY_TRAIN_TEXT_LEN = 24;
/** Visual vocabulary of the stage-1 stand-in tokenizer on the tiny preset (base: BEiT's 8192). */
export const VLMO_TINY_VISUAL_VOCAB = 64;

export interface VlmoTrainOptions {
  stage: VlmoStage;
  /** The previous stage's output folder (or its `model/` folder): architecture and weights to start from. */
  init?: string;
  /** Training list (JSONL/CSV/COCO/WebDataset), images relative to it. */
  train: string;
  /** BERT vocab.txt or tokenizer.json. */
  vocab: string;
  out: string;
  /** Without `init`: the preset to build (default tiny). */
  preset?: VlmoPresetName;
  imageSize?: number;
  /** Without `init`: texts are padded to this (default: tiny 24, else the preset's 40). */
  maxTextLen?: number;
  /** Stage 1: size of the visual vocabulary (default: the tokenizer's; else tiny 64, else 8192). */
  visualVocabSize?: number;
  /**
   * Stage 1: a trained visual tokenizer folder (core's `trainVisualTokenizer`, e.g. `vl train beit3 --task
   * tokenizer`); without it the MIM targets come from core's fixed random `PatchCodebookTokenizer`.
   */
  tokenizer?: string;
  /**
   * Without `init`: fields of the preset's config to change (camelCase sections, as VlmoConfig), e.g.
   * `{ transformerKwargs: { vlffnStartLayerIndex: 4 }, vlmoConfig: { dropPathRate: 0 } }`; validated.
   */
  architecture?: { vlmoConfig?: Record<string, unknown>; transformerKwargs?: Record<string, unknown> };
  objectives?: ObjectivesConfig;
  /** Stage 1: masked patches per image and the smallest block (see vlmoMaskingGenerator). */
  maskPatches?: number;
  minBlockPatches?: number;
  batchSize?: number;
  epochs?: number;
  maxSteps?: number;
  lr?: number;
  warmupSteps?: number;
  weightDecay?: number;
  seed?: number;
  checkpointEvery?: number;
  /** Continue from out/ckpt when it has a checkpoint (default true). */
  resume?: boolean;
  onProgress?: (done: number, total: number, record: StepRecord) => void;
}

/** What `--init` loaded: tensors copied, the stage's new parameters (fresh), and what the new stage has no place for. */
export interface VlmoInitReport {
  from: string;
  loaded: number;
  /** What was adapted on the way in. */
  notes: string[];
  fresh: string[];
  unused: string[];
}

export interface VlmoTrainSummary {
  stage: VlmoStage;
  steps: number;
  seconds: number;
  /** Mean of each loss over the first and the last 10% of the steps of this run. */
  first: Record<string, number>;
  last: Record<string, number>;
  init: VlmoInitReport | null;
  resumedFrom: string | null;
  /** Parameter names the stage froze, and the count of scalars left trainable and frozen. */
  frozen: string[];
  trainedScalars: number;
  frozenScalars: number;
  out: { model: string; metrics: string; ckpt: string };
}

const TOKEN_TYPES = 'token_type_embeddings.weight';

/** `DIR/model` when DIR is a `vl train vlmo` output folder, else DIR itself. */
export function vlmoModelDir(dir: string): string {
  const inner = join(dir, 'model');
  return existsSync(join(inner, 'config.json')) ? inner : dir;
}

/**
 * Copies the weights under `dir` into `model` for every key both have; reports the keys only the model
 * has (fresh) and only the file has (unused). A key with another shape is an error listing all of them.
 */
export async function loadVlmoInit(model: Vlmo, dir: string): Promise<VlmoInitReport> {
  const from = vlmoModelDir(dir);
  // Only the keys the model shares are read, each straight into its variable on wasm (core's deferData; safetensors
  // only). The model itself is built by the caller with drawn weights: the keys the file lacks stay fresh.
  const { tensors } = await readCheckpoint(from, { deferData: true });
  const file = fromOfficialStateDict(tensors);
  const ours = model.stateDict();
  // An NLVR2 model widens token_type_embeddings to 3 rows; from a 2-row checkpoint row 2 copies row 1, as VLMo.__init__ does.
  const types = file.get(TOKEN_TYPES);
  const ourTypes = ours.get(TOKEN_TYPES);
  let widenTypes = false;
  if (types && ourTypes && types.shape[0] === 2 && ourTypes.shape[0] === 3 && types.shape[1] === ourTypes.shape[1]) {
    const d = types.shape[1] as number;
    const data = new Float32Array(3 * d);
    data.set(Float32Array.from(types.data as ArrayLike<number>).subarray(0, 2 * d));
    data.set(data.subarray(d, 2 * d), 2 * d);
    file.set(TOKEN_TYPES, { dtype: 'float32', shape: [3, d], data });
    widenTypes = true;
  }
  const mismatched: string[] = [];
  const load = new Map<string, StateEntry>();
  for (const [key, value] of file) {
    const t = ours.get(key);
    if (!t) continue;
    if (t.shape.join() !== value.shape.join()) mismatched.push(`${key} [${value.shape}] ≠ [${t.shape}]`);
    else load.set(key, value);
  }
  if (mismatched.length) {
    throw new VlError('STATE_DICT_MISMATCH', `${mismatched.length} tensor(s) of another shape: ${mismatched.join('; ')}`, {
      subject: from,
      hint: 'start each stage from the previous stage of the same architecture (the sizes come from its config.json)',
    });
  }
  model.loadStateDict(load, { strict: false, source: from });
  return {
    from,
    loaded: load.size,
    notes: widenTypes ? ['token_type_embeddings widened to 3 rows for NLVR2 (row 2 = row 1)'] : [],
    fresh: [...ours.keys()].filter((k) => !file.has(k)),
    unused: [...file.keys()].filter((k) => !ours.has(k)),
  };
}

function transform(size: number) {
  // VLMo's square transform (resize to S×S, bicubic) and inception normalisation; the synthetic scenes'
  // captions name positions, so no crop or flip.
  return { size, mode: 'squash' as const, interpolation: 'bicubic' as const, norm: VLMO_IMAGE_NORM };
}

/** What picks a model's architecture for `vl train vlmo` (a stage, or a task fine-tune). */
export interface VlmoBaseConfigOptions {
  init?: string;
  vocab?: string;
  preset?: VlmoPresetName;
  imageSize?: number;
  maxTextLen?: number;
  architecture?: { vlmoConfig?: Record<string, unknown>; transformerKwargs?: Record<string, unknown> };
}

/**
 * The architecture to train: `--init`'s config.json (its vocabulary must be the tokenizer's, else a typed
 * error with `hint`), or a preset sized for the tokenizer with the `--config` architecture overrides.
 */
export async function vlmoBaseConfig(o: VlmoBaseConfigOptions, vocabSize: number, hint: string): Promise<VlmoConfig> {
  if (o.init) {
    const base = await readVlmoConfig(vlmoModelDir(o.init));
    if (base.vlmoConfig.vocabSize !== vocabSize) {
      throw new VlError('CONFIG_INVALID', `the tokenizer has ${vocabSize} tokens but the --init model ${base.vlmoConfig.vocabSize}`, {
        subject: o.vocab,
        hint,
      });
    }
    return base;
  }
  const preset = o.preset ?? 'tiny';
  const base = vlmoPreset(preset, {
    vocabSize,
    imageSize: o.imageSize,
    maxTextLen: o.maxTextLen ?? (preset === 'tiny' ? VLMO_TINY_TRAIN_TEXT_LEN : undefined),
  });
  if (!o.architecture) return base;
  const { bertConfig: _derived, ...rest } = base;
  return parseVlmoConfig(
    {
      ...rest,
      vlmoConfig: { ...base.vlmoConfig, ...o.architecture.vlmoConfig },
      transformerKwargs: { ...base.transformerKwargs, ...o.architecture.transformerKwargs },
    },
    'the --config architecture overrides',
  );
}

/** The config a stage trains: from `--init`'s config.json, or from a preset sized for the tokenizer. */
async function stageConfig(o: VlmoTrainOptions, tok: BertTokenizer, tokenizerVocab?: number): Promise<VlmoConfig> {
  const base = await vlmoBaseConfig(o, tok.vocabSize, 'train every stage with the same vocabulary');
  const tokens = {
    pad: tok.padId,
    unk: tok.unkId,
    cls: tok.clsId,
    sep: tok.sepId,
    mask: tok.maskId,
  };
  const visualVocabSize =
    o.visualVocabSize ??
    tokenizerVocab ??
    base.vlmoConfig.visualVocabSize ??
    (base.transformerKwargs.embedDim <= 64 ? VLMO_TINY_VISUAL_VOCAB : undefined);
  return vlmoStageConfig({ ...base, tokens }, o.stage, { visualVocabSize });
}

async function countBatches(train: string, batchSize: number): Promise<number> {
  let n = 0;
  for await (const _ of readDataset({ path: train }, new DataReport())) n++;
  return Math.floor(n / batchSize);
}

/** A trained tokenizer must cut the model's patches from pixels normalised as the model's. */
function checkTokenizer(file: VisualTokenizerFile, dims: { patchSize: number }, dir: string): void {
  const problems: string[] = [];
  if (file.patch_size !== dims.patchSize) problems.push(`its patches are ${file.patch_size} px, the model's ${dims.patchSize} px`);
  const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => Math.abs(v - b[i]!) < 1e-6);
  if (file.norm && !(same(file.norm.mean, VLMO_IMAGE_NORM.mean) && same(file.norm.std, VLMO_IMAGE_NORM.std))) {
    problems.push(
      `it was fitted on pixels normalised with mean ${file.norm.mean} / std ${file.norm.std}, VLMo uses ${VLMO_IMAGE_NORM.mean} / ${VLMO_IMAGE_NORM.std}`,
    );
  }
  if (problems.length) {
    throw new VlError('CONFIG_INVALID', `the visual tokenizer does not fit this model: ${problems.join('; ')}`, {
      subject: dir,
      hint: 'train the tokenizer with the patch size and image normalisation of the model',
    });
  }
}

export async function pretrainVlmo(o: VlmoTrainOptions): Promise<VlmoTrainSummary> {
  const stage = VLMO_STAGES[o.stage];
  if (!stage) throw new VlError('INVALID_ARGUMENT', `stage must be 1, 2 or 3, got ${String(o.stage)}`, { subject: 'pretrainVlmo' });
  if (o.init && !existsSync(o.init)) throw new VlError('INVALID_ARGUMENT', 'no such folder', { subject: o.init });
  if (o.init && o.architecture) {
    throw new VlError('INVALID_ARGUMENT', 'architecture overrides apply to a fresh model, not to one started from --init', {
      subject: o.init,
      hint: "a stage takes its previous stage's architecture; change it at the stage that starts from a preset",
    });
  }
  const tok = await loadBertTokenizer(o.vocab);
  const trained = o.stage === 1 && o.tokenizer ? await loadVisualTokenizer(o.tokenizer) : null;
  let visualTokenizer: PatchCodebookTokenizer | KMeansVisualTokenizer | null = trained?.tokenizer ?? null;
  let model: Vlmo;
  try {
    const config = await stageConfig(o, tok, trained?.tokenizer.vocabSize);
    model = new Vlmo(config, new Rng(o.seed ?? 0).fork('init'));
  } catch (err) {
    visualTokenizer?.dispose();
    throw err;
  }
  const seed = o.seed ?? 0;
  let trainer: Trainer<VlmoPretrainBatch> | null = null;
  try {
    const init = o.init ? await loadVlmoInit(model, o.init) : null;
    const frozen = model.freeze([...stage.freeze]);
    const dims = model.dims;
    if (trained) checkTokenizer(trained.file, dims, o.tokenizer as string);
    if (o.stage === 1 && !visualTokenizer) {
      visualTokenizer = new PatchCodebookTokenizer({
        patchSize: dims.patchSize,
        channels: dims.inChans,
        vocabSize: dims.visualVocabSize as number,
        rng: new Rng(seed).fork('visual-tokenizer'),
      });
    }
    const pretrainer = new VlmoPretrainer(model, {
      stage: o.stage,
      objectives: o.objectives,
      visualTokenizer: visualTokenizer ?? undefined,
      maskPatches: o.maskPatches,
      minBlockPatches: o.minBlockPatches,
    });
    const batchSize = o.batchSize ?? 32;
    const stepsPerEpoch = await countBatches(o.train, batchSize);
    if (stepsPerEpoch < 1) throw new VlError('DATA_INVALID', `fewer than ${batchSize} training records`, { subject: o.train });
    const totalSteps = o.maxSteps ?? stepsPerEpoch * (o.epochs ?? 1);
    const lr = o.lr ?? 1e-3;
    await mkdir(o.out, { recursive: true });
    const paths = { model: join(o.out, 'model'), metrics: join(o.out, 'metrics.jsonl'), ckpt: join(o.out, 'ckpt') };
    trainer = new Trainer<VlmoPretrainBatch>({
      model,
      forward: (batch, ctx) => pretrainer.forward(batch, ctx.rng),
      stepsPerEpoch,
      // The official set_schedule: AdamW, betas (0.9, 0.98), eps 1e-8.
      optimizer: { lr, betas: [0.9, 0.98], eps: 1e-8, weightDecay: o.weightDecay ?? 0.01, noDecay: [...stage.noDecay] },
      schedule: {
        kind: 'cosine',
        lr,
        minLr: 0,
        totalSteps,
        warmupSteps: o.warmupSteps ?? Math.floor(totalSteps / 10),
      },
      seed,
      checkpointDir: paths.ckpt,
      checkpointEvery: o.checkpointEvery ?? 200,
      keepCheckpoints: 2,
      metricsPath: paths.metrics,
      onProgress: (p) => o.onProgress?.(p.step, totalSteps, p.record),
      extraState: () => ({ stage: o.stage, init: init?.from ?? null, train: o.train, frozen: stage.freeze }),
    });
    const size = dims.imageSize;
    const epochData = async function* (epoch: number): AsyncGenerator<VlmoPretrainBatch> {
      const { batches } = createDataLoader(
        { path: o.train },
        {
          batchSize,
          tokenizer: tok,
          maxLength: dims.maxTextLen,
          padding: 'max_length',
          captions: 'random',
          transform: transform(size),
          shuffle: 100_000,
          seed: seed * 1000 + epoch,
          dropLast: true,
        },
      );
      for await (const b of batches) {
        const batch: VlmoPretrainBatch = {
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
    await saveVlmo(model, paths.model);
    const vocabFile = statSync(o.vocab).isDirectory() ? join(o.vocab, 'vocab.txt') : o.vocab;
    await copyFile(vocabFile, join(paths.model, basename(vocabFile).endsWith('.json') ? 'tokenizer.json' : 'vocab.txt'));
    const records = fit.records;
    const tenth = Math.max(1, Math.floor(records.length / 10));
    const meanOf = (rs: StepRecord[]) => {
      const sums: Record<string, number> = {};
      for (const r of rs) for (const [k, v] of Object.entries(r.losses)) sums[k] = (sums[k] ?? 0) + v / rs.length;
      return sums;
    };
    const frozenSet = new Set(frozen);
    let frozenScalars = 0;
    let trainedScalars = 0;
    for (const [name, p] of model.namedParameters()) {
      if (frozenSet.has(name)) frozenScalars += p.size;
      else trainedScalars += p.size;
    }
    return {
      stage: o.stage,
      steps: fit.steps,
      seconds,
      first: meanOf(records.slice(0, tenth)),
      last: meanOf(records.slice(-tenth)),
      init,
      resumedFrom: fit.resumedFrom,
      frozen,
      trainedScalars,
      frozenScalars,
      out: paths,
    };
  } finally {
    trainer?.dispose();
    visualTokenizer?.dispose();
    model.dispose();
  }
}
