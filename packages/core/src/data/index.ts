// Tokenizer, images, readers, batching, synthetic data (filled in by the data work).
export {};
