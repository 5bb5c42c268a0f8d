// Blocks: BERT (post-LN) and pre-LN transformer layers, Multiway experts and layer, attentional pooler, drop-path.
export * from './attention-pooler.js';
export * from './bert-layer.js';
export * from './drop-path.js';
export * from './feed-forward.js';
export * from './multiway.js';
export * from './multiway-layer.js';
export * from './path-module.js';
export * from './transformer-layer.js';
