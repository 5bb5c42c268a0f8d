// Runtime: backend choice, seeded RNG, core's wasm kernels and the wasm memory guard.
export * from './backend.js';
export * from './rng.js';
export * from './wasm-kernels.js';
export * from './memory.js';
