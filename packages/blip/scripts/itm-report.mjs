#!/usr/bin/env node
// Tables and plots of ITM learning curves (docs/training.md): reads every `*.jsonl` that
// scripts/itm-curves.mjs wrote into a folder and writes there `table.md` (one row per run: training
// ITM loss at the start and the end, held-out accuracy on positives / random / hard negatives) and
// `itm-loss.png` + `auc.png` (with .svg): training ITM loss (EMA-smoothed) and held-out ROC AUC
// of P(match), positives against random negatives and against hard negatives, per step; `p-gap.png`:
// mean P(match) of positives minus that of random negatives (for runs logged before AUC was).
// usage: node scripts/itm-report.mjs DIR
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';

const dir = process.argv[2] ?? '../../docs/training/itm';
const runs = readdirSync(dir)
  .filter((f) => f.endsWith('.jsonl'))
  .sort()
  .map((f) => {
    const recs = readFileSync(join(dir, f), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    const config = recs.find((r) => r.kind === 'config');
    return {
      file: f,
      // Plots and tables name a run by its file (`1-before.jsonl` → 1-before).
      label: f.replace(/\.jsonl$/, ''),
      config,
      steps: recs.filter((r) => r.kind === 'step'),
      evals: recs.filter((r) => r.kind === 'eval'),
      done: recs.find((r) => r.kind === 'done'),
    };
  });

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const pct = (x) => `${(100 * x).toFixed(0)}%`;

const rows = runs.map((r) => {
  const o = r.config.options;
  const tenth = Math.max(1, Math.floor(r.steps.length / 10));
  const itm = r.steps.map((s) => s.losses.itm);
  const last = r.evals[r.evals.length - 1];
  // Escape from the class prior: first evaluation where P(match) ranks positives above random negatives
  // (ROC AUC ≥ 0.6; 0.5 = no discrimination). Runs logged before AUC was added: mean P(match) of positives
  // at least 0.05 above that of random negatives.
  const escape = r.evals.find((e) => e.step > 0 && (e.aucRandom ?? 0.5 + 2 * (e.positive.meanP - e.random.meanP)) >= 0.6);
  const objectives = Object.entries(o.weights)
    .filter(([, w]) => w > 0)
    .map(([k, w]) => (w === 1 ? k : `${w}·${k}`))
    .join('+');
  return [
    r.label,
    objectives,
    o.negatives === 'hard' && o.randomNegativesSteps ? `random for ${o.randomNegativesSteps} steps, then hard` : o.negatives,
    String(o.lr),
    String(o.steps),
    itm[0] === undefined ? '–' : mean(itm.slice(0, tenth)).toFixed(3),
    itm[0] === undefined ? '–' : mean(itm.slice(-tenth)).toFixed(3),
    pct(last.positive.acc),
    pct(last.random.acc),
    pct(last.hard.acc),
    last.aucRandom === undefined ? '–' : last.aucRandom.toFixed(2),
    last.aucHard === undefined ? '–' : last.aucHard.toFixed(2),
    escape ? String(escape.step) : 'never',
    r.done ? `${r.done.seconds.toFixed(0)} s` : '–',
  ];
});
const head = [
  'run',
  'objectives',
  'ITM negatives',
  'lr',
  'steps',
  'train ITM loss, first 10%',
  'last 10%',
  'held-out acc: positives',
  'random neg.',
  'hard neg.',
  'AUC pos. vs random neg.',
  'vs hard neg.',
  'first step AUC ≥ 0.6',
  'train time',
];
const table = [
  `| ${head.join(' | ')} |`,
  `| ${head.map((_, i) => (i < 3 ? '---' : '---:')).join(' | ')} |`,
  ...rows.map((r) => `| ${r.join(' | ')} |`),
].join('\n');
const heldOut = runs[0]?.config.heldOut;
writeFileSync(
  join(dir, 'table.md'),
  `<!-- written by packages/blip/scripts/itm-report.mjs from the *.jsonl beside it -->\n\nHeld-out: ${heldOut} scenes (seed 1), each with its own caption, another scene's caption and its caption with one attribute changed; accuracy of P(match) ≥ 0.5 and ROC AUC of P(match) (positives against each kind of negative; 0.5 = no discrimination) at the last step. The class prior of training (1 positive : 2 negatives) gives ITM loss 0.637.\n\n${table}\n`,
);

// ---- plots (hand-written SVG, rendered with sharp as `vl ablate` does)
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
function chart(series, { title, yLabel, yRange, hline }) {
  const W = 1040;
  const H = 520;
  const m = { l: 70, r: 340, t: 50, b: 60 };
  const x1 = Math.max(...series.flatMap((s) => s.points.map((p) => p.x)), 1);
  const [y0, y1] = yRange;
  const px = (x) => m.l + (x / x1) * (W - m.l - m.r);
  const py = (y) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="DejaVu Sans, sans-serif" font-size="13">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${m.l}" y="28" font-size="16">${esc(title)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const t = y0 + ((y1 - y0) * i) / 5;
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${py(t)}" y2="${py(t)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.l - 8}" y="${py(t) + 4}" text-anchor="end">${t.toFixed(2)}</text>`);
  }
  const xStep = x1 > 1000 ? 200 : 100;
  for (let t = 0; t <= x1; t += xStep) parts.push(`<text x="${px(t)}" y="${H - m.b + 20}" text-anchor="middle">${t}</text>`);
  if (hline) {
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${py(hline.y)}" y2="${py(hline.y)}" stroke="#999" stroke-dasharray="6 4"/>`);
    parts.push(`<text x="${W - m.r - 4}" y="${py(hline.y) - 6}" text-anchor="end" fill="#666">${esc(hline.label)}</text>`);
  }
  parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${H - m.b}" y2="${H - m.b}" stroke="#333"/>`);
  parts.push(`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${H - m.b}" stroke="#333"/>`);
  parts.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 15}" text-anchor="middle">step</text>`);
  parts.push(`<text transform="translate(18 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
  series.forEach((s, i) => {
    const color = PALETTE[s.color % PALETTE.length];
    const d = s.points.map((p, j) => `${j ? 'L' : 'M'}${px(p.x).toFixed(1)},${py(Math.min(y1, Math.max(y0, p.y))).toFixed(1)}`).join('');
    parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${s.dash ? ' stroke-dasharray="5 4"' : ''}/>`);
    const ly = m.t + 10 + i * 20;
    parts.push(
      `<line x1="${W - m.r + 12}" x2="${W - m.r + 36}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="3"${s.dash ? ' stroke-dasharray="5 4"' : ''}/>`,
    );
    parts.push(`<text x="${W - m.r + 42}" y="${ly + 4}" font-size="12">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
async function write(svg, name) {
  writeFileSync(join(dir, `${name}.svg`), svg);
  await sharp(Buffer.from(svg))
    .png()
    .toFile(join(dir, `${name}.png`));
}
const ema = (points, w = 0.9) => {
  let last = points[0]?.y ?? 0;
  return points.map((p) => ({ x: p.x, y: (last = last * w + p.y * (1 - w)) }));
};
await write(
  chart(
    runs.map((r, i) => ({ name: r.label, color: i, points: ema(r.steps.map((s) => ({ x: s.step, y: s.losses.itm }))) })),
    {
      title: 'training ITM loss (EMA 0.9)',
      yLabel: 'ITM cross-entropy',
      yRange: [0.3, 0.8],
      hline: { y: 0.6365, label: 'class prior 1:2 (0.637)' },
    },
  ),
  'itm-loss',
);
await write(
  chart(
    runs
      .flatMap((r, i) => [
        {
          name: `${r.label}: vs random`,
          color: i,
          points: r.evals.filter((e) => e.aucRandom !== undefined).map((e) => ({ x: e.step, y: e.aucRandom })),
        },
        {
          name: `${r.label}: vs hard`,
          color: i,
          dash: true,
          points: r.evals.filter((e) => e.aucHard !== undefined).map((e) => ({ x: e.step, y: e.aucHard })),
        },
      ])
      .filter((s) => s.points.length),
    {
      title: 'held-out ITM ROC AUC, positives vs random (solid) / hard (dashed) negatives',
      yLabel: 'ROC AUC',
      yRange: [0.4, 1],
      hline: { y: 0.5, label: 'no discrimination' },
    },
  ),
  'auc',
);
await write(
  chart(
    runs.map((r, i) => ({ name: r.label, color: i, points: r.evals.map((e) => ({ x: e.step, y: e.positive.meanP - e.random.meanP })) })),
    {
      title: 'held-out mean P(match): positives minus random negatives',
      yLabel: 'P(match) gap',
      yRange: [-0.05, 0.4],
      hline: { y: 0, label: 'no discrimination' },
    },
  ),
  'p-gap',
);
console.log(`${runs.length} runs → ${join(dir, 'table.md')}, itm-loss.png, auc.png, p-gap.png`);
