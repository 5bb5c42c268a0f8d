// @vl/albef: ALBEF (salesforce/ALBEF) on @vl/core — model with official names, checkpoint mapping,
// pretraining forward (ITC + ITM + MLM with momentum distillation), retrieval with ITM re-ranking, verify.
export { initRuntime } from '@vl/core';
export * from './config.js';
export * from './model.js';
export * from './checkpoint.js';
export * from './verify.js';
export * from './retrieval.js';
