// Training: AdamW, schedules, clipping and accumulation, checkpoints, metrics log, the Trainer.
export * from './optimizer.js';
export * from './schedule.js';
export * from './gradients.js';
export * from './checkpoint.js';
export * from './metrics-log.js';
export * from './trainer.js';
