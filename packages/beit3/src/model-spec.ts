// BEiT-3's implementation of the model contract (@vl/core ModelSpec): config and presets, the official
// microsoft/unilm key names (identity map), the folder layout, and verify against the official fixtures.
// index.ts registers it; `vl <command> beit3` and `beit3 <command>` run it.
import { type ModelSpec, VlError } from '@vl/core';
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
  objectives: [],
  tasks: ['retrieval', 'captioning', 'vqa', 'classification', 'nlvr2'],

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
