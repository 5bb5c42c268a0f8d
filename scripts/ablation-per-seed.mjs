// Per-seed differences behind each claim of a `vl ablate` run: for every claim in DIR/results.json, the
// difference better − worse on each seed (same seed = same init, data order and draws), their mean, the
// runner's standard error (unpaired: √(s²₁/n + s²₂/n), the one the verdict uses) and the paired one (sample
// std of the per-seed differences / √n), and the verdict by the 2-s.e. rule with the runner's s.e.
// Also each variant's per-seed values of the metrics named with --metrics.
//
//   node scripts/ablation-per-seed.mjs docs/ablations/albef-itm [--metrics r_mean,r_mean_itc] > docs/ablations/albef-itm/per-seed.md
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { metrics: { type: 'string', default: 'r_mean,r_mean_itc' } },
});
const dir = positionals[0];
if (!dir) {
  process.stderr.write('usage: node scripts/ablation-per-seed.mjs DIR [--metrics r_mean,r_mean_itc]\n');
  process.exit(2);
}
const results = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'));
const value = (variant, seed, metric) => results.runs.find((r) => r.variant === variant && r.seed === seed)?.metrics[metric];
const mean = (xs) => xs.reduce((a, x) => a + x, 0) / xs.length;
const std = (xs) => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1)));
const signed = (x, d = 2) => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(d)}`;
const seeds = results.seeds;

const lines = [
  `# Per-seed values and differences: ${results.name}`,
  '',
  `From \`${join(dir, 'results.json')}\` (\`${results.command}\`).`,
  '',
];
lines.push('## Claims', '');
lines.push(
  `| claim | metric | ${seeds.map((s) => `seed ${s}`).join(' | ')} | mean | s.e. (runner, unpaired) | s.e. (paired) | verdict (runner's s.e.) |`,
);
lines.push(`| --- | --- | ${seeds.map(() => '---:').join(' | ')} | ---: | ---: | ---: | --- |`);
for (const c of results.claims) {
  const diffs = seeds.map((s) => value(c.better, s, c.metric) - value(c.worse, s, c.metric));
  const d = mean(diffs);
  const se = c.stderr;
  const verdict =
    d > 2 * se ? 'reproduced (> 2 s.e.)' : d > 0 ? 'not reproduced (same direction, within 2 s.e.)' : 'not reproduced (opposite direction)';
  lines.push(
    `| ${c.claim} | ${c.metric} | ${diffs.map((x) => signed(x)).join(' | ')} | ${signed(d)} | ${se.toFixed(2)} | ${(std(diffs) / Math.sqrt(diffs.length)).toFixed(2)} | ${verdict} |`,
  );
}
for (const metric of values.metrics.split(',').filter(Boolean)) {
  lines.push(
    '',
    `## ${metric} per seed`,
    '',
    `| variant | ${seeds.map((s) => `seed ${s}`).join(' | ')} | mean ± std |`,
    `| --- | ${seeds.map(() => '---:').join(' | ')} | ---: |`,
  );
  for (const v of results.variants) {
    const xs = seeds.map((s) => value(v.variant, s, metric));
    lines.push(`| ${v.variant} | ${xs.map((x) => x.toFixed(2)).join(' | ')} | ${mean(xs).toFixed(2)} ± ${std(xs).toFixed(2)} |`);
  }
}
process.stdout.write(`${lines.join('\n')}\n`);
