// Encoders: Vision Transformer, BERT text embeddings and text transformer, output heads.
export * from './heads.js';
export * from './position-interpolation.js';
export * from './text-embeddings.js';
export * from './text-transformer.js';
export * from './vision-transformer.js';
