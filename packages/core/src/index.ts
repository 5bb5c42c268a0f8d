// @vl/core: building blocks for vision-language models on TensorFlow.js.
export * from './errors.js';
export * from './runtime/index.js';
export * from './nn/index.js';
export * from './attention/index.js';
export * from './blocks/index.js';
export * from './encoders/index.js';
export * from './io/index.js';
export * from './data/index.js';
export * from './eval/index.js';
export * from './verify/index.js';
export * from './objectives/index.js';
export * from './distill/index.js';
export * from './generate/index.js';
export * from './train/index.js';
export * from './bench/index.js';
