// @vl/albef: ALBEF (salesforce/ALBEF) on @vl/core — model with official names, checkpoint mapping,
// pretraining forward (ITC + ITM + MLM with momentum distillation), retrieval with ITM re-ranking, verify.
// Importing it registers the model `albef` in @vl/core's registry (a declared side effect, see package.json).
import { registerModel } from '@vl/core';
import { albefModel } from './model-spec.js';

registerModel(albefModel);

export { initRuntime } from '@vl/core';
export { albefModel, albefConfigSchema } from './model-spec.js';
export { albefAblation, checkAlbefModelConfig, pairBatches } from './ablation.js';
export * from './config.js';
export * from './model.js';
export * from './checkpoint.js';
export * from './verify.js';
export * from './verify-grads.js';
export * from './retrieval.js';
