// Attention: multi-head attention (self/cross, three weight layouts), masks, KV cache, routing.
export * from './kv-cache.js';
export * from './masks.js';
export * from './multi-head-attention.js';
export * from './routing.js';
