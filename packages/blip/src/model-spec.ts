// BLIP's implementation of the model contract (@vl/core ModelSpec): config and presets, the folder layout and
// both key maps (ours = Hugging Face's, and Salesforce's original BLIP: official-keys.ts), ITC/ITM/LM objectives,
// verify, caption, match, train, eval, and CapFilt as BLIP's own command. index.ts registers it; `vl <command> blip`
// and `blip <command>` run it.
import { existsSync } from 'node:fs';
import { type HostTensor, type ModelSpec, Rng, type StateEntry, validateConfig, VlError } from '@vl/core';
import { capfiltCommandSpec } from './capfilt/cli.js';
import { BLIP_TARGETS, blipCheckpointTarget, isBlipTarget, TIED_KEYS } from './checkpoint.js';
import { type BlipConfig, blipConfigFromJson, blipConfigSchema, blipPreset } from './config.js';
import { BlipForConditionalGeneration, BlipForImageTextRetrieval } from './modeling.js';
import { blipConfigFromOfficial, inferenceConfig, isOfficialBlipConfig } from './official-config.js';
import {
  type BlipTarget,
  detectBlipLayout,
  fromOfficialState,
  OFFICIAL_CLASS_TARGET,
  type OfficialBlipClass,
  officialClassOf,
  toOfficialState,
} from './official-keys.js';
import { BlipForPretraining, parsePretrainingOptions, pretrainingOptionsSchema } from './pretraining.js';
import { BlipForRetrievalTraining, type BlipRetrievalTrainingOptions } from './retrieval-training.js';
import { evaluateBlip, pretrainBlip } from './train.js';
import { verifyCheckpoint } from './verify.js';

type BlipModel = BlipForConditionalGeneration | BlipForImageTextRetrieval | BlipForRetrievalTraining | BlipForPretraining;

/** Keys a file may lack: `position_ids` (newer transformers drop it) and the queue's image ids (BLIP_Pretrain has none). */
const OPTIONAL_KEY = /((^|\.)embeddings\.position_ids|^queues\.idx_queue)$/;

function architectureOf(config: BlipConfig, subject: string): BlipTarget {
  const arch = config.architectures?.[0] ?? 'BlipForConditionalGeneration';
  if (isBlipTarget(arch)) return arch;
  throw new VlError('CONFIG_INVALID', `architecture '${arch}' is not one BLIP builds`, {
    subject,
    hint: `expected one of ${BLIP_TARGETS.join(', ')}`,
  });
}

/** A fresh model of the class the config names; the training classes read their options from it. */
function build(config: BlipConfig): BlipModel {
  const arch = architectureOf(config, 'config');
  const { blipPretraining, blipRetrievalTraining, encTokenId, ...rest } = config;
  const base = rest as BlipConfig;
  const enc = typeof encTokenId === 'number' ? encTokenId : undefined;
  if (arch === 'BlipForPretraining') return new BlipForPretraining(base, parsePretrainingOptions(blipPretraining), new Rng(0), enc ?? null);
  if (arch === 'BlipForRetrievalTraining')
    return new BlipForRetrievalTraining(base, (blipRetrievalTraining ?? {}) as Partial<BlipRetrievalTrainingOptions>, new Rng(0), enc);
  const inference = inferenceConfig(config);
  return arch === 'BlipForImageTextRetrieval' ? new BlipForImageTextRetrieval(inference) : new BlipForConditionalGeneration(inference);
}

/** A folder or weights file, either layout, loaded into the class it describes. */
async function fromPretrained(path: string): Promise<BlipModel> {
  const target = await blipCheckpointTarget(path);
  if (target === 'BlipForPretraining') return BlipForPretraining.fromPretrained(path);
  if (target === 'BlipForRetrievalTraining') return BlipForRetrievalTraining.fromPretrained(path);
  if (target === 'BlipForImageTextRetrieval') return BlipForImageTextRetrieval.fromPretrained(path);
  return BlipForConditionalGeneration.fromPretrained(path);
}

/** The original class whose state dict a model of ours corresponds to. */
function officialClassOfModel(model: BlipModel): OfficialBlipClass {
  if (model instanceof BlipForConditionalGeneration) return 'BLIP_Decoder';
  if (model instanceof BlipForPretraining) {
    if (!model.options.shareDecoder) {
      throw new VlError('INVALID_ARGUMENT', 'BLIP_Pretrain ties the decoder to the text encoder; this model has its own decoder weights', {
        subject: 'toOfficial',
        hint: 'only a model pretrained with shareDecoder (the default) has an official layout',
      });
    }
    return 'BLIP_Pretrain';
  }
  // BlipForRetrievalTraining: the whole BLIP_Retrieval state; BlipForImageTextRetrieval: its online part.
  return 'BLIP_Retrieval';
}

/**
 * The model's state under the original BLIP names (the `state_dict()` of BLIP_Decoder / BLIP_Retrieval /
 * BLIP_Pretrain, tied duplicates included), what `torch.save({'model': …})` held. A BlipForImageTextRetrieval has
 * no twins, queues or temperature, so its dict is BLIP_Retrieval's online part only.
 */
function toOfficial(model: BlipModel): Map<string, HostTensor> {
  const stored = model.storedDtypes();
  const ours = new Map<string, HostTensor>();
  for (const [key, t] of model.stateDict()) {
    const int = t.dtype === 'int32';
    ours.set(key, {
      dtype: int ? 'int32' : 'float32',
      shape: [...t.shape],
      data: int ? Int32Array.from(t.dataSync()) : Float32Array.from(t.dataSync()),
      fileDtype: stored.get(key) ?? (int ? 'I32' : 'F32'),
    });
  }
  return toOfficialState(ours, { officialClass: officialClassOfModel(model), copy: (v) => ({ ...v, data: v.data.slice() }) });
}

/**
 * A state dict in either layout → ours. Salesforce's names (told by `visual_encoder.*`) are mapped for the class
 * that saved them, tied duplicates checked equal and dropped; Hugging Face's pass through, the tied decoder bias dropped.
 */
function fromOfficial(official: ReadonlyMap<string, StateEntry>, subject: string): Map<string, StateEntry> {
  if (detectBlipLayout(official.keys()) !== 'official') {
    const out = new Map(official);
    for (const tied of Object.keys(TIED_KEYS)) out.delete(tied);
    return out;
  }
  const cls = officialClassOf(official.keys());
  if (!cls)
    throw new VlError('CHECKPOINT_INVALID', 'an original BLIP checkpoint without text_encoder.* or text_decoder.* keys', { subject });
  const r = fromOfficialState(official, OFFICIAL_CLASS_TARGET[cls]);
  const problems = [
    ...r.tieMismatches.map((t) => `'${t.key}' differs from '${t.source}', which BLIP ties it to`),
    ...r.unknown.map((k) => `'${k}' belongs to no part of BLIP`),
  ];
  if (problems.length) throw new VlError('STATE_DICT_MISMATCH', problems.join('; '), { subject });
  return r.tensors;
}

/** BLIP's pretraining options from the --config file, the objective weights and the `vl train` switches. */
function pretrainingFrom(config: Record<string, unknown>, objectives: Record<string, number>, o: Record<string, unknown>, subject: string) {
  const opts: Record<string, unknown> = { ...config };
  if (Object.keys(objectives).length) {
    opts.objectives = {
      ...(config.objectives as object | undefined),
      ...Object.fromEntries(Object.entries(objectives).map(([k, w]) => [k, { weight: w }])),
    };
  }
  if (o.queueSize !== undefined) opts.queueSize = o.queueSize;
  if (typeof o.momentum === 'number') opts.momentum = o.momentum;
  if (o.momentum === false) Object.assign(opts, { momentumDistillation: false, useQueue: false });
  if (o.queue === false) opts.useQueue = false;
  if (o.negatives !== undefined) opts.negatives = o.negatives;
  if (o.randomNegativesSteps !== undefined) opts.randomNegativesSteps = o.randomNegativesSteps;
  if (o.shareDecoder === false) opts.shareDecoder = false;
  return validateConfig(opts, pretrainingOptionsSchema, subject);
}

const fmt = (o: Record<string, number>) =>
  Object.entries(o)
    .map(([k, v]) => `${k} ${v.toFixed(3)}`)
    .join(', ');
const pct = (x: number | undefined) => `${(x ?? 0).toFixed(1)}%`;

export const blipModel: ModelSpec<BlipConfig, BlipModel> = {
  name: 'blip',
  packageName: '@vl/blip',
  description: 'BLIP (Li et al. 2022): captioning, retrieval/ITM, pretraining with ITC+ITM+LM, CapFilt',
  checkpoint: {
    configSchema: blipConfigSchema,
    // Either form: Hugging Face's config.json, or the original code's (factory kwargs + med_config: official-config.ts).
    parseConfig: (raw, subject) =>
      isOfficialBlipConfig(raw) ? blipConfigFromOfficial(raw, subject).config : blipConfigFromJson(raw, subject),
    presets: {
      tiny: (o = {}) => blipPreset('tiny', { vocabSize: o.vocabSize, imageSize: o.imageSize }),
      base: (o = {}) => blipPreset('base', { vocabSize: o.vocabSize, imageSize: o.imageSize }),
    },
    build,
    fromPretrained,
    savePretrained: (model, dir) => model.savePretrained(dir),
    keyMap: { fromOfficial, toOfficial, optional: (key) => OPTIONAL_KEY.test(key) },
  },
  objectives: [
    { name: 'itc', description: 'image-text contrastive loss', defaultWeight: 1 },
    { name: 'itm', description: 'image-text matching loss', defaultWeight: 1 },
    { name: 'lm', description: 'image-conditioned language modelling loss', defaultWeight: 1 },
  ],
  // `vl eval` tasks; ITM scores of given pairs come from `vl match blip`.
  tasks: ['retrieval', 'captioning'],

  async verify(req) {
    const { modelClass, report } = await verifyCheckpoint({
      model: req.checkpoint,
      inputs: req.inputs,
      expected: req.expected,
      tol: req.tol,
      grads: req.grads,
    });
    return { title: `${modelClass} ${req.checkpoint}`, report };
  },

  async caption(req) {
    const captioner = await BlipForConditionalGeneration.fromPretrained(req.checkpoint);
    try {
      return await captioner.caption(req.images, {
        prompt: req.prompt,
        numBeams: req.numBeams,
        maxLength: req.maxLength,
        minLength: req.minLength,
        doSample: req.sample,
        topP: req.topP,
        rng: req.sample ? new Rng(req.seed) : undefined,
      });
    } finally {
      captioner.dispose();
    }
  },

  async match(req) {
    const model = await BlipForImageTextRetrieval.fromPretrained(req.checkpoint);
    try {
      return await model.match(req.images, req.texts);
    } finally {
      model.dispose();
    }
  },

  trainOptions: [
    { flags: '--queue-size <n>', description: 'ITC feature queue length', kind: 'int', min: 1 },
    { flags: '--momentum <m>', description: 'EMA momentum of the twin encoders', kind: 'number', min: 0 },
    { flags: '--no-momentum', description: 'no momentum distillation and no queue' },
    { flags: '--no-queue', description: 'no feature queue (in-batch ITC)' },
    { flags: '--alpha <a>', description: 'distillation weight after its first-epoch ramp', kind: 'number', min: 0, default: 0.4 },
    { flags: '--negatives <kind>', description: 'ITM negatives', choices: ['hard', 'random'] },
    {
      flags: '--random-negatives-steps <n>',
      description: 'with hard negatives: random ITM negatives for the first n steps (from scratch; docs/training.md)',
      kind: 'int',
      min: 0,
    },
    { flags: '--no-share-decoder', description: 'separate decoder weights (BLIP shares all but self-attention with the encoder)' },
  ],

  async train(req, ctx) {
    if (req.preset !== 'tiny' && req.preset !== 'base')
      throw new VlError('INVALID_ARGUMENT', `--preset must be tiny or base, got '${req.preset}'`);
    const pretraining = pretrainingFrom(req.config, req.objectives, req.options, 'pretraining options');
    const progress = ctx.progress('pretrain');
    try {
      const s = await pretrainBlip({
        train: req.train,
        vocab: req.vocab,
        out: req.out,
        preset: req.preset,
        imageSize: req.imageSize,
        pretraining,
        batchSize: req.batchSize,
        epochs: req.epochs,
        maxSteps: req.maxSteps,
        lr: req.lr,
        warmupSteps: req.warmupSteps,
        weightDecay: req.weightDecay,
        seed: req.seed,
        checkpointEvery: req.checkpointEvery ?? 200,
        alpha: (req.options.alpha as number | undefined) ?? 0.4,
        resume: !req.fresh,
        onProgress: (done, total, r) => progress.update(done, total, fmt(r.losses)),
      });
      progress.stop();
      return {
        lines: [
          `pretrained ${s.steps} steps in ${s.seconds.toFixed(1)}s`,
          `losses, first 10% of steps: ${fmt(s.first)}`,
          `losses, last 10% of steps:  ${fmt(s.last)}`,
          `wrote ${s.out.pretrain}, ${s.out.captioning}, ${s.out.retrieval}, ${s.out.metrics}`,
        ],
      };
    } finally {
      progress.stop();
    }
  },

  async evaluate(req, ctx) {
    if (!existsSync(req.checkpoint)) throw new VlError('INVALID_ARGUMENT', 'no such folder', { subject: req.checkpoint });
    const progress = ctx.progress('caption');
    let r;
    try {
      r = await evaluateBlip({
        model: req.checkpoint,
        data: req.data,
        numBeams: req.numBeams,
        maxLength: req.maxLength,
        out: req.out,
        onProgress: (d, t) => progress.update(d, t),
      });
    } finally {
      progress.stop();
    }
    const lines = [`${r.images} images, ${r.texts} captions`];
    if (req.tasks.includes('retrieval')) {
      const t = r.retrieval;
      lines.push(
        `text→image R@1 ${pct(t.textToImage[1])} R@5 ${pct(t.textToImage[5])} R@10 ${pct(t.textToImage[10])} (chance R@1 ${pct(t.chance.textToImageR1)})`,
      );
      lines.push(
        `image→text R@1 ${pct(t.imageToText[1])} R@5 ${pct(t.imageToText[5])} R@10 ${pct(t.imageToText[10])} (chance R@1 ${pct(t.chance.imageToTextR1)})`,
      );
    }
    if (req.tasks.includes('captioning')) {
      const c = r.captioning;
      lines.push(
        `captioning CIDEr-D ${c.cider.toFixed(3)} BLEU-4 ${c.bleu4.toFixed(3)} (chance: another image's caption, CIDEr-D ${c.chance.cider.toFixed(3)} BLEU-4 ${c.chance.bleu4.toFixed(3)})`,
      );
      for (const e of c.examples) lines.push(`  ${e.image}: "${e.caption}" (ref: "${e.references[0]}")`);
    }
    return { lines, json: r };
  },

  commands: [capfiltCommandSpec],
};
