// Momentum distillation: EMA twins, feature queues, soft targets and the alpha ramp.
export * from './momentum.js';
export * from './queue.js';
export * from './targets.js';
