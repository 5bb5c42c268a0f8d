// Retrieval Recall@K, BLEU, CIDEr-D, ITM accuracy/AUC (filled in by the data work).
export {};
