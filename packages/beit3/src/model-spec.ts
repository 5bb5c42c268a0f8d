// BEiT-3's implementation of the model contract (@vl/core ModelSpec): config and presets, the official
// microsoft/unilm key names (identity map), the folder layout, and verify against the official fixtures.
// index.ts registers it; `vl <command> beit3` and `beit3 <command>` run it.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  camelizeKeys,
  type ModelSpec,
  type ObjectivesConfig,
  type RunContext,
  type TrainRequest,
  type TrainSummary,
  VlError,
} from '@vl/core';
import { writeJsonFile } from '@vl/core/node';
import { BEIT3_CAPTIONING_MASK_PROB, finetuneBeit3Captioning } from './captioning-finetune.js';
import { fromOfficialStateDict, loadBeit3, saveBeit3, toOfficialStateDict } from './checkpoint.js';
import {
  type Beit3Config,
  beit3ConfigFromJson,
  beit3ConfigSchema,
  beit3Preset,
  type Beit3PresetName,
  BEIT3_TASKS,
  type Beit3Task,
} from './config.js';
import { type Beit3Model, buildBeit3 } from './model.js';
import { verifyBeit3 } from './verify.js';
import { MDM_OBJECTIVES, type MdmMaskingOptions, type MdmObjective } from './mdm.js';
import { pretrainBeit3Mdm, trainBeit3VisualTokenizer } from './mdm-train.js';

const fmt = (o: Record<string, number>) =>
  Object.entries(o)
    .map(([k, v]) => `${k} ${v.toFixed(3)}`)
    .join(', ');
const usageLine = (label: string, u: { used: number; dead: number; vocabSize: number; perplexity: number; topShare: number }) =>
  `${label}: ${u.used} of ${u.vocabSize} codes used, ${u.dead} dead, perplexity ${u.perplexity.toFixed(1)}, most frequent code ${(100 * u.topShare).toFixed(1)}% of patches`;
const MDM_CONFIG_KEYS = ['objectives', 'mdm', 'freeze'];

const TASK_PRESET_NAME: Readonly<Record<Beit3Task, string>> = {
  retrieval: '',
  captioning: 'Captioning',
  vqa: 'Vqa',
  classification: 'Classification',
  nlvr2: 'Nlvr2',
};

/** `tiny`, `base`, `large` (retrieval) and `tinyCaptioning`, `baseVqa`, … for the other tasks. */
function presets(): Record<string, (o?: { vocabSize?: number; imageSize?: number }) => Beit3Config> {
  const out: Record<string, (o?: { vocabSize?: number; imageSize?: number }) => Beit3Config> = {};
  for (const size of ['tiny', 'base', 'large'] as const satisfies readonly Beit3PresetName[]) {
    for (const task of BEIT3_TASKS) out[`${size}${TASK_PRESET_NAME[task]}`] = (o) => beit3Preset(size, { ...o, task });
  }
  return out;
}

async function trainCaptioning(req: TrainRequest, ctx: RunContext): Promise<TrainSummary> {
  const o = req.options;
  if (!['tiny', 'base', 'large'].includes(req.preset)) {
    throw new VlError('INVALID_ARGUMENT', `--preset must be tiny, base or large, got '${req.preset}'`, {
      hint: 'the captioning model is built from the size preset',
    });
  }
  if (Object.keys(req.config).length) {
    throw new VlError(
      'INVALID_ARGUMENT',
      `--config is for MDM pretraining; captioning takes flags (${Object.keys(req.config).join(', ')})`,
    );
  }
  const test = (o.test as string | undefined) ?? join(dirname(req.train), 'test.jsonl');
  if (!existsSync(test)) {
    throw new VlError('INVALID_ARGUMENT', `no held-out records to caption at ${test}`, { hint: 'pass --test FILE' });
  }
  const maskProb = o.maskProb as number | undefined;
  if (maskProb !== undefined && !(maskProb > 0 && maskProb <= 1)) {
    throw new VlError('INVALID_ARGUMENT', `--mask-prob must be in (0, 1], got ${maskProb}`);
  }
  const progress = ctx.progress('captioning');
  try {
    const r = await finetuneBeit3Captioning({
      train: req.train,
      test,
      vocab: req.vocab,
      out: req.out,
      init: o.init as string | undefined,
      preset: req.preset as Beit3PresetName,
      imageSize: req.imageSize,
      textLength: o.textLen as number | undefined,
      maxTrainRecords: o.trainRecords as number | undefined,
      batchSize: req.batchSize,
      maxSteps: req.maxSteps,
      epochs: req.epochs,
      lr: req.lr,
      weightDecay: req.weightDecay,
      seed: req.seed,
      maskProb,
      checkpointEvery: req.checkpointEvery,
      resume: !req.fresh,
      onProgress: (done, total, rec) =>
        progress.update(done, total, `loss ${rec.loss.toFixed(3)} acc ${(rec.metrics.acc ?? 0).toFixed(3)}`),
    });
    progress.stop();
    await writeJsonFile(join(req.out, 'captions.json'), r.captions);
    return {
      lines: [
        `captioning fine-tuning ${o.init ? `from ${o.init as string} (${r.initTensors} tensors)` : 'from scratch'}: ${r.steps} steps in ${r.seconds.toFixed(1)}s; ` +
          `loss ${r.firstLoss.toFixed(3)} → ${r.lastLoss.toFixed(3)}, masked-token accuracy ${r.firstAcc.toFixed(3)} → ${r.lastAcc.toFixed(3)}`,
        `captioning (${r.images} held-out images, 3 beams): CIDEr-D ${r.cider.toFixed(3)} BLEU-4 ${r.bleu4.toFixed(3)} ` +
          `(chance: another image's caption, CIDEr-D ${r.chance.cider.toFixed(3)} BLEU-4 ${r.chance.bleu4.toFixed(3)})`,
        ...(r.resumedFrom ? [`resumed from ${r.resumedFrom} (--fresh starts over)`] : []),
        `wrote ${join(req.out, 'model')} (the fine-tuned model), ${join(req.out, 'captions.json')}, ${join(req.out, 'metrics.jsonl')}`,
      ],
    };
  } finally {
    progress.stop();
  }
}

export const beit3Model: ModelSpec<Beit3Config, Beit3Model> = {
  name: 'beit3',
  packageName: '@vl/beit3',
  description:
    'BEiT-3 (Wang et al. 2022): Multiway transformer with vision (A) / language (B) experts and Sub-LN; retrieval, captioning, VQA, ImageNet and NLVR2 models',
  checkpoint: {
    configSchema: beit3ConfigSchema,
    parseConfig: (raw, subject) => beit3ConfigFromJson(raw, subject),
    presets: presets(),
    build: (config) => buildBeit3(config),
    fromPretrained: (dir) => loadBeit3(dir),
    savePretrained: (model, dir) => saveBeit3(model, dir),
    keyMap: { fromOfficial: (official) => fromOfficialStateDict(official), toOfficial: toOfficialStateDict },
  },
  objectives: Object.entries(MDM_OBJECTIVES).map(([name, description]) => ({
    name,
    description: `masked data modeling, ${description}`,
    defaultWeight: 1,
  })),
  tasks: ['retrieval', 'captioning', 'vqa', 'classification', 'nlvr2'],

  trainOptions: [
    {
      flags: '--task <task>',
      description:
        'mdm: masked data modeling pretraining (needs --tokenizer); tokenizer: train the visual tokenizer MDM predicts; captioning: fine-tune the captioning model (from --init or from scratch) and report CIDEr-D',
      choices: ['mdm', 'tokenizer', 'captioning'],
      default: 'mdm',
    },
    { flags: '--tokenizer <dir>', description: 'mdm: the visual tokenizer (the --out of `--task tokenizer`)' },
    { flags: '--init <dir>', description: 'captioning: start from this MDM output (backbone and mlm_head); default: from scratch' },
    { flags: '--test <file>', description: 'captioning: held-out records to caption (default: test.jsonl next to the training list)' },
    { flags: '--train-records <n>', description: 'captioning: fine-tune on the first N training records only', kind: 'int', min: 1 },
    {
      flags: '--mask-prob <p>',
      description: `captioning: share of caption tokens masked (default ${BEIT3_CAPTIONING_MASK_PROB}, the documented COCO run)`,
      kind: 'number',
    },
    { flags: '--visual-vocab <n>', description: 'tokenizer: codebook size (default: tiny 64, else 8192)', kind: 'int', min: 2 },
    {
      flags: '--teacher <spec>',
      description:
        "tokenizer: whose patch features the codebook quantises: 'random' (default, a random feature map of the pixels) or 'clip:DIR' (the vision tower of `vl train clip --out DIR`)",
      kind: 'string',
    },
    {
      flags: '--text-len <n>',
      description: 'mdm, captioning: texts padded/truncated to this many tokens (default: tiny 24, else 64 for mdm, 32 for captioning)',
      kind: 'int',
      min: 3,
    },
  ],

  async train(req, ctx) {
    const o = req.options;
    if (!['tiny', 'base', 'large'].includes(req.preset)) {
      throw new VlError('INVALID_ARGUMENT', `--preset must be tiny, base or large for pretraining, got '${req.preset}'`, {
        hint: 'MDM pretrains the backbone; the task presets (tinyVqa, …) are for fine-tuned models',
      });
    }
    const preset = req.preset as 'tiny' | 'base' | 'large';
    if (o.task === 'tokenizer') {
      const progress = ctx.progress('tokenizer');
      const t0 = Date.now();
      const { dir, file } = await trainBeit3VisualTokenizer({
        train: req.train,
        out: req.out,
        preset,
        imageSize: req.imageSize,
        visualVocabSize: o.visualVocab as number | undefined,
        teacher: o.teacher as string | undefined,
        seed: req.seed,
      });
      progress.stop();
      const lines = [
        `visual tokenizer (k-means over ${file.teacher.kind === 'vit' ? `the patch tokens of the CLIP vision tower in ${file.teacher.source.path}` : 'random patch features'}, ${file.teacher.dim} wide): ${file.vocab_size} codes from ${file.training.patches} patches of ${file.training.images} images, ` +
          `${file.training.iterations} iterations, ${file.training.reseeded} dead codes re-seeded, mean cosine ${file.training.mean_cosine.toFixed(3)}, ${((Date.now() - t0) / 1000).toFixed(1)}s`,
        usageLine('codebook usage, training images', file.usage.train),
      ];
      if (file.usage.val) lines.push(usageLine('codebook usage, held-out images', file.usage.val));
      lines.push(`wrote ${dir}`);
      return { lines };
    }
    if (o.task === 'captioning') return trainCaptioning(req, ctx);
    const extra = Object.keys(req.config).filter((k) => !MDM_CONFIG_KEYS.includes(k));
    if (extra.length) {
      throw new VlError('INVALID_ARGUMENT', `--config has unknown keys ${extra.join(', ')}`, {
        hint: `BEiT-3 MDM reads ${MDM_CONFIG_KEYS.join(', ')} (see docs/beit3.md)`,
      });
    }
    if (!o.tokenizer) {
      throw new VlError('INVALID_ARGUMENT', 'masked data modeling needs --tokenizer DIR', {
        hint: 'train one first: vl train beit3 --task tokenizer --data DIR --out TOK',
      });
    }
    const mdm = camelizeKeys<MdmMaskingOptions | undefined>(req.config.mdm, { subject: '--config mdm' }) ?? {};
    const freeze = req.config.freeze as string[] | undefined;
    if (freeze !== undefined && !(Array.isArray(freeze) && freeze.every((p) => typeof p === 'string'))) {
      throw new VlError('INVALID_ARGUMENT', '--config freeze must be a list of parameter name patterns', {
        hint: "e.g. ['beit3.vision_embed.**']",
      });
    }
    const objectives: ObjectivesConfig = { ...(req.config.objectives as ObjectivesConfig | undefined) };
    for (const [k, w] of Object.entries(req.objectives)) objectives[k] = { ...objectives[k], weight: w };
    const progress = ctx.progress('mdm');
    try {
      const s = await pretrainBeit3Mdm({
        ...mdm,
        train: req.train,
        vocab: req.vocab,
        out: req.out,
        tokenizer: o.tokenizer as string,
        preset,
        imageSize: req.imageSize,
        textLength: o.textLen as number | undefined,
        objectives,
        freeze,
        batchSize: req.batchSize,
        epochs: req.epochs,
        maxSteps: req.maxSteps,
        lr: req.lr,
        warmupSteps: req.warmupSteps,
        weightDecay: req.weightDecay,
        seed: req.seed,
        checkpointEvery: req.checkpointEvery,
        resume: !req.fresh,
        onProgress: (done, total, r) => progress.update(done, total, fmt(r.losses)),
      });
      progress.stop();
      const rows = (Object.keys(MDM_OBJECTIVES) as MdmObjective[]).map((k) => `${s.rows[k]} ${k}`).join(', ');
      const lines = [`masked data modeling: ${s.steps} steps in ${s.seconds.toFixed(1)}s; rows per batch: ${rows}`];
      if (s.resumedFrom) lines.push(`resumed from ${s.resumedFrom}`);
      if (s.frozen.length) lines.push(`frozen: ${s.frozen.length} tensors`);
      lines.push(`losses, first 10% of steps: ${fmt(s.first)}`, `losses, last 10% of steps:  ${fmt(s.last)}`);
      lines.push(`wrote ${s.out.model}, ${s.out.metrics}`);
      return { lines };
    } finally {
      progress.stop();
    }
  },

  async verify(req) {
    if (req.grads !== undefined) {
      throw new VlError('TASK_UNSUPPORTED', 'BEiT-3 verify checks outputs only: no gradient fixtures exist for it yet', {
        subject: req.grads,
      });
    }
    const report = await verifyBeit3({ checkpoint: req.checkpoint, inputs: req.inputs, expected: req.expected, tol: req.tol });
    const notes = report.notes.length ? `\n${report.notes.map((n) => `note: ${n}`).join('\n')}` : '';
    return { title: `BEiT-3 ${report.task} ${req.checkpoint}${notes}`, report };
  },
};
