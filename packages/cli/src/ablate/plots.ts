// Ablation plots as SVG (line chart of loss curves, bar chart with error bars), rendered to PNG
// with sharp (librsvg). Hand-written SVG: vega/resvg are not installed here, sharp is (via @vl/core).
import { writeFile } from 'node:fs/promises';
import sharp from 'sharp';

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) ticks.push(Number(v.toPrecision(10)));
  return ticks;
}

const tickLabel = (v: number) => (Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(Math.abs(v) < 1 ? 2 : 1));

export interface LineSeries {
  name: string;
  points: { x: number; y: number }[];
}

/** EMA smoothing (TensorBoard-style) for noisy per-step losses. */
export function smooth(points: readonly { x: number; y: number }[], weight = 0.9): { x: number; y: number }[] {
  let last = points[0]?.y ?? 0;
  return points.map((p) => {
    last = last * weight + p.y * (1 - weight);
    return { x: p.x, y: last };
  });
}

export function lineChartSvg(
  series: readonly LineSeries[],
  options: { title: string; xLabel: string; yLabel: string; width?: number; height?: number },
): string {
  const W = options.width ?? 900;
  const H = options.height ?? 520;
  const m = { l: 70, r: 230, t: 50, b: 60 };
  const xs = series.flatMap((s) => s.points.map((p) => p.x));
  const ys = series.flatMap((s) => s.points.map((p) => p.y)).filter(Number.isFinite);
  const x0 = Math.min(...xs, 0);
  const x1 = Math.max(...xs, 1);
  let y0 = Math.min(...ys);
  let y1 = Math.max(...ys);
  if (!(y1 > y0)) {
    y0 -= 1;
    y1 += 1;
  }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const px = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const py = (y: number) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="DejaVu Sans, sans-serif" font-size="13">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${m.l}" y="28" font-size="16">${esc(options.title)}</text>`,
  ];
  for (const t of niceTicks(y0, y1)) {
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${py(t)}" y2="${py(t)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.l - 8}" y="${py(t) + 4}" text-anchor="end">${tickLabel(t)}</text>`);
  }
  for (const t of niceTicks(x0, x1)) parts.push(`<text x="${px(t)}" y="${H - m.b + 20}" text-anchor="middle">${tickLabel(t)}</text>`);
  parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${H - m.b}" y2="${H - m.b}" stroke="#333"/>`);
  parts.push(`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${H - m.b}" stroke="#333"/>`);
  parts.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 15}" text-anchor="middle">${esc(options.xLabel)}</text>`);
  parts.push(`<text transform="translate(18 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(options.yLabel)}</text>`);
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    const d = s.points
      .filter((p) => Number.isFinite(p.y))
      .map((p, j) => `${j ? 'L' : 'M'}${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`)
      .join('');
    parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
    const ly = m.t + 10 + i * 22;
    parts.push(`<line x1="${W - m.r + 15}" x2="${W - m.r + 40}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="3"/>`);
    parts.push(`<text x="${W - m.r + 46}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

export interface Bar {
  name: string;
  mean: number;
  std: number;
}

export function barChartSvg(
  groups: readonly { metric: string; bars: readonly Bar[] }[],
  options: { title: string; yLabel: string; width?: number; height?: number },
): string {
  const W = options.width ?? 900;
  const H = options.height ?? 520;
  const m = { l: 70, r: 230, t: 50, b: 60 };
  const names = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.name)))];
  const top = Math.max(1, ...groups.flatMap((g) => g.bars.map((b) => b.mean + b.std)));
  const y1 = top * 1.08;
  const py = (y: number) => H - m.b - (Math.max(0, y) / y1) * (H - m.t - m.b);
  const groupW = (W - m.l - m.r) / Math.max(1, groups.length);
  const barW = (groupW * 0.8) / Math.max(1, names.length);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="DejaVu Sans, sans-serif" font-size="13">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${m.l}" y="28" font-size="16">${esc(options.title)}</text>`,
  ];
  for (const t of niceTicks(0, y1)) {
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${py(t)}" y2="${py(t)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.l - 8}" y="${py(t) + 4}" text-anchor="end">${tickLabel(t)}</text>`);
  }
  parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${H - m.b}" y2="${H - m.b}" stroke="#333"/>`);
  parts.push(`<text transform="translate(18 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(options.yLabel)}</text>`);
  groups.forEach((g, gi) => {
    const gx = m.l + gi * groupW + groupW * 0.1;
    g.bars.forEach((b) => {
      const i = names.indexOf(b.name);
      const x = gx + i * barW;
      const color = PALETTE[i % PALETTE.length]!;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${py(b.mean).toFixed(1)}" width="${(barW * 0.9).toFixed(1)}" height="${(H - m.b - py(b.mean)).toFixed(1)}" fill="${color}"/>`,
      );
      const cx = x + barW * 0.45;
      parts.push(`<line x1="${cx}" x2="${cx}" y1="${py(b.mean - b.std)}" y2="${py(b.mean + b.std)}" stroke="#222" stroke-width="1.5"/>`);
      parts.push(
        `<line x1="${cx - 4}" x2="${cx + 4}" y1="${py(b.mean + b.std)}" y2="${py(b.mean + b.std)}" stroke="#222" stroke-width="1.5"/>`,
      );
      parts.push(
        `<line x1="${cx - 4}" x2="${cx + 4}" y1="${py(b.mean - b.std)}" y2="${py(b.mean - b.std)}" stroke="#222" stroke-width="1.5"/>`,
      );
    });
    parts.push(`<text x="${gx + groupW * 0.4}" y="${H - m.b + 20}" text-anchor="middle">${esc(g.metric)}</text>`);
  });
  names.forEach((n, i) => {
    const ly = m.t + 10 + i * 22;
    parts.push(`<rect x="${W - m.r + 15}" y="${ly - 7}" width="16" height="14" fill="${PALETTE[i % PALETTE.length]}"/>`);
    parts.push(`<text x="${W - m.r + 38}" y="${ly + 4}">${esc(n)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** Writes `path` (.png) from SVG text, and the SVG beside it. */
export async function writePng(svg: string, path: string): Promise<void> {
  await writeFile(path.replace(/\.png$/, '.svg'), svg);
  await sharp(Buffer.from(svg)).png().toFile(path);
}
