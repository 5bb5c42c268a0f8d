// VLMo's implementation of the model contract (@vl/core ModelSpec): config and presets, the official
// microsoft/unilm key names (identity map; legacy index buffers of released files skipped), the folder
// layout, its pretraining objectives, and verify against the official fixtures. index.ts registers it;
// `vl <command> vlmo` and `vlmo <command>` run it.
import { type ModelSpec, VlError } from '@vl/core';
import { fromOfficialStateDict, loadVlmo, saveVlmo, toOfficialStateDict } from './checkpoint.js';
import { type VlmoConfig, vlmoConfigFromJson, vlmoConfigSchema, vlmoPreset } from './config.js';
import { Vlmo } from './model.js';
import { verifyVlmo } from './verify.js';

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
    { name: 'itc', description: 'image-text contrastive loss, plain and VL-FFN features (averaged)', defaultWeight: 1 },
    { name: 'itm', description: 'image-text matching on hard negatives sampled from the ITC similarities', defaultWeight: 1 },
    { name: 'mlm', description: 'masked language modelling on the fused route (scaled by 0.25, as compute_mlm does)', defaultWeight: 1 },
  ],
  tasks: ['retrieval', 'itm'],

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
