// Prints docs/coca.md's ablation table from a `vl ablate` run's runs.jsonl (mean ± sample std over seeds):
// contrastive retrieval R mean and the held-out captioning cross-entropy, per caption-loss weight.
// Run: node packages/coca/scripts/ablation-table.mjs [docs/ablations/coca/runs.jsonl]
import { readFileSync } from 'node:fs';

const file = process.argv[2] ?? 'docs/ablations/coca/runs.jsonl';
const runs = readFileSync(file, 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l));
const by = new Map();
for (const r of runs) by.set(r.variant, [...(by.get(r.variant) ?? []), r.metrics]);
const stat = (xs) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
  return { m, sd };
};
const f = (xs, d) => {
  const { m, sd } = stat(xs);
  return `${m.toFixed(d)} ± ${sd.toFixed(d)}`;
};
console.log('| variant | seeds | R mean (contrastive) | TR R@1 | IR R@1 | held-out caption CE |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
for (const [name, ms] of by) {
  const col = (k) => ms.map((m) => m[k]);
  console.log(
    `| ${name} | ${ms.length} | ${f(col('r_mean'), 1)} | ${f(col('tr_r1'), 1)} | ${f(col('ir_r1'), 1)} | ${f(col('caption_ce'), 3)} |`,
  );
}
