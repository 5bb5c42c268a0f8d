// CoCa's and CLIP's implementations of the model contract (@vl/core ModelSpec): open_clip configs and
// presets, open_clip's key names (identity map), the folder layout, and verify against the OpenCLIP
// fixtures. index.ts registers both; `vl <command> coca|clip` and `coca <command>` run them.
import {
  camelizeKeys,
  type EvalRequest,
  type ModelSpec,
  type ObjectivesConfig,
  type RunContext,
  type TrainRequest,
  type VerifyRequest,
  VlError,
} from '@vl/core';
import { writeJsonFile } from '@vl/core/node';
import { cocaAblation } from './ablation.js';
import { captionImages } from './caption.js';
import { evaluateCocaCaptioning } from './caption-eval.js';
import { evaluateOpenClip, type OpenClipEvalResult, type OpenClipEvalTask } from './evaluate.js';
import { trainOpenClip } from './train.js';
import { fromOfficialStateDict, loadClip, loadCoca, saveOpenClip, toOfficialStateDict } from './checkpoint.js';
import { clipPreset, cocaPreset, type OpenClipConfig, openClipConfigSchema, parseOpenClipConfig } from './config.js';
import { Clip, CoCa } from './model.js';
import { verifyClip, verifyCoca } from './verify.js';

function noGrads(req: VerifyRequest, what: string): void {
  if (req.grads !== undefined) {
    throw new VlError('TASK_UNSUPPORTED', `${what} verify checks outputs only: no gradient fixtures exist for it yet`, {
      subject: req.grads,
    });
  }
}

const fmt = (o: Record<string, number>) =>
  Object.entries(o)
    .map(([k, v]) => `${k} ${v.toFixed(3)}`)
    .join(', ');
const pct = (x: number | undefined) => `${(x ?? 0).toFixed(1)}%`;

async function train(kind: 'clip' | 'coca', req: TrainRequest, ctx: RunContext) {
  if (req.preset !== 'tiny' && req.preset !== 'base')
    throw new VlError('INVALID_ARGUMENT', `--preset must be tiny or base, got '${req.preset}'`);
  const extra = Object.keys(req.config).filter((k) => !['objectives', 'model_cfg'].includes(k));
  if (extra.length) {
    throw new VlError('INVALID_ARGUMENT', `--config has unknown keys ${extra.join(', ')}`, {
      hint: 'the config reads objectives and model_cfg (open_clip config fields to change, snake_case)',
    });
  }
  const objectives: ObjectivesConfig = { ...(req.config.objectives as ObjectivesConfig | undefined) };
  for (const [k, w] of Object.entries(req.objectives)) objectives[k] = { ...objectives[k], weight: w };
  const modelCfg =
    req.config.model_cfg === undefined
      ? undefined
      : camelizeKeys<Record<string, unknown>>(req.config.model_cfg, { subject: '--config model_cfg' });
  const progress = ctx.progress(kind);
  try {
    const s = await trainOpenClip({
      model: kind,
      train: req.train,
      vocab: req.vocab,
      out: req.out,
      preset: req.preset,
      imageSize: req.imageSize,
      modelCfg,
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
    const lines = [
      `${kind === 'clip' ? 'CLIP' : 'CoCa'}: ${s.steps} steps in ${s.seconds.toFixed(1)}s, logit scale ${s.logitScale.toFixed(2)}`,
    ];
    if (s.resumedFrom) lines.push(`resumed from ${s.resumedFrom}`);
    lines.push(`losses, first 10% of steps: ${fmt(s.first)}`, `losses, last 10% of steps:  ${fmt(s.last)}`);
    lines.push(`wrote ${s.out.model}, ${s.out.metrics}`);
    return { lines };
  } finally {
    progress.stop();
  }
}

async function evaluate(kind: 'clip' | 'coca', req: EvalRequest) {
  const supported: readonly string[] = kind === 'coca' ? ['retrieval', 'zero-shot', 'captioning'] : ['retrieval', 'zero-shot'];
  const unsupported = req.tasks.filter((t) => !supported.includes(t));
  if (unsupported.length) {
    throw new VlError('TASK_UNSUPPORTED', `${kind} evaluates ${supported.join(', ')}, not ${unsupported.join(', ')}`, {
      hint: supported.map((t) => `--task ${t}`).join(' or '),
    });
  }
  const tasks = req.tasks.filter((t): t is OpenClipEvalTask => t === 'retrieval' || t === 'zero-shot');
  const r: Partial<OpenClipEvalResult> = tasks.length
    ? await evaluateOpenClip({ model: kind, checkpoint: req.checkpoint, data: req.data, tasks })
    : {};
  const captioning = req.tasks.includes('captioning')
    ? await evaluateCocaCaptioning({ checkpoint: req.checkpoint, data: req.data, numBeams: req.numBeams, maxLength: req.maxLength })
    : undefined;
  const json = { ...r, ...(captioning ? { captioning } : {}) };
  if (req.out) await writeJsonFile(req.out, { model: kind, checkpoint: req.checkpoint, data: req.data, ...json });
  const lines: string[] = [];
  if (r.images !== undefined) lines.push(`${r.images} images, ${r.texts} captions`);
  if (r.retrieval) {
    const x = r.retrieval;
    lines.push(
      `retrieval: image→text R@1 ${pct(x.imageToText.recall[1])} R@5 ${pct(x.imageToText.recall[5])}; text→image R@1 ${pct(x.textToImage.recall[1])} R@5 ${pct(x.textToImage.recall[5])}`,
    );
  }
  if (r.zeroShot) {
    const z = r.zeroShot;
    lines.push(
      `zero-shot (${z.classes.join(' / ')}, ${z.templates.length} templates): accuracy ${pct(100 * z.accuracy)} (chance ${pct(100 * z.chance)})`,
    );
  }
  if (captioning) {
    const c = captioning;
    lines.push(
      `captioning (${c.images} images, ${req.numBeams === 1 ? 'greedy' : `${req.numBeams} beams`}): CIDEr-D ${c.cider.toFixed(3)} BLEU-4 ${c.bleu4.toFixed(3)} (chance: another image's caption, CIDEr-D ${c.chance.cider.toFixed(3)} BLEU-4 ${c.chance.bleu4.toFixed(3)})`,
    );
    for (const e of c.captions.slice(0, 5)) lines.push(`  ${e.image}: "${e.caption}" (ref: "${e.references[0]}")`);
  }
  return { lines, json };
}

const notesOf = (notes: string[]) => (notes.length ? `\n${notes.map((n) => `note: ${n}`).join('\n')}` : '');

export const cocaModel: ModelSpec<OpenClipConfig, CoCa> = {
  name: 'coca',
  packageName: '@vl/coca',
  description: 'CoCa (Yu et al. 2022, open_clip): contrastive + captioning, attentional pooler, multimodal text decoder',
  checkpoint: {
    configSchema: openClipConfigSchema,
    parseConfig: (raw, subject) => {
      const c = parseOpenClipConfig(raw, subject);
      if (!c.modelCfg.multimodalCfg)
        throw new VlError('CONFIG_INVALID', 'no multimodal_cfg: this is a CLIP config', { subject, hint: 'use the clip model' });
      return c;
    },
    presets: { tiny: (o) => cocaPreset('tiny', o), base: (o) => cocaPreset('base', o) },
    build: (config) => new CoCa(config),
    fromPretrained: (dir) => loadCoca(dir),
    savePretrained: (model, dir) => saveOpenClip(model, dir),
    keyMap: { fromOfficial: (official) => fromOfficialStateDict(official), toOfficial: toOfficialStateDict },
  },
  objectives: [
    { name: 'contrastive', description: 'CLIP loss between the pooled image query and the text CLS (ClipLoss)', defaultWeight: 1 },
    { name: 'caption', description: 'captioning cross-entropy of the multimodal decoder, pads ignored', defaultWeight: 2 },
  ],
  tasks: ['retrieval', 'zero-shot', 'captioning'],
  train: (req, ctx) => train('coca', req, ctx),
  evaluate: (req) => evaluate('coca', req),
  ablation: cocaAblation,
  caption: (req) =>
    captionImages(req.checkpoint, req.images, {
      prompt: req.prompt,
      numBeams: req.numBeams,
      maxLength: req.maxLength,
      minLength: req.minLength,
      sample: req.sample,
      topP: req.topP,
      seed: req.seed,
    }),

  async verify(req) {
    noGrads(req, 'CoCa');
    const report = await verifyCoca({ checkpoint: req.checkpoint, inputs: req.inputs, expected: req.expected, tol: req.tol });
    return { title: `CoCa ${req.checkpoint}${notesOf(report.notes)}`, report };
  },
};

export const clipModel: ModelSpec<OpenClipConfig, Clip> = {
  name: 'clip',
  packageName: '@vl/coca',
  description: 'CLIP (Radford et al. 2021, open_clip): dual encoder, contrastive loss with a learned temperature, zero-shot classification',
  checkpoint: {
    configSchema: openClipConfigSchema,
    parseConfig: (raw, subject) => {
      const c = parseOpenClipConfig(raw, subject);
      if (c.modelCfg.multimodalCfg)
        throw new VlError('CONFIG_INVALID', 'multimodal_cfg present: this is a CoCa config', { subject, hint: 'use the coca model' });
      return c;
    },
    presets: { tiny: (o) => clipPreset('tiny', o), base: (o) => clipPreset('base', o) },
    build: (config) => new Clip(config),
    fromPretrained: (dir) => loadClip(dir),
    savePretrained: (model, dir) => saveOpenClip(model, dir),
    keyMap: { fromOfficial: (official) => fromOfficialStateDict(official), toOfficial: toOfficialStateDict },
  },
  objectives: [
    { name: 'contrastive', description: 'symmetric cross-entropy over scaled cosine similarities (ClipLoss)', defaultWeight: 1 },
  ],
  tasks: ['retrieval', 'zero-shot'],
  train: (req, ctx) => train('clip', req, ctx),
  evaluate: (req) => evaluate('clip', req),

  async verify(req) {
    noGrads(req, 'CLIP');
    const report = await verifyClip({ checkpoint: req.checkpoint, inputs: req.inputs, expected: req.expected, tol: req.tol });
    return { title: `CLIP ${req.checkpoint}${notesOf(report.notes)}`, report };
  },
};
