// ALBEF's implementation of the model contract (@vl/core ModelSpec): config and presets, the official
// salesforce/ALBEF key map and folder layout, ITC/ITM/MLM objectives, verify, and the ablation adapter.
// index.ts registers it; `vl <command> albef` and `albef <command>` run it.
import type { ModelSpec } from '@vl/core';
import { z } from 'zod';
import { albefAblation } from './ablation.js';
import { fromOfficialStateDict, loadAlbef, saveAlbef, toOfficialStateDict } from './checkpoint.js';
import { type AlbefConfig, albefConfig, albefConfigFromJson } from './config.js';
import { Albef } from './model.js';
import { verifyAlbef } from './verify.js';
import { verifyAlbefGradients } from './verify-grads.js';

const numbers = z.record(z.string(), z.number());

/** config.json's shape (validateAlbefConfig checks each field and fills the implicit ones). */
export const albefConfigSchema = z.looseObject({
  albefConfig: numbers,
  bertConfig: numbers,
  visionConfig: numbers,
  tokens: numbers.optional(),
});

const preset =
  (name: 'tiny' | 'base') =>
  (o: { vocabSize?: number; imageSize?: number } = {}) =>
    albefConfig(name, {
      bertConfig: o.vocabSize !== undefined ? { vocabSize: o.vocabSize } : {},
      albefConfig: o.imageSize !== undefined ? { imageRes: o.imageSize } : {},
      visionConfig: o.imageSize !== undefined ? { imgSize: o.imageSize } : {},
    });

export const albefModel: ModelSpec<AlbefConfig, Albef> = {
  name: 'albef',
  packageName: '@vl/albef',
  description: 'ALBEF (Li et al. 2021): ITC + ITM + MLM pretraining with momentum distillation, retrieval with ITM re-ranking',
  checkpoint: {
    configSchema: albefConfigSchema,
    parseConfig: (raw, subject) => albefConfigFromJson(raw, subject),
    presets: { tiny: preset('tiny'), base: preset('base') },
    build: (config) => new Albef(config),
    fromPretrained: (dir) => loadAlbef(dir),
    savePretrained: (model, dir) => saveAlbef(model, dir),
    keyMap: { fromOfficial: (official, subject) => fromOfficialStateDict(official, subject), toOfficial: toOfficialStateDict },
  },
  objectives: [
    { name: 'itc', description: 'image-text contrastive loss (with momentum distillation)', defaultWeight: 1 },
    { name: 'itm', description: 'image-text matching loss on ITC-mined hard negatives', defaultWeight: 1 },
    { name: 'mlm', description: 'image-conditioned masked language modelling loss', defaultWeight: 1 },
  ],
  tasks: ['retrieval', 'itm'],

  async verify(req) {
    const report = await verifyAlbef({ model: req.checkpoint, inputs: req.inputs, expected: req.expected, tol: req.tol });
    if (req.grads === undefined) return { title: `ALBEF ${req.checkpoint}`, report };
    // ITA, ITM and MLM of the recorded forward, each back-propagated on its own (verify-grads.ts).
    const grads = await verifyAlbefGradients({ ...req, model: req.checkpoint, grads: req.grads });
    const checks = [...report.checks, ...grads.checks];
    return { title: `ALBEF ${req.checkpoint} (outputs and gradients)`, report: { checks, passed: report.passed && grads.passed } };
  },

  ablation: albefAblation,
};
