// `vl ablate --config ablation.yaml`: trains and evaluates a grid of model variants over several
// seeds and writes a results table (markdown + JSON, mean ± std) and PNG plots. See docs/ablations.md.
import { VlError } from '@vl/core';
import { type Command, InvalidArgumentError } from 'commander';
import { readAblationConfig } from '../ablate/config.js';
import { replotAblation, runAblation } from '../ablate/run.js';
import { progress } from './data.js';

function seedList(value: string): number[] {
  const seeds = value.split(',').map((s) => Number(s.trim()));
  if (!seeds.length || seeds.some((s) => !Number.isInteger(s) || s < 0))
    throw new InvalidArgumentError('expected comma-separated non-negative integers, e.g. 0,1,2');
  return seeds;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

/** `vl ablate`'s options, as commander parses them. */
interface AblateCommandOptions {
  config?: string;
  replot?: string;
  out?: string;
  seeds?: number[];
  steps?: number;
  only?: string;
  quiet?: boolean;
}

export function registerAblateCommand(program: Command): void {
  program
    .command('ablate')
    .description(
      'train and evaluate a grid of variants (objectives, negatives, distillation, queue, data noise) over seeds; write tables and plots',
    )
    .argument('[model]', "a registered model with an ablation adapter (default: the config's model)")
    .option('--config <file>', 'ablation YAML/JSON (see docs/ablations.md)')
    .option('--replot <dir>', 're-render results.md and the plots of an earlier run from its results.json (no training)')
    .option('--out <dir>', 'output folder (default: the config’s out)')
    .option('--seeds <list>', 'override the seeds, e.g. 0,1,2', seedList)
    .option('--steps <n>', 'override training steps for every variant', positiveInt)
    .option('--only <names>', 'comma-separated variant names to run')
    .option('--quiet', 'no progress output')
    .action(async (model: string | undefined, opts: AblateCommandOptions) => {
      if (opts.replot) {
        await replotAblation(opts.replot);
        process.stdout.write(`re-rendered ${opts.replot}\n`);
        return;
      }
      if (!opts.config) throw new VlError('INVALID_ARGUMENT', 'give --config <file> (or --replot <dir>)');
      const config = await readAblationConfig(opts.config);
      if (model !== undefined) config.model = model;
      if (opts.seeds) config.seeds = opts.seeds;
      if (opts.steps) {
        config.train.steps = opts.steps;
        for (const v of config.variants) if (v.train) delete v.train.steps;
      }
      const quiet = Boolean(opts.quiet);
      let bar: ReturnType<typeof progress> | null = null;
      let current = '';
      const results = await runAblation(config, {
        out: opts.out,
        only: opts.only
          ?.split(',')
          .map((s) => s.trim())
          .filter(Boolean),
        command: ['vl ablate', ...process.argv.slice(3)].join(' '),
        onLog: (line) => {
          if (quiet) return;
          bar?.stop();
          bar = null;
          process.stderr.write(`${line}\n`);
        },
        onStep: (variant, seed, record, total) => {
          if (quiet) return;
          const label = `${variant} seed ${seed}`;
          if (label !== current || !bar) {
            bar?.stop();
            bar = progress(label, false);
            current = label;
          }
          bar.update(record.step, total);
          if (record.step >= total) {
            bar.stop();
            bar = null;
          }
        },
      });
      (bar as ReturnType<typeof progress> | null)?.stop();
      for (const c of results.claims) {
        process.stdout.write(
          `${c.verdict === 'reproduced' ? '✓' : '✗'} ${c.claim}: ${c.better} − ${c.worse} = ${c.difference.toFixed(2)} ± ${c.stderr.toFixed(2)} (${c.metric})\n`,
        );
      }
    });
}
