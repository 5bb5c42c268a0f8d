// VLMo's implementation of the model contract (@vl/core ModelSpec): config and presets, the official
// microsoft/unilm key names (identity map; legacy index buffers of released files skipped), the folder
// layout, its pretraining objectives and three stages (`train`), retrieval and ITM evaluation (`evaluate`),
// `match`, and verify against the official fixtures. index.ts registers it; `vl <command> vlmo` and
// `vlmo <command>` run it.
import { existsSync } from 'node:fs';
import { vlmoAblation } from './ablation.js';
import { camelizeKeys, type ModelSpec, type ObjectivesConfig, VlError } from '@vl/core';
import { fromOfficialStateDict, loadVlmo, saveVlmo, toOfficialStateDict } from './checkpoint.js';
import { type VlmoConfig, vlmoConfigFromJson, vlmoConfigSchema, vlmoPreset } from './config.js';
import { Vlmo } from './model.js';
import { verifyVlmo } from './verify.js';
import { evaluateVlmo, matchVlmo, type VlmoEvalTask } from './evaluate.js';
import { vlmoStage, VLMO_STAGES } from './stages.js';
import { pretrainVlmo } from './train.js';
import { finetuneVlmo } from './task-train.js';
import { evaluateVlmoTask, type VlmoTaskEvalReport } from './task-eval.js';
import { readVlmoConfig } from './checkpoint.js';
import { vlmoModelDir } from './train.js';
import { vlmoDims } from './config.js';

const fmt = (o: Record<string, number>) =>
  Object.entries(o)
    .map(([k, v]) => `${k} ${v.toFixed(3)}`)
    .join(', ');
const pct = (x: number | undefined) => `${(x ?? 0).toFixed(1)}%`;
const recallLine = (label: string, r: { imageToText: Record<number, number>; textToImage: Record<number, number> }) =>
  `${label}: image→text R@1 ${pct(r.imageToText[1])} R@5 ${pct(r.imageToText[5])} R@10 ${pct(r.imageToText[10])}; ` +
  `text→image R@1 ${pct(r.textToImage[1])} R@5 ${pct(r.textToImage[5])} R@10 ${pct(r.textToImage[10])}`;

export const vlmoModel: ModelSpec<VlmoConfig, Vlmo> = {
  name: 'vlmo',
  packageName: '@vl/vlmo',
  description: 'VLMo (Bao et al. 2022): Multiway transformer with V/L/VL-FFN experts, dual-encoder and fusion modes, ITC + ITM + MLM',
  checkpoint: {
    configSchema: vlmoConfigSchema,
    parseConfig: (raw, subject) => vlmoConfigFromJson(raw, subject),
    presets: {
      tiny: (o) => vlmoPreset('tiny', o),
      base: (o) => vlmoPreset('base', o),
      basePlus: (o) => vlmoPreset('basePlus', o),
      large: (o) => vlmoPreset('large', o),
    },
    build: (config) => new Vlmo(config),
    fromPretrained: (dir) => loadVlmo(dir),
    savePretrained: (model, dir) => saveVlmo(model, dir),
    keyMap: { fromOfficial: (official) => fromOfficialStateDict(official), toOfficial: toOfficialStateDict },
  },
  objectives: [
    { name: 'itc', description: 'stage 3: image-text contrastive loss, plain and VL-FFN features (averaged)', defaultWeight: 1 },
    { name: 'itm', description: 'stage 3: image-text matching on hard negatives sampled from the ITC similarities', defaultWeight: 1 },
    {
      name: 'mlm',
      description: 'stage 3: masked language modelling on the fused route (scaled by 0.25, as compute_mlm does)',
      defaultWeight: 1,
    },
    { name: 'mim', description: 'stage 1: masked image modelling (BEiT block masking) on the image-only route', defaultWeight: 1 },
    { name: 'textmlm', description: 'stage 2: masked language modelling on the text-only route', defaultWeight: 1 },
  ],
  tasks: ['retrieval', 'itm', 'vqa', 'nlvr2'],
  ablation: vlmoAblation,

  trainOptions: [
    {
      flags: '--task <name>',
      description: 'pretrain (the stages, --stage), or fine-tune the vqa or nlvr2 head on a `vl data synth --task vqa|nlvr2` set',
      choices: ['pretrain', 'vqa', 'nlvr2'],
      default: 'pretrain',
    },
    { flags: '--answers <file>', description: 'vqa: the answer list (JSON array; default: answers.json next to the training file)' },
    {
      flags: '--init-std <x>',
      description: "vqa, nlvr2 without --init: re-draw the fresh model at this std (as the ablations' initStd)",
      kind: 'number',
      min: 0,
    },
    {
      flags: '--stage <n>',
      description: 'pretraining stage: 1 image-only MIM, 2 text-only MLM (attention and V-FFN frozen), 3 image-text ITC+ITM+MLM',
      kind: 'int',
      min: 1,
      default: 3,
    },
    { flags: '--init <dir>', description: "start from this folder's architecture and weights (the previous stage's --out)" },
    {
      flags: '--max-text-len <n>',
      description: 'text length texts are padded to (default: tiny 24, else 40); without --init',
      kind: 'int',
      min: 2,
    },
    {
      flags: '--visual-vocab <n>',
      description: 'stage 1: visual tokens the MIM head predicts (default: tiny 64, else 8192)',
      kind: 'int',
      min: 2,
    },
    { flags: '--mask-patches <n>', description: 'stage 1: patches masked per image (default 40% of them)', kind: 'int', min: 1 },
    {
      flags: '--tokenizer <dir>',
      description:
        "stage 1: a trained visual tokenizer (e.g. `vl train beit3 --task tokenizer`'s --out); default: core's fixed random codebook",
    },
  ],

  async train(req, ctx) {
    const o = req.options;
    const stage = vlmoStage(Number(o.stage ?? 3)).stage;
    if (!['tiny', 'base', 'basePlus', 'large'].includes(req.preset)) {
      throw new VlError('INVALID_ARGUMENT', `--preset must be tiny, base, basePlus or large, got '${req.preset}'`);
    }
    const extra = Object.keys(req.config).filter((k) => !['objectives', 'vlmo_config', 'transformer_kwargs'].includes(k));
    if (extra.length) {
      throw new VlError('INVALID_ARGUMENT', `--config has unknown keys ${extra.join(', ')}`, {
        hint: 'VLMo reads objectives, vlmo_config and transformer_kwargs (config.json fields to change, snake_case)',
      });
    }
    const section = (k: string) => camelizeKeys<Record<string, unknown> | undefined>(req.config[k], { subject: `--config ${k}` });
    const architecture =
      req.config.vlmo_config !== undefined || req.config.transformer_kwargs !== undefined
        ? { vlmoConfig: section('vlmo_config'), transformerKwargs: section('transformer_kwargs') }
        : undefined;
    const task = (o.task as string | undefined) ?? 'pretrain';
    if (task === 'vqa' || task === 'nlvr2') {
      if (Object.keys(req.objectives).length)
        throw new VlError('INVALID_ARGUMENT', `--task ${task} has no pretraining objectives to weight`);
      const progress = ctx.progress(task);
      try {
        const s = await finetuneVlmo({
          task,
          train: req.train,
          vocab: req.vocab,
          out: req.out,
          init: o.init as string | undefined,
          preset: req.preset as 'tiny',
          imageSize: req.imageSize,
          maxTextLen: o.maxTextLen as number | undefined,
          architecture,
          initStd: o.initStd as number | undefined,
          answers: o.answers as string | undefined,
          batchSize: req.batchSize,
          epochs: req.epochs,
          maxSteps: req.maxSteps,
          lr: req.lr,
          warmupSteps: req.warmupSteps,
          weightDecay: req.weightDecay,
          seed: req.seed,
          checkpointEvery: req.checkpointEvery,
          resume: !req.fresh,
          onProgress: (done, total, r) => progress.update(done, total, fmt({ loss: r.loss, ...r.metrics })),
        });
        progress.stop();
        const lines = [`${task}: ${s.examples} training examples, ${s.steps} steps in ${s.seconds.toFixed(1)}s`];
        if (s.init) lines.push(`init from ${s.init.from}: ${s.init.loaded} tensors loaded, ${s.init.fresh.length} new (the ${task} head)`);
        if (s.resumedFrom) lines.push(`resumed from ${s.resumedFrom}`);
        if (s.unknownAnswers) lines.push(`${s.unknownAnswers} training answers are not in the answer list (no target)`);
        lines.push(`first 10% of steps: ${fmt(s.first)}`, `last 10% of steps:  ${fmt(s.last)}`, `wrote ${s.out.model}, ${s.out.metrics}`);
        return { lines };
      } finally {
        progress.stop();
      }
    }
    const objectives: ObjectivesConfig = { ...(req.config.objectives as ObjectivesConfig | undefined) };
    for (const [k, w] of Object.entries(req.objectives)) objectives[k] = { ...objectives[k], weight: w };
    const unknown = Object.keys(req.objectives).filter((k) => !VLMO_STAGES[stage].objectives.includes(k));
    if (unknown.length) {
      throw new VlError('INVALID_ARGUMENT', `stage ${stage} has no objective ${unknown.join(', ')}`, {
        hint: `its objectives: ${VLMO_STAGES[stage].objectives.join(', ')}`,
      });
    }
    const progress = ctx.progress(`stage ${stage}`);
    try {
      const s = await pretrainVlmo({
        stage,
        init: o.init as string | undefined,
        train: req.train,
        vocab: req.vocab,
        out: req.out,
        preset: req.preset as 'tiny',
        imageSize: req.imageSize,
        maxTextLen: o.maxTextLen as number | undefined,
        visualVocabSize: o.visualVocab as number | undefined,
        maskPatches: o.maskPatches as number | undefined,
        tokenizer: o.tokenizer as string | undefined,
        architecture,
        objectives,
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
      const lines = [`stage ${stage} (${VLMO_STAGES[stage].title}): ${s.steps} steps in ${s.seconds.toFixed(1)}s`];
      if (s.init) {
        lines.push(
          `init from ${s.init.from}: ${s.init.loaded} tensors loaded, ${s.init.fresh.length} new (freshly initialised), ${s.init.unused.length} not used by this stage`,
        );
      }
      if (s.resumedFrom) lines.push(`resumed from ${s.resumedFrom}`);
      lines.push(
        `frozen: ${s.frozen.length} tensors (${s.frozenScalars.toLocaleString('en')} weights); trainable: ${s.trainedScalars.toLocaleString('en')} weights`,
      );
      lines.push(`losses, first 10% of steps: ${fmt(s.first)}`, `losses, last 10% of steps:  ${fmt(s.last)}`);
      lines.push(`wrote ${s.out.model}, ${s.out.metrics}`);
      return { lines };
    } finally {
      progress.stop();
    }
  },

  evalOptions: [
    {
      flags: '--rerank-k <k>',
      description: "retrieval: re-rank each query's top-k by ITM, as VLMo's k_test (0: dual encoder only)",
      kind: 'int',
      min: 0,
      default: 0,
    },
    { flags: '--vocab <file>', description: 'vocab.txt (default: the one in the checkpoint folder)' },
  ],

  async evaluate(req, ctx) {
    const o = req.options ?? {};
    // Run the tasks the checkpoint has heads for (a pretrained model: retrieval, ITM; a fine-tuned one: its task).
    if (!existsSync(req.checkpoint)) throw new VlError('INVALID_ARGUMENT', 'no such folder', { subject: req.checkpoint });
    const dims = vlmoDims(await readVlmoConfig(vlmoModelDir(req.checkpoint)));
    const can = { retrieval: dims.heads.itc, itm: dims.heads.itm, vqa: dims.vqaLabels !== null, nlvr2: dims.nlvr2 };
    const fine = req.tasks.filter((t): t is 'vqa' | 'nlvr2' => (t === 'vqa' || t === 'nlvr2') && can[t]);
    if (fine.length) {
      const lines: string[] = [];
      const reports: VlmoTaskEvalReport[] = [];
      for (const task of fine) {
        const progress = ctx.progress(`eval ${task}`);
        let r: VlmoTaskEvalReport;
        try {
          r = await evaluateVlmoTask({
            checkpoint: req.checkpoint,
            data: req.data,
            task,
            out: req.out,
            onProgress: (d, t) => progress.update(d, t),
          });
        } finally {
          progress.stop();
        }
        reports.push(r);
        const b = r.baselines;
        lines.push(
          `${task}: ${r.examples} examples, accuracy ${pct(r.accuracy)} (chance ${pct(b.chance)}, majority '${b.majority.guess}' ${pct(b.majority.accuracy)}` +
            `${b.majorityByKind !== undefined ? `, majority per question kind ${pct(b.majorityByKind)}` : ''}; baselines from ${r.baselineFrom})`,
        );
        for (const [k, v] of Object.entries(r.byKind)) lines.push(`  ${k}: ${pct(v.accuracy)} of ${v.examples}`);
      }
      const skipped = req.tasks.filter((t) => !fine.includes(t as 'vqa'));
      if (skipped.length) lines.push(`not run: ${skipped.join(', ')} (this checkpoint has no head for it)`);
      return { lines, json: reports.length === 1 ? reports[0] : reports };
    }
    const pretraining = req.tasks.filter((t) => t === 'retrieval' || t === 'itm');
    if (!pretraining.length) {
      throw new VlError('TASK_UNSUPPORTED', `this VLMo has no head for ${req.tasks.join(', ')}`, {
        subject: req.checkpoint,
        hint: 'fine-tune one with `vl train vlmo --task vqa|nlvr2` (docs/vlmo.md, "VQA and NLVR2 on synthetic scenes")',
      });
    }
    const progress = ctx.progress('eval');
    let r;
    try {
      r = await evaluateVlmo({
        checkpoint: req.checkpoint,
        data: req.data,
        tasks: pretraining as VlmoEvalTask[],
        rerankK: (o.rerankK as number | undefined) ?? 0,
        vocab: o.vocab as string | undefined,
        out: req.out,
        onProgress: (d, t) => progress.update(d, t),
      });
    } finally {
      progress.stop();
    }
    const lines = [`${r.images} images, ${r.texts} captions`];
    if (r.retrieval) {
      lines.push(recallLine('dual encoder (ITC)', r.retrieval.itc));
      if (r.retrieval.reranked) lines.push(recallLine(`ITM re-ranked top-${r.retrieval.reranked.k}`, r.retrieval.reranked));
      lines.push(`chance R@1: ${pct(r.retrieval.chance.imageToTextR1)} both ways`);
    }
    if (r.itm) {
      const m = r.itm;
      lines.push(
        `ITM (${m.pairs} pairs): random negatives accuracy ${pct(100 * m.random.accuracy)} AUC ${m.random.auc.toFixed(3)}; ` +
          `ITC-hardest negatives accuracy ${pct(100 * m.hard.accuracy)} AUC ${m.hard.auc.toFixed(3)} (chance 50%, 0.5)`,
      );
    }
    return { lines, json: r };
  },

  match: (req) => matchVlmo(req.checkpoint, req.images, req.texts),

  async verify(req) {
    if (req.grads !== undefined) {
      throw new VlError('TASK_UNSUPPORTED', 'VLMo verify checks outputs only: no gradient fixtures exist for it yet', {
        subject: req.grads,
      });
    }
    const report = await verifyVlmo({ checkpoint: req.checkpoint, inputs: req.inputs, expected: req.expected, tol: req.tol });
    const notes = report.notes.length ? `\n${report.notes.map((n) => `note: ${n}`).join('\n')}` : '';
    return { title: `VLMo ${req.checkpoint}${notes}`, report };
  },
};
