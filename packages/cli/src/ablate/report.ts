// Ablation results: mean ± sample std over seeds per variant and metric, the claims checked
// against them, and the markdown + JSON tables.
import type { CurvePoint } from '@vl/core';

export interface RunRecord {
  variant: string;
  seed: number;
  metrics: Record<string, number>;
  trainSeconds: number;
  /** True when the weights came from another variant's identical training run. */
  sharedTraining: boolean;
}

export interface Summary {
  mean: number;
  std: number;
  n: number;
}

export interface VariantSummary {
  variant: string;
  noise: number;
  metrics: Record<string, Summary>;
}

export interface ClaimResult {
  claim: string;
  better: string;
  worse: string;
  metric: string;
  difference: number;
  /** Standard error of the difference of the two means. */
  stderr: number;
  /** 'reproduced' only when better − worse exceeds twice its standard error; 'not reproduced' otherwise. */
  verdict: 'reproduced' | 'not reproduced';
  /** Same as verdict === 'reproduced' (kept for readers of older results.json). */
  clear: boolean;
}

export interface AblationResults {
  name: string;
  command: string;
  seeds: number[];
  backend: string;
  variants: VariantSummary[];
  runs: RunRecord[];
  claims: ClaimResult[];
  /** Per variant: mean loss over seeds per step. */
  curves: Record<string, { step: number; loss: number }[]>;
  seconds: number;
}

/** Mean and sample standard deviation (n − 1; 0 for one value). */
export function summarize(values: readonly number[]): Summary {
  const n = values.length;
  const mean = n ? values.reduce((a, b) => a + b, 0) / n : Number.NaN;
  const variance = n > 1 ? values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1) : 0;
  return { mean, std: Math.sqrt(variance), n };
}

export function summarizeVariants(
  runs: readonly RunRecord[],
  order: readonly string[],
  noiseOf: (variant: string) => number,
): VariantSummary[] {
  return order.map((variant) => {
    const mine = runs.filter((r) => r.variant === variant);
    const names = [...new Set(mine.flatMap((r) => Object.keys(r.metrics)))];
    const metrics: Record<string, Summary> = {};
    for (const m of names) metrics[m] = summarize(mine.map((r) => r.metrics[m]).filter((v): v is number => typeof v === 'number'));
    return { variant, noise: noiseOf(variant), metrics };
  });
}

export function checkClaims(
  variants: readonly VariantSummary[],
  claims: readonly { claim: string; better: string; worse: string; metric: string }[],
): ClaimResult[] {
  const by = new Map(variants.map((v) => [v.variant, v]));
  return claims.map((c) => {
    const a = by.get(c.better)?.metrics[c.metric];
    const b = by.get(c.worse)?.metrics[c.metric];
    const difference = a && b ? a.mean - b.mean : Number.NaN;
    const stderr = a && b ? Math.sqrt(a.std ** 2 / Math.max(1, a.n) + b.std ** 2 / Math.max(1, b.n)) : Number.NaN;
    // A difference within two standard errors is not evidence for the claim, whatever its sign.
    const clear = difference > 0 && difference > 2 * stderr;
    return { ...c, difference, stderr, verdict: clear ? 'reproduced' : 'not reproduced', clear };
  });
}

/** Mean loss over seeds at each step, per variant. */
export function meanCurves(curves: ReadonlyMap<string, CurvePoint[][]>): Record<string, { step: number; loss: number }[]> {
  const out: Record<string, { step: number; loss: number }[]> = {};
  for (const [variant, runs] of curves) {
    const len = Math.min(...runs.map((r) => r.length));
    out[variant] = Array.from({ length: Number.isFinite(len) ? len : 0 }, (_, i) => ({
      step: runs[0]![i]!.step,
      loss: runs.reduce((a, r) => a + r[i]!.loss, 0) / runs.length,
    }));
  }
  return out;
}

const fmt = (s: Summary | undefined, digits = 1) => (s ? `${s.mean.toFixed(digits)} ± ${s.std.toFixed(digits)}` : '–');

export const TABLE_METRICS: readonly [key: string, label: string, digits: number][] = [
  ['tr_r1', 'TR R@1', 1],
  ['tr_r5', 'TR R@5', 1],
  ['ir_r1', 'IR R@1', 1],
  ['ir_r5', 'IR R@5', 1],
  ['r_mean', 'R mean (ITM re-ranked)', 1],
  ['r_mean_itc', 'R mean (ITC only)', 1],
  ['final_loss', 'final loss', 3],
];

export function markdownTable(results: AblationResults): string {
  const head = ['variant', 'caption noise', ...TABLE_METRICS.map(([, label]) => label)];
  const lines = [`| ${head.join(' | ')} |`, `| ${head.map((_, i) => (i < 2 ? '---' : '---:')).join(' | ')} |`];
  for (const v of results.variants) {
    lines.push(`| ${v.variant} | ${v.noise} | ${TABLE_METRICS.map(([k, , d]) => fmt(v.metrics[k], d)).join(' | ')} |`);
  }
  return lines.join('\n');
}

/** The verdict as the tables print it: reproduced only past 2 s.e.; otherwise which way the difference went. */
export function verdictText(c: Pick<ClaimResult, 'difference' | 'stderr' | 'verdict'>): string {
  if (c.verdict === 'reproduced') return 'reproduced (> 2 s.e.)';
  if (!(c.difference > 0)) return 'not reproduced (opposite direction)';
  return 'not reproduced (same direction, within 2 s.e.)';
}

export function markdownReport(results: AblationResults): string {
  const claims = results.claims.map(
    (c) =>
      `| ${c.claim} | ${c.better} vs ${c.worse} | ${c.metric} | ${c.difference >= 0 ? '+' : ''}${c.difference.toFixed(2)} ± ${c.stderr.toFixed(2)} | ${verdictText(c)} |`,
  );
  return [
    `# ${results.name}`,
    '',
    `Command: \`${results.command}\` — seeds ${results.seeds.join(', ')}, backend ${results.backend}, ${(results.seconds / 60).toFixed(1)} min.`,
    '',
    `Retrieval on the clean test split, Recall@K in percent, mean ± sample std over ${results.seeds.length} seeds. TR: image→text, IR: text→image.`,
    '',
    markdownTable(results),
    '',
    ...(claims.length
      ? ['| claim | comparison | metric | difference (± s.e.) | verdict |', '| --- | --- | --- | ---: | --- |', ...claims, '']
      : []),
  ].join('\n');
}
