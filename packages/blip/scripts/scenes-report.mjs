#!/usr/bin/env node
// Table and curves of the `scenes-tiny` training run (docs/training.md, docs/capfilt.md): reads the
// curves.jsonl that scripts/pretrain-scenes.mjs wrote and writes beside it `table.md` (held-out ITM
// at the end of each stage) and `rule.png` + `auc.png` (with .svg): per step, the share of held-out
// positives that BLIP's rule keeps (P(match) ≥ 0.5) and of each kind of negative that it removes,
// and the ROC AUC of P(match), positives against each kind of negative. The stages follow each other
// on the step axis (pretraining, then the filter's fine-tuning; the captioner's has no ITM).
// With --baseline OTHER/curves.jsonl (a run of the same script with other options, e.g. the committed
// one) it also writes `compare.md` and `compare.png` (+ .svg): both runs' held-out AUCs at the steps
// both evaluated, and their AUC curves against one wrong attribute and keyword soup on one chart.
// usage: node scripts/scenes-report.mjs [../../docs/training/scenes-tiny/curves.jsonl] [--baseline FILE]
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import sharp from 'sharp';

const argv = process.argv.slice(2);
const baselineAt = argv.indexOf('--baseline');
const baselineFile = baselineAt >= 0 ? argv[baselineAt + 1] : null;
const file =
  argv.find((a, i) => !a.startsWith('--') && (baselineAt < 0 || i !== baselineAt + 1)) ?? '../../docs/training/scenes-tiny/curves.jsonl';
const dir = dirname(file);
/** The config record, finished stages and evaluations (x: step on the joined pretrain → filter axis) of a log. */
function readRun(path) {
  const recs = readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  const config = recs.find((r) => r.kind === 'config');
  const done = Object.fromEntries(recs.filter((r) => r.kind === 'done').map((r) => [r.stage, r]));
  const offset = { pretrain: 0, filter: config.options.pretrainSteps };
  const evals = recs.filter((r) => r.kind === 'eval').map((e) => ({ ...e, x: e.step + (offset[e.stage] ?? 0) }));
  return { config, done, evals };
}
const { config, done, evals } = readRun(file);
const KINDS = { otherImage: "another image's caption", wrongAttribute: 'one wrong attribute', keywordSoup: 'keyword soup' };
const pct = (x) => `${(100 * x).toFixed(0)}%`;

const head = [
  'stage',
  'steps',
  'time',
  'positives kept (P ≥ 0.5)',
  ...Object.values(KINDS).map((k) => `removed: ${k}`),
  ...Object.values(KINDS).map((k) => `AUC vs ${k}`),
];
const rows = ['pretrain', 'filter'].map((stage) => {
  const last = evals.filter((e) => e.stage === stage).at(-1);
  if (!last) return [stage, '–'];
  return [
    stage,
    String(last.step),
    done[stage] ? `${done[stage].seconds.toFixed(0)} s` : '–',
    pct(last.positive.acc),
    ...Object.keys(KINDS).map((k) => pct(last[k].acc)),
    ...Object.keys(KINDS).map((k) => last[k].auc.toFixed(2)),
  ];
});
rows.splice(1, 0, [
  'captioner (LM only)',
  done.captioner ? String(config.options.captionerSteps) : '–',
  done.captioner ? `${done.captioner.seconds.toFixed(0)} s` : '–',
]);
const table = [
  `| ${head.join(' | ')} |`,
  `| ${head.map((_, i) => (i < 1 ? '---' : '---:')).join(' | ')} |`,
  ...rows.map((r) => `| ${r.join(' | ')} |`),
];
writeFileSync(
  join(dir, 'table.md'),
  `<!-- written by packages/blip/scripts/scenes-report.mjs from curves.jsonl: ${config.command} -->\n\nHeld-out: ${config.heldOut} scenes (seed 1), each scored by the ITM head with its own caption and three negatives; at the last evaluation of each stage. Training pairs: ${config.pretrainPairs} (pretraining, seed 100), ${config.finetunePairs} (fine-tuning, seed 101).\n\n${table.join('\n')}\n`,
);

// ---- plots (hand-written SVG rendered with sharp, as itm-report.mjs)
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728'];
const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
function chart(series, { title, yLabel, yRange, hlines }) {
  const W = 1040;
  const H = 520;
  const m = { l: 70, r: 320, t: 50, b: 60 };
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
  const xStep = x1 > 2000 ? 500 : 200;
  for (let t = 0; t <= x1; t += xStep) parts.push(`<text x="${px(t)}" y="${H - m.b + 20}" text-anchor="middle">${t}</text>`);
  for (const h of hlines) {
    const dash = h.vertical ? '2 3' : '6 4';
    if (h.vertical)
      parts.push(`<line x1="${px(h.x)}" x2="${px(h.x)}" y1="${m.t}" y2="${H - m.b}" stroke="#999" stroke-dasharray="${dash}"/>`);
    else parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${py(h.y)}" y2="${py(h.y)}" stroke="#999" stroke-dasharray="${dash}"/>`);
    const [tx, ty] = h.vertical ? [px(h.x) + 4, m.t + 12] : [W - m.r - 4, py(h.y) - 6];
    parts.push(`<text x="${tx}" y="${ty}" text-anchor="${h.vertical ? 'start' : 'end'}" fill="#666">${esc(h.label)}</text>`);
  }
  parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${H - m.b}" y2="${H - m.b}" stroke="#333"/>`);
  parts.push(`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${H - m.b}" stroke="#333"/>`);
  parts.push(
    `<text x="${(m.l + W - m.r) / 2}" y="${H - 15}" text-anchor="middle">step (pretraining, then the filter's fine-tuning)</text>`,
  );
  parts.push(`<text transform="translate(18 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
  series.forEach((s, i) => {
    const d = s.points.map((p, j) => `${j ? 'L' : 'M'}${px(p.x).toFixed(1)},${py(Math.min(y1, Math.max(y0, p.y))).toFixed(1)}`).join('');
    parts.push(`<path d="${d}" fill="none" stroke="${PALETTE[i % PALETTE.length]}" stroke-width="2"/>`);
    const ly = m.t + 10 + i * 20;
    parts.push(
      `<line x1="${W - m.r + 12}" x2="${W - m.r + 36}" y1="${ly}" y2="${ly}" stroke="${PALETTE[i % PALETTE.length]}" stroke-width="3"/>`,
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
const stageLine = { vertical: true, x: config.options.pretrainSteps, label: 'filter fine-tuning →' };
await write(
  chart(
    [
      { name: 'positives kept', points: evals.map((e) => ({ x: e.x, y: e.positive.acc })) },
      ...Object.entries(KINDS).map(([k, name]) => ({ name: `removed: ${name}`, points: evals.map((e) => ({ x: e.x, y: e[k].acc })) })),
    ],
    { title: "held-out pairs under BLIP's rule (keep when ITM P(match) ≥ 0.5)", yLabel: 'share', yRange: [0, 1], hlines: [stageLine] },
  ),
  'rule',
);
await write(
  chart(
    Object.entries(KINDS).map(([k, name]) => ({ name: `vs ${name}`, points: evals.map((e) => ({ x: e.x, y: e[k].auc })) })),
    {
      title: 'held-out ITM ROC AUC of P(match), positives vs each negative',
      yLabel: 'ROC AUC',
      yRange: [0.4, 1],
      hlines: [stageLine, { y: 0.5, label: 'no discrimination' }],
    },
  ),
  'auc',
);

if (baselineFile) {
  const base = readRun(baselineFile);
  const at = new Map(base.evals.map((e) => [`${e.stage}/${e.step}`, e]));
  const both = evals.filter((e) => at.has(`${e.stage}/${e.step}`));
  const cols = ['stage', 'step', ...Object.values(KINDS).flatMap((k) => [`AUC vs ${k}: baseline`, 'this run'])];
  cols.push('positives kept: baseline', 'this run');
  const lines = both.map((e) => {
    const b = at.get(`${e.stage}/${e.step}`);
    return [
      e.stage,
      e.step,
      ...Object.keys(KINDS).flatMap((k) => [b[k].auc.toFixed(3), e[k].auc.toFixed(3)]),
      pct(b.positive.acc),
      pct(e.positive.acc),
    ];
  });
  writeFileSync(
    join(dir, 'compare.md'),
    [
      `<!-- written by packages/blip/scripts/scenes-report.mjs --baseline: this run ${config.command}; baseline ${base.config.command} -->`,
      '',
      `Held-out ITM at every step both runs evaluated (${config.heldOut} scenes, seed 1). Baseline: \`${base.config.command}\`. This run: \`${config.command}\`.`,
      '',
      `| ${cols.join(' | ')} |`,
      `| ${cols.map((_, i) => (i < 1 ? '---' : '---:')).join(' | ')} |`,
      ...lines.map((r) => `| ${r.join(' | ')} |`),
      '',
    ].join('\n'),
  );
  const near = { wrongAttribute: KINDS.wrongAttribute, keywordSoup: KINDS.keywordSoup };
  await write(
    chart(
      Object.entries(near).flatMap(([k, name]) => [
        { name: `baseline, vs ${name}`, points: base.evals.map((e) => ({ x: e.x, y: e[k].auc })) },
        { name: `this run, vs ${name}`, points: evals.map((e) => ({ x: e.x, y: e[k].auc })) },
      ]),
      {
        title: 'held-out ITM ROC AUC against near-misses: baseline vs this run',
        yLabel: 'ROC AUC',
        yRange: [0.4, 1],
        hlines: [stageLine, { y: 0.5, label: 'no discrimination' }],
      },
    ),
    'compare',
  );
}
console.log(`${join(dir, 'table.md')}, rule.png, auc.png${baselineFile ? ', compare.md, compare.png' : ''}`);
