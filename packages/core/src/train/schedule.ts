// Learning-rate schedules with linear warmup: cosine (BLIP `cosine_lr_schedule`, timm's cosine),
// step decay (BLIP `step_lr_schedule`) and constant; pure functions of the optimizer step.
import { VlError } from '../errors.js';

export type LrSchedule = (step: number) => number;

export interface WarmupConfig {
  /** Steps of linear warmup from warmupInitLr to the base lr (0: none). */
  warmupSteps?: number;
  /** Where warmup starts (BLIP/ALBEF warm up from 1e-6 or 1e-5; default 0). */
  warmupInitLr?: number;
}

export type ScheduleConfig =
  | ({ kind: 'constant'; lr: number } & WarmupConfig)
  | ({ kind: 'cosine'; lr: number; totalSteps: number; minLr?: number } & WarmupConfig)
  | ({ kind: 'step'; lr: number; stepSize: number; decayRate: number; minLr?: number } & WarmupConfig);

/**
 * The lr at 0-based optimizer step `step`. During warmup: init + (lr − init)·step/warmup. After it,
 * with s = step − warmup:
 * - cosine: minLr + (lr − minLr)·½(1 + cos(π·min(1, s/(total − warmup))));
 * - step: max(minLr, lr·decayRate^⌊s/stepSize⌋);
 * - constant: lr.
 */
export function makeSchedule(config: ScheduleConfig): LrSchedule {
  const warmup = config.warmupSteps ?? 0;
  const init = config.warmupInitLr ?? 0;
  if (warmup < 0 || !Number.isFinite(config.lr))
    throw new VlError('CONFIG_INVALID', `bad schedule ${JSON.stringify(config)}`, { subject: 'schedule' });
  const after = ((): LrSchedule => {
    switch (config.kind) {
      case 'constant':
        return () => config.lr;
      case 'cosine': {
        const minLr = config.minLr ?? 0;
        const span = Math.max(1, config.totalSteps - warmup);
        return (s) => minLr + (config.lr - minLr) * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, s / span)));
      }
      case 'step': {
        if (!(config.stepSize > 0)) throw new VlError('CONFIG_INVALID', `step schedule needs stepSize > 0`, { subject: 'schedule' });
        const minLr = config.minLr ?? 0;
        return (s) => Math.max(minLr, config.lr * config.decayRate ** Math.floor(s / config.stepSize));
      }
    }
  })();
  return (step) => (step < warmup ? init + ((config.lr - init) * step) / warmup : after(step - warmup));
}
