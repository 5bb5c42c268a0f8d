// @vl/blip: BLIP (Li et al. 2022) on TensorFlow.js — loads Hugging Face and Salesforce's original checkpoints,
// captions, matches, pretrains.
// Importing it registers the model `blip` in @vl/core's registry (a declared side effect, see package.json).
import { registerModel } from '@vl/core';
import { blipModel } from './model-spec.js';

registerModel(blipModel);

export { initRuntime } from '@vl/core';
export { blipModel } from './model-spec.js';
export * from './config.js';
export * from './modeling.js';
export * from './checkpoint.js';
export * from './decoder-step.js';
export * from './processor.js';
export * from './vision-names.js';
export * from './verify.js';
export * from './verify-grads.js';
export * from './pretraining.js';
export * from './retrieval-training.js';
export * from './contrastive.js';
export * from './official-keys.js';
export * from './official-config.js';
export { officialClassOfMeta, verifyOfficial, type OfficialVerifyResult } from './verify-official.js';
export * from './train.js';
export * from './embedded.js';
