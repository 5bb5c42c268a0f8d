// @vl/core: building blocks for vision-language models on TensorFlow.js.
export * from './errors.js';
export * from './runtime/index.js';
