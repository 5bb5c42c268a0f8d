// CapFilt outputs from the ordered stream of record results: the cleaned dataset in the input's
// format (JSONL, CSV, COCO Karpathy JSON; WebDataset input is written as JSONL), records.jsonl (one
// line per input record), report.json / report.md, score histograms and a sample grid (PNG via SVG).
// Nothing depends on timing or batching, so reruns, resumes and merged shards give identical bytes.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import * as tar from 'tar-stream';
import { readImageFile, type WriteChunk, writeFileAtomic } from '@vl/core/node';
import { inputItems, type InputItem } from './pipeline.js';
import { writeNamed } from './write-named.js';
import sharp from 'sharp';
import type { JournalHeader, RecordResult, RecordStatus } from './journal.js';

const BINS = 20;
const SAMPLES = 8;
const EXAMPLES_PER_REASON = 5;

export interface CapfiltReport {
  input: number;
  threshold: number;
  counts: Record<RecordStatus, number>;
  failed: Record<string, number>;
  captions: { original: number; originalKept: number; originalRemoved: number; synthetic: number; syntheticKept: number; written: number };
  histograms: { bins: number; original: { kept: number[]; removed: number[] }; synthetic: { kept: number[]; removed: number[] } };
  failures: { key: string; reason: string; detail: string }[];
  /** input = kept + replaced + dropped + failed = the records the source holds for this run. */
  balanced: boolean;
  /** Original captions removed before scoring, per reason (only when there were any). */
  removedCaptions?: Record<string, number>;
}

const enc = (s: string) => Buffer.from(s, 'utf8');

function csvField(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function tokens(s: string): string[] {
  return s
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s]/gu, ' ')
    .split(/\s+/)
    .filter(Boolean);
}

export function datasetFileName(header: Pick<JournalHeader, 'format' | 'dataName'>): string {
  if (header.format === 'webdataset') return 'cleaned.tar';
  return header.dataName;
}

/** Written last, removed first: the outputs in the folder are complete exactly when it exists. */
export const DONE_FILE = 'capfilt.done.json';

/** An output being written under a temp name in the output folder; `commit` renames the set into place. */
class PendingFile {
  private constructor(
    readonly name: string,
    readonly path: string,
    readonly tmp: string,
    private readonly handle: FileHandle,
  ) {}

  size = 0;

  static async open(out: string, name: string): Promise<PendingFile> {
    const path = join(out, name);
    const tmp = join(out, `.${name}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    const handle = await writeNamed(name, tmp, () => open(tmp, 'wx'));
    return new PendingFile(name, path, tmp, handle);
  }

  /** Opens `name` and lets `fill` stream into it; closed (fsync'd) when fill resolves. */
  static async write(out: string, name: string, fill: (write: WriteChunk) => Promise<void>): Promise<PendingFile> {
    const f = await PendingFile.open(out, name);
    try {
      await fill((c) => f.write(c));
      await f.close();
    } catch (err) {
      await f.discard();
      throw err;
    }
    return f;
  }

  async write(chunk: Uint8Array): Promise<void> {
    await writeNamed(this.name, this.tmp, async () => {
      let n = 0;
      while (n < chunk.length) n += (await this.handle.write(chunk, n, chunk.length - n)).bytesWritten;
    });
    this.size += chunk.length;
  }

  async close(): Promise<void> {
    await writeNamed(this.name, this.tmp, async () => {
      await this.handle.sync();
      await this.handle.close();
    });
  }

  async discard(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await rm(this.tmp, { force: true });
  }
}

/**
 * Renames every pending file into place, then writes the DONE_FILE marker. When a rename fails,
 * every output of the set is removed, so the folder holds the whole set or none of it.
 */
async function commit(out: string, files: readonly PendingFile[]): Promise<void> {
  const done: PendingFile[] = [];
  try {
    for (const f of files) {
      await writeNamed(f.name, f.path, () => rename(f.tmp, f.path));
      done.push(f);
    }
  } catch (err) {
    // The set is incomplete: none of it stays, neither the new files renamed so far nor the old
    // ones they were to replace (the marker is already gone).
    for (const f of files) {
      await rm(f.path, { force: true }).catch(() => undefined);
      await rm(f.tmp, { force: true }).catch(() => undefined);
    }
    throw err;
  }
  const marker = { complete: true, files: Object.fromEntries(files.map((f) => [f.name, f.size])) };
  const markerPath = join(out, DONE_FILE);
  await writeNamed(DONE_FILE, markerPath, () => writeFileAtomic(markerPath, (w) => w(enc(`${JSON.stringify(marker, null, 2)}\n`))));
}

/** Whether `dir` holds a complete set of CapFilt outputs. */
export function outputsComplete(dir: string): boolean {
  return existsSync(join(dir, DONE_FILE));
}

const finite = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/**
 * Writes everything from `results` (ordered by input position). Returns the report. `expected` is
 * the number of records the source holds for this run (the first pass's count): the report is
 * balanced only when records.jsonl has exactly that many and every one has one status.
 */
export async function writeOutputs(
  results: AsyncIterable<RecordResult>,
  header: Pick<JournalHeader, 'format' | 'dataName' | 'root' | 'threshold' | 'data'>,
  out: string,
  expected: number,
): Promise<CapfiltReport> {
  const report: CapfiltReport = {
    input: 0,
    threshold: header.threshold,
    counts: { kept: 0, replaced: 0, dropped: 0, failed: 0 },
    failed: {},
    captions: { original: 0, originalKept: 0, originalRemoved: 0, synthetic: 0, syntheticKept: 0, written: 0 },
    histograms: {
      bins: BINS,
      original: { kept: new Array<number>(BINS).fill(0), removed: new Array<number>(BINS).fill(0) },
      synthetic: { kept: new Array<number>(BINS).fill(0), removed: new Array<number>(BINS).fill(0) },
    },
    failures: [],
    balanced: false,
  };
  const samples: RecordResult[] = [];
  const bin = (s: number) => Math.min(BINS - 1, Math.max(0, Math.floor(s * BINS)));
  const format = header.format;
  const datasetName = datasetFileName(header);
  let lastIndex = -1;
  await rm(join(out, DONE_FILE), { force: true });
  const pending: PendingFile[] = [];
  const removedCaptions: Record<string, number> = {};
  try {
    const records = await PendingFile.open(out, 'records.jsonl');
    pending.push(records);
    const tarOut = format === 'webdataset' ? await TarWriter.open(out, datasetName, header.data) : null;
    const fill = async (write: (c: Uint8Array) => Promise<void>) => {
      let first = true;
      if (format === 'csv') await write(enc('image,caption\n'));
      if (format === 'coco-karpathy') await write(enc('{"images":[\n'));
      for await (const r of results) {
        if (r.index <= lastIndex) throw new Error(`record ${r.index} (${r.key}) out of order or duplicated`);
        lastIndex = r.index;
        report.input++;
        report.counts[r.status]++;
        await records.write(
          enc(`${JSON.stringify({ index: r.index, key: r.key, status: r.status, ...(r.reason ? { reason: r.reason } : {}) })}\n`),
        );
        for (const reason of r.removedCaptions ?? []) removedCaptions[reason] = (removedCaptions[reason] ?? 0) + 1;
        if (r.status === 'failed') {
          const reason = r.reason ?? 'unknown';
          report.failed[reason] = (report.failed[reason] ?? 0) + 1;
          if (report.failures.filter((f) => f.reason === reason).length < EXAMPLES_PER_REASON)
            report.failures.push({ key: r.key, reason, detail: r.detail ?? '' });
          continue;
        }
        for (const c of r.original ?? []) {
          report.captions.original++;
          if (c.kept) report.captions.originalKept++;
          else report.captions.originalRemoved++;
          const h = report.histograms.original[c.kept ? 'kept' : 'removed'];
          if (finite(c.score)) h[bin(c.score)] = (h[bin(c.score)] ?? 0) + 1;
        }
        for (const c of r.synthetic ?? []) {
          report.captions.synthetic++;
          if (c.kept) report.captions.syntheticKept++;
          const h = report.histograms.synthetic[c.kept ? 'kept' : 'removed'];
          if (finite(c.score)) h[bin(c.score)] = (h[bin(c.score)] ?? 0) + 1;
        }
        if (samples.length < SAMPLES) samples.push(r);
        if (r.status === 'dropped') continue;
        const captions = [...(r.original ?? []), ...(r.synthetic ?? [])].filter((c) => c.kept).map((c) => c.text);
        report.captions.written += captions.length;
        const image = r.image ?? '';
        if (tarOut) {
          await tarOut.add(r, captions);
        } else if (format === 'csv') {
          for (const c of captions) await write(enc(`${csvField(image)},${csvField(c)}\n`));
        } else if (format === 'coco-karpathy') {
          const dir = posix.dirname(image);
          const entry = {
            ...(r.meta ?? {}),
            ...(dir !== '.' ? { filepath: dir } : {}),
            filename: posix.basename(image),
            sentences: captions.map((raw) => ({ raw, tokens: tokens(raw) })),
          };
          await write(enc(`${first ? '' : ',\n'}${JSON.stringify(entry)}`));
          first = false;
        } else {
          await write(enc(`${JSON.stringify({ ...(r.meta ?? {}), image, captions })}\n`));
        }
      }
      if (format === 'coco-karpathy') await write(enc(`${first ? '' : '\n'}]}\n`));
    };
    if (tarOut) {
      pending.push(tarOut.file);
      await fill(async () => {});
      await tarOut.finish();
    } else {
      pending.push(await PendingFile.write(out, datasetName, fill));
    }
    await records.close();
    const c = report.counts;
    report.balanced = report.input === expected && report.input === c.kept + c.replaced + c.dropped + c.failed;
    if (Object.keys(removedCaptions).length) report.removedCaptions = removedCaptions;
    pending.push(await PendingFile.write(out, 'report.json', (w) => w(enc(`${JSON.stringify(report, null, 2)}\n`))));
    pending.push(await PendingFile.write(out, 'report.md', (w) => w(enc(reportMarkdown(report, datasetName)))));
    const hist = await sharp(Buffer.from(histogramSvg(report)))
      .png({ compressionLevel: 9 })
      .toBuffer();
    pending.push(await PendingFile.write(out, 'histograms.png', (w) => w(hist)));
    const grid = await renderSampleGrid(samples, header.root);
    pending.push(await PendingFile.write(out, 'samples.png', (w) => w(grid)));
  } catch (err) {
    for (const f of pending) await f.discard();
    throw err;
  }
  // The dataset first and records.jsonl next, as before; the marker after all of them.
  const order = [datasetName, 'records.jsonl', 'report.json', 'report.md', 'histograms.png', 'samples.png'];
  await commit(
    out,
    order.map((n) => pending.find((f) => f.name === n) as PendingFile),
  );
  return report;
}

/** `shard-0000.tar:000123` → `shard-0000`: the folder a sample's members get in cleaned.tar. */
export function cleanedKeyPrefix(recordKey: string): string {
  const shard = recordKey.slice(0, recordKey.indexOf(':'));
  return shard.replace(/\.tar$/i, '');
}

/**
 * The cleaned WebDataset shard: for each written record its image (bytes re-read from the input
 * shards, walked in step with the results) and `<key>.json` = the sample's json fields + `captions`.
 */
class TarWriter {
  private constructor(
    readonly file: PendingFile,
    private readonly pack: tar.Pack,
    private readonly done: Promise<void>,
    private readonly input: AsyncGenerator<InputItem>,
  ) {}

  static async open(out: string, name: string, data: readonly string[]): Promise<TarWriter> {
    const file = await PendingFile.open(out, name);
    const pack = tar.pack();
    const done = (async () => {
      for await (const chunk of pack as AsyncIterable<Buffer>) await file.write(chunk);
    })();
    done.catch(() => undefined);
    return new TarWriter(file, pack, done, inputItems(data, undefined));
  }

  private entry(name: string, bytes: Uint8Array): Promise<void> {
    return new Promise((res, rej) =>
      this.pack.entry({ name, size: bytes.length, mtime: new Date(0) }, Buffer.from(bytes), (err) => (err ? rej(err) : res())),
    );
  }

  async add(r: RecordResult, captions: string[]): Promise<void> {
    let item: InputItem | undefined;
    for (;;) {
      const next = await this.input.next();
      if (next.done) throw new Error(`input ended before record ${r.index} (${r.key}): the shards changed since the run`);
      if (next.value.index === r.index) {
        item = next.value;
        break;
      }
    }
    const rec = item.record;
    if (!rec || rec.image.kind !== 'bytes')
      throw new Error(`record ${r.index} (${r.key}) is not a WebDataset sample any more: the shards changed since the run`);
    // Keys are prefixed by the input shard's name (`shard-0000/000123`): two shards numbered from
    // 000000 stay apart, and a key appears once in cleaned.tar.
    const name = `${cleanedKeyPrefix(rec.key)}/${rec.image.name}`;
    const dot = name.lastIndexOf('.');
    await this.entry(name, rec.image.bytes);
    await this.entry(`${name.slice(0, dot)}.json`, enc(JSON.stringify({ ...(r.meta ?? {}), captions })));
  }

  async finish(): Promise<void> {
    this.pack.finalize();
    await this.done;
    await this.file.close();
  }
}

const pct = (a: number, b: number) => (b ? `${((100 * a) / b).toFixed(1)}%` : '–');

export function reportMarkdown(r: CapfiltReport, dataset: string): string {
  const c = r.counts;
  const lines = [
    '# CapFilt report',
    '',
    `Threshold: filter score ≥ ${r.threshold}. Cleaned dataset: \`${dataset}\`; one line per input record in \`records.jsonl\`.`,
    '',
    '| records | count | share |',
    '|---|---:|---:|',
    `| input | ${r.input} | 100% |`,
    ...(['kept', 'replaced', 'dropped', 'failed'] as const).map((k) => `| ${k} | ${c[k]} | ${pct(c[k], r.input)} |`),
    '',
    `Counts add up: ${r.balanced ? 'yes' : '**no**'}.`,
    '',
    '| captions | count |',
    '|---|---:|',
    `| original | ${r.captions.original} |`,
    `| original kept | ${r.captions.originalKept} (${pct(r.captions.originalKept, r.captions.original)}) |`,
    `| original removed | ${r.captions.originalRemoved} |`,
    `| synthetic | ${r.captions.synthetic} |`,
    `| synthetic kept | ${r.captions.syntheticKept} (${pct(r.captions.syntheticKept, r.captions.synthetic)}) |`,
    `| written | ${r.captions.written} |`,
    ...Object.entries(r.removedCaptions ?? {}).map(([k, v]) => `| original removed before scoring: ${k} | ${v} |`),
    '',
  ];
  const reasons = Object.entries(r.failed).sort(([a], [b]) => a.localeCompare(b));
  if (reasons.length) {
    lines.push('| failed: reason | count |', '|---|---:|', ...reasons.map(([k, v]) => `| ${k} | ${v} |`), '', 'Examples:', '');
    for (const f of r.failures) lines.push(`- \`${printable(f.key)}\` ${f.reason}: ${printable(f.detail.replace(/\n/g, ' '))}`);
    lines.push('');
  }
  lines.push('![score histograms](histograms.png)', '', '![samples: original vs kept captions](samples.png)', '');
  return lines.join('\n');
}

/** Control characters (C0 but tab, DEL, C1), lone surrogates and non-characters, which XML and terminals cannot show. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNPRINTABLE = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\uFFFE\uFFFF]|[\uD800-\uDFFF]/gu;

/** Makes text safe to show: every unprintable character becomes its `\uXXXX` escape. */
export function printable(s: string): string {
  return s.replace(UNPRINTABLE, (c) => `\\u${(c.codePointAt(0) as number).toString(16).padStart(4, '0')}`);
}

const esc = (s: string) => printable(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function histogramSvg(r: CapfiltReport): string {
  const W = 420;
  const H = 220;
  const panel = (title: string, h: { kept: number[]; removed: number[] }, x0: number) => {
    const max = Math.max(1, ...h.kept.map((k, i) => k + (h.removed[i] ?? 0)));
    const pw = W - 60;
    const ph = H - 70;
    const bw = pw / BINS;
    const parts = [`<text x="${x0 + W / 2}" y="22" font-family="sans-serif" font-size="14" text-anchor="middle">${esc(title)}</text>`];
    for (let i = 0; i < BINS; i++) {
      const kept = h.kept[i] ?? 0;
      const removed = h.removed[i] ?? 0;
      const hk = (kept / max) * ph;
      const hr = (removed / max) * ph;
      const x = x0 + 40 + i * bw;
      const base = 40 + ph;
      if (removed)
        parts.push(
          `<rect x="${x.toFixed(1)}" y="${(base - hr).toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${hr.toFixed(1)}" fill="#d9534f"/>`,
        );
      if (kept)
        parts.push(
          `<rect x="${x.toFixed(1)}" y="${(base - hr - hk).toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${hk.toFixed(1)}" fill="#5cb85c"/>`,
        );
    }
    const tx = x0 + 40 + r.threshold * pw;
    parts.push(
      `<line x1="${x0 + 40}" y1="${40 + ph}" x2="${x0 + 40 + pw}" y2="${40 + ph}" stroke="#333"/>`,
      `<line x1="${tx.toFixed(1)}" y1="34" x2="${tx.toFixed(1)}" y2="${40 + ph}" stroke="#000" stroke-dasharray="4 3"/>`,
      `<text x="${x0 + 40}" y="${56 + ph}" font-family="sans-serif" font-size="11">0</text>`,
      `<text x="${x0 + 40 + pw}" y="${56 + ph}" font-family="sans-serif" font-size="11" text-anchor="end">1</text>`,
      `<text x="${x0 + 40 + pw / 2}" y="${56 + ph}" font-family="sans-serif" font-size="11" text-anchor="middle">filter score (threshold ${r.threshold})</text>`,
      `<text x="${x0 + 36}" y="46" font-family="sans-serif" font-size="11" text-anchor="end">${max}</text>`,
    );
    return parts.join('');
  };
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H}"><rect width="100%" height="100%" fill="white"/>${panel('original captions (green kept, red removed)', r.histograms.original, 0)}${panel('synthetic captions', r.histograms.synthetic, W)}</svg>`;
}

const MIME: Record<string, string> = { '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.webp': 'image/webp' };

const score2 = (x: unknown) => (finite(x) ? x.toFixed(2) : String(x));

/** The sample grid as PNG; when drawing fails it says so in the picture instead of losing the run. */
async function renderSampleGrid(samples: readonly RecordResult[], root: string): Promise<Buffer> {
  try {
    return await sharp(Buffer.from(await sampleGridSvg(samples, root)))
      .png({ compressionLevel: 9 })
      .toBuffer();
  } catch (err) {
    const msg = esc(clip((err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '', 120));
    const text = `<text x="10" y="30" font-family="sans-serif" font-size="14">sample grid could not be drawn: ${msg}</text>`;
    const page = '<svg xmlns="http://www.w3.org/2000/svg" width="900" height="60"><rect width="100%" height="100%" fill="white"/>';
    const svg = `${page}${text}</svg>`;
    return sharp(Buffer.from(svg)).png({ compressionLevel: 9 }).toBuffer();
  }
}

function clip(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

async function sampleGridSvg(samples: readonly RecordResult[], root: string): Promise<string> {
  const rowH = 110;
  const W = 900;
  const rows: string[] = [];
  for (const [i, r] of samples.entries()) {
    const y = i * rowH;
    const path = r.image ? join(root, r.image) : '';
    let img = `<rect x="8" y="${y + 8}" width="94" height="94" fill="#ddd"/>`;
    if (path && existsSync(path)) {
      try {
        // Read as the run read it (inside the root, regular files only, size cap), then re-encoded
        // to a 94×94 PNG so any input format (and odd sizes) embeds the same way.
        const png = await sharp(await readImageFile(path, { root }))
          .resize(94, 94, { fit: 'fill' })
          .png()
          .toBuffer();
        img = `<image x="8" y="${y + 8}" width="94" height="94" href="data:${MIME['.png']};base64,${png.toString('base64')}"/>`;
      } catch {
        // keep the grey box: the sample grid is a picture, not a check
      }
    }
    const lines = [
      `<text x="112" y="${y + 22}" font-family="sans-serif" font-size="13" font-weight="bold">${esc(clip(`${r.key} — ${r.status}`, 100))}</text>`,
    ];
    let ly = y + 40;
    for (const c of r.original ?? []) {
      if (ly > y + rowH - 6) break;
      lines.push(
        `<text x="112" y="${ly}" font-family="sans-serif" font-size="12" fill="${c.kept ? '#2e7d32' : '#c62828'}">${esc(clip(`${c.kept ? '✓' : '✗'} original ${score2(c.score)}: ${c.text}`, 120))}</text>`,
      );
      ly += 16;
    }
    for (const c of r.synthetic ?? []) {
      if (ly > y + rowH - 6) break;
      lines.push(
        `<text x="112" y="${ly}" font-family="sans-serif" font-size="12" fill="${c.kept ? '#1565c0' : '#9e9e9e'}">${esc(clip(`${c.kept ? '✓' : '✗'} synthetic ${score2(c.score)}: ${c.text}`, 120))}</text>`,
      );
      ly += 16;
    }
    rows.push(img, ...lines, `<line x1="0" y1="${y + rowH}" x2="${W}" y2="${y + rowH}" stroke="#eee"/>`);
  }
  const H = Math.max(1, samples.length) * rowH;
  if (samples.length === 0) rows.push('<text x="10" y="30" font-family="sans-serif" font-size="14">no scored records</text>');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><rect width="100%" height="100%" fill="white"/>${rows.join('')}</svg>`;
}
