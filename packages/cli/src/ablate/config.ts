// The `vl ablate` config file (YAML or JSON): a base setup (model, data, training, evaluation), a
// list of variants that override parts of it, the seeds to repeat each variant with, and the
// comparisons (claims) to report. Validated with zod; every field has a default except variants.
import { readFile } from 'node:fs/promises';
import { type AblationModelConfig, type AblationVariant, VlError } from '@vl/core';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

const int = (min = 0) => z.number().int().min(min);

const objectiveSwitch = z.strictObject({ enabled: z.boolean().optional(), weight: z.number().min(0).optional() });

export const dataSchema = z.strictObject({
  /** Synthetic scenes (core's generator, rendered in memory exactly as `vl data synth` writes them). */
  images: int(8).default(400),
  imageSize: int(24).default(32),
  captionsPerImage: int(1).max(5).default(2),
  /** Share of training captions corrupted (other image's caption, keyword soup, wrong attribute); eval stays clean. */
  noise: z.number().min(0).max(1).default(0),
  seed: int().default(0),
  /** Token length captions are padded / truncated to. */
  maxLength: int(4).default(16),
  /** Test images used for retrieval (each with all its captions). */
  evalImages: int(2).default(32),
  splits: z.tuple([z.number().min(0), z.number().min(0), z.number().min(0)]).default([0.8, 0.1, 0.1]),
});

export const trainSchema = z.strictObject({
  steps: int(1).default(300),
  batchSize: int(2).default(16),
  lr: z.number().positive().default(3e-4),
  minLr: z.number().min(0).default(1e-5),
  weightDecay: z.number().min(0).default(0.02),
  warmupSteps: int().default(20),
  /** Steps over which alpha ramps from 0 (ALBEF: the first epoch). Default: one pass over the training pairs. */
  alphaRampSteps: int(1).optional(),
  maxGradNorm: z.number().positive().optional(),
});

export const evalSchema = z.strictObject({
  /** Candidates re-ranked by ITM per query; ≥ the number of candidates ranks everything by ITM. */
  k: int().default(16),
});

/**
 * Model settings: a preset plus section overrides, camelCase as in TypeScript (ALBEF: albefConfig / bertConfig /
 * visionConfig; VLMo: vlmoConfig / transformerKwargs). The sections are the model's: its adapter checks them.
 */
export const modelSchema = z.looseObject({
  preset: z.string().min(1).default('tiny'),
  /**
   * Re-draw the weights from N(0, initStd²) before training (from-scratch small widths; see
   * docs/ablations.md). Absent: the model's own init (BERT's 0.02).
   */
  initStd: z.number().positive().optional(),
});

/** A variant's model overrides: sections merged key by key into the base modelConfig's (`preset`/`initStd` replace). */
const modelOverrideSchema = z.record(z.string(), z.union([z.string(), z.number(), z.record(z.string(), z.unknown())]));

export const variantSchema = z.strictObject({
  name: z.string().min(1),
  /** Objectives on/off and weights, e.g. { itc: { enabled: false }, mlm: { weight: 2 } }. */
  objectives: z.record(z.string(), objectiveSwitch).optional(),
  negatives: z.enum(['hard', 'random']).optional(),
  /** With hard negatives: steps of random ITM negatives before mining starts (ALBEF; BLIP's option of the same name). */
  randomNegativesSteps: int().optional(),
  distill: z.boolean().optional(),
  queueSize: int().optional(),
  useQueue: z.boolean().optional(),
  /** Architecture changes for this variant, e.g. { vlmoConfig: { ... }, transformerKwargs: { vlffnStartLayerIndex: 4 } }. */
  modelConfig: modelOverrideSchema.optional(),
  /** The model's own switches (its adapter documents them), e.g. VLMo's { stages: [1, 2, 3] }. */
  options: z.record(z.string(), z.unknown()).optional(),
  data: dataSchema.partial().optional(),
  train: trainSchema.partial().optional(),
  eval: evalSchema.partial().optional(),
});

export const claimSchema = z.strictObject({
  /** What the paper says, e.g. "ITC improves retrieval over MLM+ITM". */
  claim: z.string().min(1),
  better: z.string().min(1),
  worse: z.string().min(1),
  metric: z.string().default('r_mean'),
});

export const ablationSchema = z.strictObject({
  name: z.string().min(1),
  /** A registered model with an ablation adapter (`vl ablate` checks it before training). */
  model: z.string().min(1).default('albef'),
  modelConfig: modelSchema.default({ preset: 'tiny' }),
  backend: z.enum(['auto', 'wasm', 'cpu']).default('wasm'),
  seeds: z.array(int()).min(1).default([0, 1, 2]),
  data: dataSchema.default(dataSchema.parse({})),
  train: trainSchema.default(trainSchema.parse({})),
  eval: evalSchema.default(evalSchema.parse({})),
  /** Defaults every variant starts from (the switches, as in a variant). */
  defaults: variantSchema.omit({ name: true, data: true, train: true, eval: true }).default({}),
  variants: z.array(variantSchema).min(1),
  claims: z.array(claimSchema).default([]),
  out: z.string().default('runs/ablation'),
});

export type AblationConfig = z.infer<typeof ablationSchema>;
export type VariantConfig = z.infer<typeof variantSchema>;
export type DataConfig = z.infer<typeof dataSchema>;
export type TrainConfig = z.infer<typeof trainSchema>;
export type EvalConfig = z.infer<typeof evalSchema>;

/** A variant with everything filled in: what one (variant, seed) run trains and evaluates. */
export interface ResolvedVariant extends Omit<AblationVariant, 'train' | 'eval'> {
  /** The base modelConfig with the defaults' and the variant's overrides merged in. */
  modelConfig: AblationModelConfig;
  data: DataConfig;
  train: TrainConfig;
  eval: EvalConfig;
}

export function resolveVariants(config: AblationConfig): ResolvedVariant[] {
  const names = new Set<string>();
  return config.variants.map((v) => {
    if (names.has(v.name)) throw new VlError('CONFIG_INVALID', `variant name '${v.name}' is used twice`, { subject: 'variants' });
    names.add(v.name);
    const d = config.defaults;
    const negatives = v.negatives ?? d.negatives ?? 'hard';
    if (negatives === 'random' && (v.randomNegativesSteps ?? 0) > 0) {
      throw new VlError(
        'CONFIG_INVALID',
        `variant '${v.name}': randomNegativesSteps is a warm-up before hard negatives, but its negatives are random`,
        {
          subject: 'variants',
          hint: 'drop randomNegativesSteps from this variant or set negatives: hard',
        },
      );
    }
    return {
      name: v.name,
      objectives: { ...d.objectives, ...v.objectives },
      negatives,
      // Random negatives have no warm-up: 0, so a default warm-up does not split their training key.
      randomNegativesSteps: negatives === 'hard' ? (v.randomNegativesSteps ?? d.randomNegativesSteps ?? 0) : 0,
      distill: v.distill ?? d.distill ?? true,
      queueSize: v.queueSize ?? d.queueSize,
      useQueue: v.useQueue ?? d.useQueue ?? true,
      modelConfig: mergeModelConfig(mergeModelConfig(config.modelConfig, d.modelConfig), v.modelConfig),
      options: { ...d.options, ...v.options },
      data: { ...config.data, ...v.data },
      train: { ...config.train, ...v.train },
      eval: { ...config.eval, ...v.eval },
    };
  });
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Sections merge key by key (a variant changes one field of vlmoConfig and keeps the rest); other values replace. */
export function mergeModelConfig(base: AblationModelConfig, override: Record<string, unknown> | undefined): AblationModelConfig {
  const out: AblationModelConfig = { ...base };
  for (const [key, value] of Object.entries(override ?? {})) {
    const current = out[key];
    out[key] = isRecord(current) && isRecord(value) ? { ...current, ...value } : value;
  }
  return out;
}

/** Everything that decides the trained weights (not the evaluation): variants equal here share one training run per seed. */
export function trainingKey(v: ResolvedVariant): string {
  const { name: _name, eval: _eval, ...rest } = v;
  return JSON.stringify(rest, Object.keys(flatten(rest)).sort());
}

function flatten(obj: unknown, out: Record<string, true> = {}): Record<string, true> {
  if (obj && typeof obj === 'object') {
    for (const [k, v] of Object.entries(obj)) {
      out[k] = true;
      flatten(v, out);
    }
  }
  return out;
}

export function parseAblationConfig(raw: unknown, subject = 'ablation config'): AblationConfig {
  const parsed = ablationSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new VlError('CONFIG_INVALID', issues, { subject, hint: 'see docs/ablations.md for the config format' });
  }
  const config = parsed.data;
  const variants = new Set(config.variants.map((v) => v.name));
  for (const c of config.claims) {
    for (const name of [c.better, c.worse]) {
      if (!variants.has(name)) throw new VlError('CONFIG_INVALID', `claim '${c.claim}' names unknown variant '${name}'`, { subject });
    }
  }
  resolveVariants(config);
  return config;
}

export async function readAblationConfig(path: string): Promise<AblationConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new VlError('CONFIG_INVALID', `cannot read: ${(err as Error).message}`, { subject: path, cause: err });
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new VlError('CONFIG_INVALID', `not valid YAML: ${(err as Error).message}`, { subject: path, cause: err });
  }
  return parseAblationConfig(raw, path);
}
