// @vl/blip: BLIP (Li et al. 2022) on TensorFlow.js — loads Hugging Face checkpoints, captions, matches, pretrains.
export { initRuntime } from '@vl/core';
export * from './config.js';
export * from './modeling.js';
export * from './checkpoint.js';
export * from './decoder-step.js';
export * from './processor.js';
export { runCli, type Io } from './program.js';
export * from './verify.js';
export * from './pretraining.js';
export * from './train.js';
