// The ablation runner: for each seed and variant, prepare (or reuse) the data, train (or reuse an
// identical training run from an earlier variant), evaluate, then write results.json,
// results.md, loss_curves.png and metrics.png (+ .svg) and a JSONL line per finished run.
import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type CurvePoint, getModelWith, initRuntime } from '@vl/core';
import { type StepRecord } from '@vl/core/node';
import { type AblationConfig, resolveVariants, trainingKey } from './config.js';
import { dataKey, prepareSynthData, type PreparedData } from './data.js';
import { barChartSvg, lineChartSvg, smooth, writePng } from './plots.js';
import { type AblationResults, checkClaims, markdownReport, meanCurves, type RunRecord, summarizeVariants } from './report.js';

export interface RunAblationOptions {
  out?: string;
  /** How the command was invoked, for the report. */
  command?: string;
  /** Only these variants (by name). */
  only?: readonly string[];
  onLog?: (line: string) => void;
  onStep?: (variant: string, seed: number, record: StepRecord, totalSteps: number) => void;
}

export async function runAblation(config: AblationConfig, options: RunAblationOptions = {}): Promise<AblationResults> {
  const log = options.onLog ?? (() => {});
  const runtime = await initRuntime({ backend: config.backend });
  const out = options.out ?? config.out;
  await mkdir(out, { recursive: true });
  const runsPath = join(out, 'runs.jsonl');
  await writeFile(runsPath, '');
  let variants = resolveVariants(config);
  if (options.only?.length) {
    const unknown = options.only.filter((n) => !variants.some((v) => v.name === n));
    if (unknown.length) throw new Error(`unknown variant(s): ${unknown.join(', ')}`);
    variants = variants.filter((v) => options.only!.includes(v.name));
  }
  // The model's package registered it (src/models.ts imports every model package).
  const adapter = getModelWith(config.model, 'ablation').ablation;
  const started = performance.now();
  const dataCache = new Map<string, PreparedData>();
  const dataFor = (v: (typeof variants)[number]): PreparedData => {
    const key = dataKey(v.data);
    let d = dataCache.get(key);
    if (!d) {
      d = prepareSynthData(v.data, adapter.imageNorm);
      log(
        `data: ${d.summary.trainImages} train images, ${d.summary.trainCaptions} captions (${d.summary.noisyCaptions} noisy), eval ${d.summary.evalImages} images / ${d.summary.evalCaptions} captions`,
      );
      dataCache.set(key, d);
    }
    return d;
  };

  const runs: RunRecord[] = [];
  const curves = new Map<string, CurvePoint[][]>();
  for (const seed of config.seeds) {
    // Variants whose training settings are identical share one trained model per seed.
    const groups = new Map<string, typeof variants>();
    for (const v of variants) {
      const key = trainingKey(v);
      groups.set(key, [...(groups.get(key) ?? []), v]);
    }
    for (const group of groups.values()) {
      const first = group[0]!;
      const data = dataFor(first);
      log(
        `train ${first.name} seed ${seed}${
          group.length > 1
            ? ` (shared with ${group
                .slice(1)
                .map((g) => g.name)
                .join(', ')})`
            : ''
        }`,
      );
      const trained = await adapter.train(first.modelConfig, first, seed, data, (r) =>
        options.onStep?.(first.name, seed, r, adapter.plannedSteps?.(first) ?? first.train.steps),
      );
      try {
        for (const [i, v] of group.entries()) {
          const metrics = trained.evaluate(v);
          const record: RunRecord = { variant: v.name, seed, metrics, trainSeconds: trained.trainSeconds, sharedTraining: i > 0 };
          runs.push(record);
          curves.set(v.name, [...(curves.get(v.name) ?? []), trained.curve]);
          await appendFile(runsPath, `${JSON.stringify(record)}\n`);
          log(
            `  ${v.name} seed ${seed}: r_mean ${metrics.r_mean?.toFixed(1)} (itc ${metrics.r_mean_itc?.toFixed(1)}), ${trained.trainSeconds.toFixed(0)} s`,
          );
        }
      } finally {
        trained.dispose();
      }
    }
  }

  const order = variants.map((v) => v.name);
  const summaries = summarizeVariants(runs, order, (name) => variants.find((v) => v.name === name)?.data.noise ?? 0);
  const results: AblationResults = {
    name: config.name,
    command: options.command ?? 'vl ablate',
    seeds: config.seeds,
    backend: runtime.backend,
    variants: summaries,
    runs,
    claims: checkClaims(
      summaries,
      config.claims.filter((c) => order.includes(c.better) && order.includes(c.worse)),
    ),
    curves: meanCurves(curves),
    seconds: (performance.now() - started) / 1000,
  };
  await writeResults(results, out);
  log(`wrote ${join(out, 'results.md')}, results.json, loss_curves.png, metrics.png`);
  return results;
}

/**
 * Writes results.json, results.md, loss_curves.png and metrics.png (+ .svg) for finished results.
 * Loss curves leave out variants whose weights came from another variant (same curve).
 */
export async function writeResults(results: AblationResults, out: string): Promise<void> {
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(join(out, 'results.md'), markdownReport(results));
  const shared = new Set(
    results.variants.map((v) => v.variant).filter((v) => results.runs.filter((r) => r.variant === v).every((r) => r.sharedTraining)),
  );
  const series = Object.entries(results.curves)
    .filter(([name]) => !shared.has(name))
    .map(([name, pts]) => ({
      name,
      points: smooth(
        pts.map((p) => ({ x: p.step, y: p.loss })),
        0.9,
      ),
    }));
  await writePng(
    lineChartSvg(series, { title: `${results.name}: training loss (mean over seeds, EMA 0.9)`, xLabel: 'step', yLabel: 'total loss' }),
    join(out, 'loss_curves.png'),
  );
  const groups = (['r_mean', 'r_mean_itc', 'tr_r1', 'ir_r1'] as const).map((metric) => ({
    metric,
    bars: results.variants.map((s) => ({ name: s.variant, mean: s.metrics[metric]?.mean ?? 0, std: s.metrics[metric]?.std ?? 0 })),
  }));
  await writePng(
    barChartSvg(groups, { title: `${results.name}: retrieval (mean ± std over seeds)`, yLabel: 'recall (%)' }),
    join(out, 'metrics.png'),
  );
}

/** Re-renders the tables and plots of an earlier run from its results.json. */
export async function replotAblation(dir: string): Promise<AblationResults> {
  const results = JSON.parse(await readFile(join(dir, 'results.json'), 'utf8')) as AblationResults;
  // Verdicts follow the current rule (reproduced only past 2 s.e.), whatever rule wrote the file.
  results.claims = checkClaims(
    results.variants,
    results.claims.map(({ claim, better, worse, metric }) => ({ claim, better, worse, metric })),
  );
  await writeResults(results, dir);
  return results;
}
