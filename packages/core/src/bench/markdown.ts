// Renders a BenchReport as the markdown `vl bench --out docs/benchmarks.md` writes.
import { BENCH_ENGINES, ENGINE_LABELS, type BenchEngine, type BenchReport, type EngineTiming } from './bench.js';

function cell(timings: EngineTiming[], engine: BenchEngine, show: (t: EngineTiming) => string): string {
  const t = timings.find((x) => x.engine === engine);
  return t ? show(t) : '—';
}

const gflops = (t: EngineTiming) => t.gflops.toFixed(1);
const seconds = (t: EngineTiming) => (t.bestMs / 1000).toFixed(2);
const ratio = (r: number | null) => (r === null ? '—' : `${r.toFixed(1)}×`);

export function benchReportToMarkdown(report: BenchReport): string {
  const { environment: env, peak, block } = report;
  const engines = BENCH_ENGINES.filter(
    (e) => report.matmul.some((m) => m.timings.some((t) => t.engine === e)) || block.forward.some((t) => t.engine === e)
  );
  const peakOf = (g: number) => (peak ? `${((100 * g) / peak.singleThreadGflops).toFixed(0)}%` : '—');
  const lines: string[] = [];
  lines.push(`# Benchmarks (${report.mode} run)`, '');
  lines.push(
    `${report.date} · Node ${env.node} · ${env.cpu} (${env.cores} cores) · tfjs ${env.tfjs} · ` +
      `wasm threads: ${env.wasmThreads ?? '—'} · load average ${env.loadAverage[0].toFixed(1)} → ` +
      `${env.loadAverage[1].toFixed(1)} · total ${report.totalSeconds.toFixed(0)} s`,
    ''
  );
  if (peak) {
    lines.push(
      `Reference fp32 peak, same run: **${peak.singleThreadGflops.toFixed(0)} GFLOP/s on one thread**, ` +
        `${peak.allThreadsGflops.toFixed(0)} GFLOP/s on ${peak.threads} (${peak.method}). ` +
        'Every engine below computes on one thread, so "% of peak" is against the one-thread figure.',
      ''
    );
  }
  lines.push('## Matmul, GFLOP/s (best of runs)', '');
  lines.push(
    `| case | GFLOP | ${engines.map((e) => ENGINE_LABELS[e]).join(' | ')} | core vs stock | % of peak (core) |`
  );
  lines.push(`| --- | ---: | ${engines.map(() => '---:').join(' | ')} | ---: | ---: |`);
  for (const m of report.matmul) {
    const fixed = m.timings.find((t) => t.engine === 'wasm');
    lines.push(
      `| ${m.case.name} | ${(m.flops / 1e9).toFixed(2)} | ${engines
        .map((e) => cell(m.timings, e, gflops))
        .join(' | ')} | ` + `${ratio(m.speedup)} | ${fixed ? peakOf(fixed.gflops) : '—'} |`
    );
  }
  lines.push('');
  const s = block.shape;
  lines.push(
    `## Transformer block: hidden ${s.hidden}, ${s.heads} heads, MLP ${s.ffn}, batch ${s.batch} × ${s.tokens} tokens`,
    ''
  );
  lines.push(
    `Matmul work: ${(block.forwardFlops / 1e9).toFixed(1)} GFLOP forward, ${((3 * block.forwardFlops) / 1e9).toFixed(
      1
    )} GFLOP forward+backward.`,
    ''
  );
  lines.push('| engine | forward s | forward GFLOP/s | fwd+bwd s | fwd+bwd GFLOP/s |');
  lines.push('| --- | ---: | ---: | ---: | ---: |');
  for (const e of engines) {
    if (!block.forward.some((t) => t.engine === e)) continue;
    lines.push(
      `| ${ENGINE_LABELS[e]} | ${cell(block.forward, e, seconds)} | ${cell(block.forward, e, gflops)} | ` +
        `${cell(block.forwardBackward, e, seconds)} | ${cell(block.forwardBackward, e, gflops)} |`
    );
  }
  lines.push(`| core vs stock | ${ratio(block.forwardSpeedup)} | | ${ratio(block.forwardBackwardSpeedup)} | |`, '');
  const t = report.target;
  lines.push(
    `Target: block forward+backward on wasm at least ${t.required}× faster with core's kernels than stock, same run — ` +
      `${t.achieved === null ? 'not measured' : `${t.achieved.toFixed(1)}×, ${t.met ? 'met' : 'NOT met'}`}.`,
    ''
  );
  if (report.notes.length) {
    lines.push('Notes:', '', ...report.notes.map((n) => `- ${n}`), '');
  }
  return lines.join('\n');
}
