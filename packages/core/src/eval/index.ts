// Evaluation: retrieval Recall@K, COCO-style BLEU and CIDEr-D, ITM accuracy/AUC.
export * from './text.js';
export * from './bleu.js';
export * from './cider.js';
export * from './retrieval.js';
export * from './itm.js';
