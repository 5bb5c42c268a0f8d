// `vl ablate`: config validation and variant resolution, shared training for eval-only variants,
// statistics and claims, SVG/PNG plots, and a small end-to-end run through the runner and the binary.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseAblationConfig, resolveVariants, trainingKey } from '../ablate/config.js';
import { checkAlbefModelConfig, pairBatches } from '@vl/albef';
import { ALBEF_IMAGE_NORM } from '@vl/albef';
import { prepareSynthData } from '../ablate/data.js';
import { barChartSvg, lineChartSvg, smooth, writePng } from '../ablate/plots.js';
import { checkClaims, markdownTable, verdictText, summarize, summarizeVariants, type AblationResults } from '../ablate/report.js';
import { replotAblation, runAblation } from '../ablate/run.js';

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'vl.js');
const repoConfig = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'configs', 'ablation.yaml');

const tinyRaw = {
  name: 'test',
  seeds: [0, 1],
  data: { images: 40, imageSize: 24, captionsPerImage: 2, evalImages: 4, maxLength: 12 },
  train: { steps: 2, batchSize: 4, warmupSteps: 1 },
  eval: { k: 3 },
  modelConfig: { preset: 'tiny', albefConfig: { queueSize: 8 } },
  variants: [
    { name: 'full' },
    { name: 'full k0', eval: { k: 0 } },
    { name: 'no itc', objectives: { itc: { enabled: false } }, negatives: 'random', distill: false },
  ],
  claims: [{ claim: 'ITC helps', better: 'full', worse: 'no itc' }],
};

describe('ablation config', () => {
  it('fills defaults, and variants inherit base settings and defaults', () => {
    const config = parseAblationConfig({ ...tinyRaw, defaults: { negatives: 'random' } });
    const [full, k0, noItc] = resolveVariants(config);
    expect(full!.negatives).toBe('random');
    expect(full!.distill).toBe(true);
    expect(full!.train.lr).toBe(3e-4);
    expect(k0!.eval.k).toBe(0);
    expect(noItc!.objectives.itc?.enabled).toBe(false);
    expect(config.backend).toBe('wasm');
  });

  it('variants differing only in evaluation share a training key; any training switch does not', () => {
    const [full, k0, noItc] = resolveVariants(parseAblationConfig(tinyRaw));
    expect(trainingKey(full!)).toBe(trainingKey(k0!));
    expect(trainingKey(full!)).not.toBe(trainingKey(noItc!));
    const raw = {
      ...tinyRaw,
      variants: [{ name: 'a' }, { name: 'b', data: { noise: 0.5 } }, { name: 'c', queueSize: 16 }, { name: 'd', negatives: 'random' }],
      claims: [],
    };
    const keys = resolveVariants(parseAblationConfig(raw)).map(trainingKey);
    expect(new Set(keys).size).toBe(4);
  });

  it("variants change single fields of the model's sections and carry the model's own options", () => {
    const raw = {
      ...tinyRaw,
      modelConfig: { preset: 'tiny', vlmoConfig: { dropPathRate: 0, mlmProb: 0.15 }, transformerKwargs: { vlffnStartLayerIndex: 2 } },
      defaults: { options: { stages: [3] } },
      variants: [
        { name: 'base' },
        { name: 'no vl-ffn', modelConfig: { transformerKwargs: { vlffnStartLayerIndex: 4 } } },
        { name: 'stagewise', options: { stages: [1, 2, 3] }, modelConfig: { vlmoConfig: { mlmProb: 0.25 }, preset: 'base' } },
      ],
      claims: [],
    };
    const [base, noVlffn, stagewise] = resolveVariants(parseAblationConfig(raw));
    expect(base!.modelConfig).toEqual(raw.modelConfig);
    expect(base!.options).toEqual({ stages: [3] });
    expect(noVlffn!.modelConfig.transformerKwargs).toEqual({ vlffnStartLayerIndex: 4 });
    expect(noVlffn!.modelConfig.vlmoConfig).toEqual({ dropPathRate: 0, mlmProb: 0.15 });
    expect(stagewise!.modelConfig).toMatchObject({ preset: 'base', vlmoConfig: { dropPathRate: 0, mlmProb: 0.25 } });
    expect(stagewise!.options).toEqual({ stages: [1, 2, 3] });
    expect(new Set([base, noVlffn, stagewise].map((v) => trainingKey(v!))).size).toBe(3);
  });

  it('rejects unknown keys, bad values, duplicate names and claims about unknown variants', () => {
    expect(() => parseAblationConfig({ ...tinyRaw, bogus: 1 })).toThrow(/bogus|Unrecognized/);
    expect(() => parseAblationConfig({ ...tinyRaw, train: { steps: 0 } })).toThrow(/train\.steps/);
    expect(() => parseAblationConfig({ ...tinyRaw, variants: [{ name: 'x', negatives: 'soft' }] })).toThrow(/negatives/);
    expect(() => parseAblationConfig({ ...tinyRaw, variants: [{ name: 'x' }, { name: 'x' }], claims: [] })).toThrow(/twice/);
    expect(() => parseAblationConfig({ ...tinyRaw, claims: [{ claim: 'c', better: 'full', worse: 'nope' }] })).toThrow(/nope/);
    // The model's sections are checked by its adapter, before any training.
    expect(() => checkAlbefModelConfig({ preset: 'tiny', albefConfig: { queueSize: 'x' } })).toThrow(
      /albefConfig\.queueSize must be a number/,
    );
    expect(() => checkAlbefModelConfig({ preset: 'huge' })).toThrow(/'huge' is not an ALBEF preset/);
    expect(() => checkAlbefModelConfig({ preset: 'tiny', albefconfig: {} })).toThrow(/unknown section 'albefconfig'/);
  });

  it('randomNegativesSteps: integer ≥ 0, inherited from defaults by hard-negative variants, 0 for random ones', () => {
    const raw = {
      ...tinyRaw,
      defaults: { randomNegativesSteps: 5, objectives: { itm: { weight: 4 } } },
      variants: [{ name: 'hard' }, { name: 'hard 0', randomNegativesSteps: 0 }, { name: 'random', negatives: 'random' }],
      claims: [],
    };
    const [hard, hard0, random] = resolveVariants(parseAblationConfig(raw));
    expect([hard!.randomNegativesSteps, hard0!.randomNegativesSteps, random!.randomNegativesSteps]).toEqual([5, 0, 0]);
    expect(hard!.objectives.itm?.weight).toBe(4);
    expect(trainingKey(hard!)).not.toBe(trainingKey(hard0!));
    // Without the option every variant resolves to 0: mining from step 0, as before the option existed.
    expect(resolveVariants(parseAblationConfig(tinyRaw)).map((v) => v.randomNegativesSteps)).toEqual([0, 0, 0]);
    const bad = (v: Record<string, unknown>) => () => parseAblationConfig({ ...tinyRaw, variants: [{ name: 'x', ...v }], claims: [] });
    expect(bad({ randomNegativesSteps: -1 })).toThrow(/randomNegativesSteps/);
    expect(bad({ randomNegativesSteps: 2.5 })).toThrow(/randomNegativesSteps/);
    expect(bad({ negatives: 'random', randomNegativesSteps: 10 })).toThrow(/variant 'x': randomNegativesSteps .* negatives are random/);
    expect(bad({ objectives: { itm: { weight: -1 } } })).toThrow(/itm/);
  });

  it('the committed configs/ablation.yaml is valid', async () => {
    const { readAblationConfig } = await import('../ablate/config.js');
    const config = await readAblationConfig(repoConfig);
    expect(config.seeds.length).toBeGreaterThanOrEqual(3);
    expect(config.claims.length).toBeGreaterThanOrEqual(4);
    // The ITM-fix rerun: ITM weight 4 and a random-negative warm-up on every hard-negative arm.
    const fixed = resolveVariants(await readAblationConfig(join(dirname(repoConfig), 'ablation-albef-itm.yaml')));
    for (const v of fixed) {
      expect(v.objectives.itm?.weight, v.name).toBe(4);
      expect(v.randomNegativesSteps, v.name).toBe(v.negatives === 'hard' ? 200 : 0);
    }
  });

  it("the committed VLMo configs are valid, down to the adapter's checks of their sections and options", async () => {
    const { readAblationConfig } = await import('../ablate/config.js');
    const { vlmoAblationOptions } = await import('@vl/vlmo');
    for (const name of ['ablation-vlmo.yaml', 'ablation-vlmo-layerscale.yaml']) {
      const config = await readAblationConfig(join(dirname(repoConfig), name));
      expect(config.model).toBe('vlmo');
      for (const v of resolveVariants(config)) expect(() => vlmoAblationOptions(v.options), `${name}: ${v.name}`).not.toThrow();
    }
  });
});

describe('ablation data', () => {
  it('is deterministic, labels noise only in training, and batches never hold a single image', () => {
    const spec = parseAblationConfig({ ...tinyRaw, data: { ...tinyRaw.data, noise: 0.5 } }).data;
    const a = prepareSynthData(spec, ALBEF_IMAGE_NORM);
    const b = prepareSynthData(spec, ALBEF_IMAGE_NORM);
    expect(a.train.images.pixels).toEqual(b.train.images.pixels);
    expect(a.train.captions.inputIds).toEqual(b.train.captions.inputIds);
    expect(a.summary.noisyCaptions).toBe(Math.round(0.5 * a.summary.trainCaptions));
    expect(a.eval.captions.imageOf.length).toBe(8);
    const batches = [...pairBatches(a.train, 4, 0, 0)];
    expect(batches.length).toBe(Math.floor(a.summary.trainCaptions / 4));
    for (const batch of batches) expect(new Set(batch.imageIds).size).toBeGreaterThan(1);
    expect([...pairBatches(a.train, 4, 0, 1)][0]!.inputIds).not.toEqual(batches[0]!.inputIds);
  });
});

describe('ablation statistics and plots', () => {
  it('mean ± sample std, claims with a standard error', () => {
    const s = summarize([1, 2, 3]);
    expect(s.mean).toBe(2);
    expect(s.std).toBeCloseTo(1, 10);
    expect(summarize([5]).std).toBe(0);
    const variants = summarizeVariants(
      [
        { variant: 'a', seed: 0, metrics: { r_mean: 10 }, trainSeconds: 1, sharedTraining: false },
        { variant: 'a', seed: 1, metrics: { r_mean: 12 }, trainSeconds: 1, sharedTraining: false },
        { variant: 'b', seed: 0, metrics: { r_mean: 5 }, trainSeconds: 1, sharedTraining: false },
        { variant: 'b', seed: 1, metrics: { r_mean: 7 }, trainSeconds: 1, sharedTraining: false },
      ],
      ['a', 'b'],
      () => 0,
    );
    const [c] = checkClaims(variants, [{ claim: 'a > b', better: 'a', worse: 'b', metric: 'r_mean' }]);
    expect(c!.difference).toBe(5);
    expect(c!.stderr).toBeCloseTo(Math.sqrt(2 / 2 + 2 / 2), 10);
    expect(c!.verdict).toBe('reproduced');
    expect(c!.clear).toBe(true);
    expect(verdictText(c!)).toBe('reproduced (> 2 s.e.)');
    const [d] = checkClaims(variants, [{ claim: 'b > a', better: 'b', worse: 'a', metric: 'r_mean' }]);
    expect(d!.verdict).toBe('not reproduced');
    expect(verdictText(d!)).toBe('not reproduced (opposite direction)');
    // A positive difference within 2 s.e. (the old report's "+0.17 ± 11.36 reproduced") is not reproduced.
    const noisy = summarizeVariants(
      [
        { variant: 'a', seed: 0, metrics: { r_mean: 0 }, trainSeconds: 1, sharedTraining: false },
        { variant: 'a', seed: 1, metrics: { r_mean: 20.34 }, trainSeconds: 1, sharedTraining: false },
        { variant: 'b', seed: 0, metrics: { r_mean: 10 }, trainSeconds: 1, sharedTraining: false },
        { variant: 'b', seed: 1, metrics: { r_mean: 10 }, trainSeconds: 1, sharedTraining: false },
      ],
      ['a', 'b'],
      () => 0,
    );
    const [e] = checkClaims(noisy, [{ claim: 'a > b', better: 'a', worse: 'b', metric: 'r_mean' }]);
    expect(e!.difference).toBeCloseTo(0.17, 10);
    expect(e!.verdict).toBe('not reproduced');
    expect(e!.clear).toBe(false);
    expect(verdictText(e!)).toBe('not reproduced (same direction, within 2 s.e.)');
    const md = markdownTable({ variants } as AblationResults);
    expect(md).toContain('| a | 0 |');
    expect(md).toContain('11.0 ± 1.4');
  });

  it('draws SVG charts and renders them to PNG', async () => {
    const line = lineChartSvg(
      [
        {
          name: 'x<y',
          points: smooth([
            { x: 1, y: 3 },
            { x: 2, y: 1 },
            { x: 3, y: 2 },
          ]),
        },
      ],
      { title: 't', xLabel: 'step', yLabel: 'loss' },
    );
    expect(line).toContain('<path d="M');
    expect(line).toContain('x&lt;y');
    const bars = barChartSvg(
      [
        {
          metric: 'r_mean',
          bars: [
            { name: 'a', mean: 10, std: 2 },
            { name: 'b', mean: 5, std: 1 },
          ],
        },
      ],
      { title: 't', yLabel: '%' },
    );
    expect((bars.match(/<rect /g) ?? []).length).toBe(1 + 2 + 2);
    const dir = mkdtempSync(join(tmpdir(), 'vl-plot-'));
    await writePng(bars, join(dir, 'bars.png'));
    const png = readFileSync(join(dir, 'bars.png'));
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(existsSync(join(dir, 'bars.svg'))).toBe(true);
  });
});

describe('ablation runner', () => {
  it('trains each training group once per seed, evaluates every variant, writes tables and plots', async () => {
    const out = mkdtempSync(join(tmpdir(), 'vl-ablate-'));
    const logs: string[] = [];
    const results = await runAblation(parseAblationConfig(tinyRaw), { out, onLog: (l) => logs.push(l) });
    expect(results.runs.length).toBe(3 * 2);
    expect(results.runs.filter((r) => r.sharedTraining).map((r) => r.variant)).toEqual(['full k0', 'full k0']);
    expect(logs.filter((l) => l.startsWith('train ')).length).toBe(2 * 2);
    for (const v of results.variants) {
      for (const m of ['tr_r1', 'ir_r1', 'r_mean', 'r_mean_itc']) expect(v.metrics[m]?.n, `${v.variant} ${m}`).toBe(2);
    }
    // Eval-only variants share weights: the ITC-only recall is identical, the re-ranked one may differ.
    const full = results.variants.find((v) => v.variant === 'full')!;
    const k0 = results.variants.find((v) => v.variant === 'full k0')!;
    expect(k0.metrics.r_mean_itc!.mean).toBe(full.metrics.r_mean_itc!.mean);
    expect(k0.metrics.r_mean!.mean).toBe(k0.metrics.r_mean_itc!.mean);
    expect(results.claims[0]!.claim).toBe('ITC helps');
    expect(Object.keys(results.curves).sort()).toEqual(['full', 'full k0', 'no itc']);
    for (const f of ['results.json', 'results.md', 'loss_curves.png', 'metrics.png', 'runs.jsonl'])
      expect(existsSync(join(out, f)), f).toBe(true);
    expect(readFileSync(join(out, 'runs.jsonl'), 'utf8').trim().split('\n').length).toBe(6);
    expect(readFileSync(join(out, 'results.md'), 'utf8')).toMatch(/\| no itc \| 0 \|/);
    // --replot re-renders from results.json; the loss plot leaves out the shared-training variant.
    const md = readFileSync(join(out, 'results.md'), 'utf8');
    await replotAblation(out);
    expect(readFileSync(join(out, 'results.md'), 'utf8')).toBe(md);
    const svg = readFileSync(join(out, 'loss_curves.svg'), 'utf8');
    expect(svg).toContain('>no itc<');
    expect(svg).not.toContain('>full k0<');
  });

  it('runs through the vl binary with --seeds, --steps and --only', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vl-ablate-bin-'));
    const cfg = join(dir, 'ablation.json');
    writeFileSync(cfg, JSON.stringify({ ...tinyRaw, out: join(dir, 'out') }));
    const { stdout } = await promisify(execFile)(process.execPath, [
      bin,
      'ablate',
      '--config',
      cfg,
      '--seeds',
      '3',
      '--steps',
      '1',
      '--only',
      'full,no itc',
      '--quiet',
    ]);
    expect(stdout).toMatch(/ITC helps/);
    const results = JSON.parse(readFileSync(join(dir, 'out', 'results.json'), 'utf8')) as AblationResults;
    expect(results.seeds).toEqual([3]);
    expect(results.variants.map((v) => v.variant)).toEqual(['full', 'no itc']);
    expect(results.runs.every((r) => r.seed === 3)).toBe(true);
  });
});
