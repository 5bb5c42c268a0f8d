// Renders a BenchReport as the markdown `vl bench --out docs/benchmarks.md` writes.
import { BENCH_ENGINES, ENGINE_LABELS, type BenchEngine, type BenchReport, type EngineTiming } from './bench.js';

function find(timings: EngineTiming[], engine: BenchEngine): EngineTiming | undefined {
  return timings.find((t) => t.engine === engine);
}

const gflops = (t: EngineTiming | undefined) => (t ? t.gflops.toFixed(1) : '—');
const seconds = (t: EngineTiming | undefined) => (t ? (t.bestMs / 1000).toFixed(2) : '—');
const ratio = (r: number | null) => (r === null ? '—' : `${r.toFixed(1)}×`);

export function benchReportToMarkdown(report: BenchReport): string {
  const { environment: env, peak, block } = report;
  const ran = (e: BenchEngine) => report.matmul.some((m) => find(m.timings, e)) || block.forward.some((t) => t.engine === e);
  const engines = BENCH_ENGINES.filter(ran);
  const withAccel = ran('wasm-accel');
  // Against the one-thread peak for one-thread engines, against all cores for a thread pool.
  const ofPeak = (t: EngineTiming | undefined) => {
    if (!t || !peak) return '—';
    const reference = t.threads > 1 ? peak.allThreadsGflops : peak.singleThreadGflops;
    return `${((100 * t.gflops) / reference).toFixed(0)}%`;
  };
  const lines: string[] = [];
  lines.push(`# Benchmarks (${report.mode} run)`, '');
  lines.push(
    `${report.date} · Node ${env.node} · ${env.cpu} (${env.cores} cores) · tfjs ${env.tfjs} · ` +
      `wasm threads: ${env.wasmThreads ?? '—'} · load average ${env.loadAverage[0].toFixed(1)} → ` +
      `${env.loadAverage[1].toFixed(1)} · total ${report.totalSeconds.toFixed(0)} s`,
    '',
  );
  if (env.accel) lines.push(`@vl/accel: ${env.accel}`, '');
  if (peak) {
    lines.push(
      `Reference fp32 peak, same run: **${peak.singleThreadGflops.toFixed(0)} GFLOP/s on one thread**, ` +
        `${peak.allThreadsGflops.toFixed(0)} GFLOP/s on ${peak.threads} (${peak.method}). ` +
        '"% of peak" compares one-thread engines (tfjs cpu, wasm) with the one-thread figure and ' +
        'multi-threaded ones with the all-threads figure.',
      '',
    );
  }
  const accelHead = withAccel ? ' accel vs stock | % of peak (accel) |' : '';
  const accelRule = withAccel ? ' ---: | ---: |' : '';
  lines.push('## Matmul, GFLOP/s (best of runs)', '');
  lines.push(`| case | GFLOP | ${engines.map((e) => ENGINE_LABELS[e]).join(' | ')} | core vs stock | % of peak (core) |${accelHead}`);
  lines.push(`| --- | ---: | ${engines.map(() => '---:').join(' | ')} | ---: | ---: |${accelRule}`);
  for (const m of report.matmul) {
    const accelCells = withAccel ? ` ${ratio(m.accelSpeedup)} | ${ofPeak(find(m.timings, 'wasm-accel'))} |` : '';
    lines.push(
      `| ${m.case.name} | ${(m.flops / 1e9).toFixed(2)} | ${engines.map((e) => gflops(find(m.timings, e))).join(' | ')} | ` +
        `${ratio(m.speedup)} | ${ofPeak(find(m.timings, 'wasm'))} |${accelCells}`,
    );
  }
  lines.push('');
  const s = block.shape;
  lines.push(`## Transformer block: hidden ${s.hidden}, ${s.heads} heads, MLP ${s.ffn}, batch ${s.batch} × ${s.tokens} tokens`, '');
  lines.push(
    `Matmul work: ${(block.forwardFlops / 1e9).toFixed(1)} GFLOP forward, ` +
      `${((3 * block.forwardFlops) / 1e9).toFixed(1)} GFLOP forward+backward.`,
    '',
  );
  lines.push('| engine | forward s | forward GFLOP/s | fwd+bwd s | fwd+bwd GFLOP/s |');
  lines.push('| --- | ---: | ---: | ---: | ---: |');
  for (const e of engines) {
    const fwd = find(block.forward, e);
    const both = find(block.forwardBackward, e);
    if (!fwd && !both) continue;
    lines.push(`| ${ENGINE_LABELS[e]} | ${seconds(fwd)} | ${gflops(fwd)} | ${seconds(both)} | ${gflops(both)} |`);
  }
  lines.push(`| core vs stock | ${ratio(block.forwardSpeedup)} | | ${ratio(block.forwardBackwardSpeedup)} | |`);
  if (withAccel) {
    lines.push(`| accel vs stock | ${ratio(block.accelForwardSpeedup)} | | ${ratio(block.accelForwardBackwardSpeedup)} | |`);
  }
  lines.push('');
  const t = report.target;
  lines.push(
    `Target: block forward+backward on wasm at least ${t.required}× faster with core's kernels than stock, same run — ` +
      `${t.achieved === null ? 'not measured' : `${t.achieved.toFixed(1)}×, ${t.met ? 'met' : 'NOT met'}`}.`,
    '',
  );
  const notes = [...report.notes];
  const all = [...report.matmul.flatMap((m) => m.timings), ...block.forward, ...block.forwardBackward];
  if (peak && all.some((x) => x.gflops > (x.threads > 1 ? peak.allThreadsGflops : peak.singleThreadGflops))) {
    notes.push(
      'Some figures exceed the measured peak: other load on the machine lowered the peak runs, so the ' +
        'percentages of peak are overestimates in this run.',
    );
  }
  if (notes.length) {
    lines.push('Notes:', '', ...notes.map((n) => `- ${n}`), '');
  }
  return lines.join('\n');
}
