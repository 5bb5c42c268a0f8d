// The summary a finished CapFilt run prints (stdout) and its exit code from the report's balance.
import type { Io } from '@vl/core';
import type { CapfiltReport } from './output.js';
import type { Models } from './pipeline.js';

export function summary(io: Io, r: CapfiltReport, out: string): void {
  const c = r.counts;
  io.out(`${r.input} records: kept ${c.kept}, replaced ${c.replaced}, dropped ${c.dropped}, failed ${c.failed} (threshold ${r.threshold})`);
  io.out(
    `captions: original ${r.captions.originalKept}/${r.captions.original} kept, synthetic ${r.captions.syntheticKept}/${r.captions.synthetic} kept, ${r.captions.written} written`,
  );
  io.out(`wrote ${out}`);
}

/** Exit code 3 (and why) when records.jsonl does not hold exactly the source's records; else 0. */
export function unbalanced(io: Io, report: CapfiltReport, expected: number): number {
  if (report.balanced) return 0;
  io.err(`capfilt: counts do not add up: records.jsonl has ${report.input} records, the source has ${expected} (balanced: false)`);
  return 3;
}

/** The progress line after loading: each model's time from the start of loading (they load concurrently). */
export function loadLine(models: Models): string {
  const t = models.loadSeconds;
  if (!t) return 'capfilt: models loaded';
  const loaded = `capfilt: models loaded in ${t.both.toFixed(1)}s (captioner ready at ${t.captioner.toFixed(1)}s, filter at ${t.filter.toFixed(1)}s)`;
  const q = models.int8;
  if (!q) return loaded;
  return `${loaded}; int8: ${q.captioner.layers + q.filter.layers} linear layers quantised in ${q.seconds.toFixed(1)}s`;
}
