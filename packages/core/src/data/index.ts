// Data: WordPiece tokenizer, image decode + transforms, dataset readers, batching, synthetic scenes.
export * from './tokenizer.js';
export * from './image.js';
export * from './image-file.js';
export * from './records.js';
export * from './readers.js';
export * from './loader.js';
export * from './synth.js';
