// `vl bench`: matmul and transformer-block throughput per backend, written to docs/benchmarks.md.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { BENCH_ENGINES, benchReportToMarkdown, runBench, type BenchEngine } from '@vl/core';
import type { Command } from 'commander';

interface BenchCliOptions {
  quick?: boolean;
  out?: string;
  json?: string;
  engines?: string;
  peak: boolean;
}

function parseEngines(value: string | undefined): BenchEngine[] | undefined {
  if (!value) return undefined;
  const engines = value.split(',').map((s) => s.trim());
  for (const e of engines) {
    if (!(BENCH_ENGINES as readonly string[]).includes(e)) {
      throw new Error(`vl bench: unknown engine '${e}'; use a comma-separated list of ${BENCH_ENGINES.join(', ')}`);
    }
  }
  return engines as BenchEngine[];
}

export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('matmul GFLOP/s (NN/NT/TN/TT/batched) and a BERT-base block fwd / fwd+bwd on each backend, as ratios in one run')
    .option('--quick', 'a smoke run of seconds with small shapes')
    .option('--out <file.md>', 'write the markdown report here (e.g. docs/benchmarks.md)')
    .option('--json <file.json>', 'also write the raw report as JSON')
    .option('--engines <list>', `comma-separated subset of ${BENCH_ENGINES.join(', ')}`)
    .option('--no-peak', 'skip measuring the reference FMA peak with a C compiler')
    .action(async (opts: BenchCliOptions) => {
      const report = await runBench({
        quick: opts.quick ?? false,
        engines: parseEngines(opts.engines),
        peak: opts.peak,
        log: (line) => process.stderr.write(`${line}\n`),
      });
      const markdown = benchReportToMarkdown(report);
      process.stdout.write(`${markdown}\n`);
      for (const [file, text] of [
        [opts.out, markdown],
        [opts.json, JSON.stringify(report, null, 2)],
      ] as const) {
        if (!file) continue;
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, `${text}\n`);
        process.stderr.write(`wrote ${file}\n`);
      }
    });
}
