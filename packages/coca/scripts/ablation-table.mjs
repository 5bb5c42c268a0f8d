// Prints docs/coca.md's ablation table from a `vl ablate` run's runs.jsonl (mean ± sample std over seeds):
// contrastive retrieval R mean and the held-out captioning cross-entropy, per caption-loss weight.
// Several files make one table (the pooling ablation: coca/ + coca-pool-mean/ + coca-pool-cls/).
// Run: node packages/coca/scripts/ablation-table.mjs [runs.jsonl …] [--only 'name|name']
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const onlyAt = args.indexOf('--only');
// Variant names contain commas, so --only separates them with '|'.
const only = onlyAt >= 0 ? new Set(args.splice(onlyAt, 2)[1].split('|')) : null;
const files = args.length ? args : ['docs/ablations/coca/runs.jsonl'];
const runs = files
  .flatMap((file) => readFileSync(file, 'utf8').trim().split('\n'))
  .map((l) => JSON.parse(l))
  .filter((r) => !only || only.has(r.variant));
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
