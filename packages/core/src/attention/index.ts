// Attention: multi-head attention (self/cross, three weight layouts), masks, KV cache.
export * from './kv-cache.js';
export * from './masks.js';
export * from './multi-head-attention.js';
