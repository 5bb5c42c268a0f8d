// CoCa's and CLIP's implementations of the model contract (@vl/core ModelSpec): open_clip configs and
// presets, open_clip's key names (identity map), the folder layout, and verify against the OpenCLIP
// fixtures. index.ts registers both; `vl <command> coca|clip` and `coca <command>` run them.
import { type ModelSpec, type VerifyRequest, VlError } from '@vl/core';
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
  tasks: ['captioning', 'retrieval', 'zero-shot'],

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

  async verify(req) {
    noGrads(req, 'CLIP');
    const report = await verifyClip({ checkpoint: req.checkpoint, inputs: req.inputs, expected: req.expected, tol: req.tol });
    return { title: `CLIP ${req.checkpoint}${notesOf(report.notes)}`, report };
  },
};
