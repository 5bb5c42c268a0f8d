// Bench: matmul and transformer-block throughput per engine, as data and as markdown (`vl bench`).
export * from './bench.js';
export * from './block.js';
export * from './markdown.js';
export * from './peak.js';
