// Streaming dataset readers: JSONL and CSV caption lists with an image root, COCO captions in the
// Karpathy split format, and WebDataset `.tar` shards. Each yields CaptionRecords one at a time
// (memory stays constant in the dataset size) and accounts for every input record in a DataReport.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { parse as parseCsv } from 'csv-parse';
import * as tar from 'tar-stream';
import { VlError } from '../errors.js';
import { type CaptionRecord, DataReport, type DropReason } from './records.js';

export type DatasetFormat = 'jsonl' | 'csv' | 'coco-karpathy' | 'webdataset';

export interface DatasetSpec {
  format?: DatasetFormat | 'auto';
  /** A file, or for WebDataset one or more shards (`shard-{0000..0099}.tar` brace ranges work). */
  path: string | readonly string[];
  /** Folder image paths are relative to; default the folder of the list file. */
  imageRoot?: string;
  /** JSONL/CSV field holding the image path; default the first of image, image_path, file_name, filename, filepath, path. */
  imageField?: string;
  /** JSONL/CSV field holding the caption(s); default the first of captions, caption, text. */
  captionField?: string;
  /** COCO Karpathy: keep only these splits (e.g. ['train', 'restval']); others count as filtered. */
  splits?: readonly string[];
  /** Accept absolute image paths and paths leaving the root (off by default: a list file should not reach outside its dataset). */
  allowOutsideRoot?: boolean;
}

const IMAGE_FIELDS = ['image', 'image_path', 'file_name', 'filename', 'filepath', 'path'];
const CAPTION_FIELDS = ['captions', 'caption', 'text'];
const IMAGE_EXTS = new Set(['jpg', 'jpeg', 'png', 'webp']);

const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Lossy = new TextDecoder('utf-8');

function decodeUtf8(bytes: Uint8Array): string | null {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

class BadRecord extends Error {
  constructor(
    readonly reason: DropReason,
    detail: string,
  ) {
    super(detail);
  }
}

/** Captions from a field value: a string or a list of strings; empty ones are removed (and counted). */
function captionsFrom(value: unknown, report: DataReport): string[] {
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list)) throw new BadRecord('malformed_record', `caption is ${typeof value}, expected a string or a list of strings`);
  const out: string[] = [];
  let nonUtf8 = 0;
  for (const c of list) {
    // COCO-style sentence objects carry the text in `raw`.
    const text = typeof c === 'object' && c !== null && typeof (c as { raw?: unknown }).raw === 'string' ? (c as { raw: string }).raw : c;
    if (typeof text !== 'string') throw new BadRecord('malformed_record', `caption entry is ${typeof text}, expected a string`);
    if (text.includes('\uFFFD')) nonUtf8++;
    else if (text.trim() !== '') out.push(text.trim());
    else if (list.length > 1) report.dropCaption('empty_caption');
  }
  if (out.length === 0) {
    if (nonUtf8 > 0) throw new BadRecord('non_utf8_caption', 'caption is not valid UTF-8');
    throw new BadRecord('empty_caption', list.length === 0 ? 'no captions' : 'caption is empty');
  }
  for (let i = 0; i < nonUtf8; i++) report.dropCaption('non_utf8_caption');
  return out;
}

function firstField(obj: Record<string, unknown>, explicit: string | undefined, candidates: string[]): string | undefined {
  if (explicit !== undefined) return explicit in obj ? explicit : undefined;
  return candidates.find((f) => f in obj);
}

/** Resolves an image path under the root, refusing absolute paths and `..` escapes unless allowed. */
function resolveUnder(root: string, p: string, allowOutside: boolean): string {
  if (allowOutside) return resolve(root, p);
  if (isAbsolute(p) || /^[a-zA-Z]:[\\/]/.test(p)) throw new BadRecord('unsafe_path', `absolute image path '${p}'`);
  const full = resolve(root, p);
  const rel = relative(root, full);
  if (rel === '' || rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel)) {
    throw new BadRecord('unsafe_path', `image path '${p}' leaves the dataset root`);
  }
  return full;
}

/** A JSON object (JSONL line, WebDataset .json, COCO entry) → captions + image path + the rest. */
function recordFromObject(
  obj: unknown,
  spec: DatasetSpec,
  root: string,
  report: DataReport,
  key: string,
): CaptionRecord {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new BadRecord('malformed_record', 'line is not a JSON object');
  const o = obj as Record<string, unknown>;
  const capField = firstField(o, spec.captionField, CAPTION_FIELDS);
  if (capField === undefined) throw new BadRecord('missing_caption', `no caption field (${spec.captionField ?? CAPTION_FIELDS.join('/')})`);
  const imgField = firstField(o, spec.imageField, IMAGE_FIELDS);
  if (imgField === undefined) throw new BadRecord('missing_image', `no image field (${spec.imageField ?? IMAGE_FIELDS.join('/')})`);
  const imgValue = o[imgField];
  if (typeof imgValue !== 'string' || imgValue === '') throw new BadRecord('malformed_record', `image field '${imgField}' is not a non-empty string`);
  const captions = captionsFrom(o[capField], report);
  const path = resolveUnder(root, imgValue, spec.allowOutsideRoot ?? false);
  const meta = { ...o };
  delete meta[capField];
  delete meta[imgField];
  return { key, image: { kind: 'path', path }, captions, meta };
}

/** A record-level problem, or a bug/IO failure that must surface instead of being counted as data. */
function asBad(err: unknown): BadRecord {
  if (err instanceof BadRecord) return err;
  throw err;
}

// ---------------------------------------------------------------------------------------------
// JSONL

/** Lines of a file as bytes (UTF-8 is checked per line, so one bad line does not poison the rest). */
export async function* readByteLines(path: string): AsyncGenerator<{ line: number; bytes: Uint8Array }> {
  let carry: Buffer | null = null;
  let line = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    const buf: Buffer = carry ? Buffer.concat([carry, chunk]) : chunk;
    let start = 0;
    let nl = buf.indexOf(0x0a, start);
    while (nl !== -1) {
      const end = nl > start && buf[nl - 1] === 0x0d ? nl - 1 : nl;
      yield { line: ++line, bytes: buf.subarray(start, end) };
      start = nl + 1;
      nl = buf.indexOf(0x0a, start);
    }
    carry = start < buf.length ? Buffer.from(buf.subarray(start)) : null;
  }
  if (carry && carry.length > 0) yield { line: line + 1, bytes: carry.at(-1) === 0x0d ? carry.subarray(0, -1) : carry };
}

async function* readJsonl(spec: DatasetSpec, file: string, report: DataReport): AsyncGenerator<CaptionRecord> {
  const root = resolve(spec.imageRoot ?? dirname(file));
  const name = basename(file);
  for await (const { line, bytes } of readByteLines(file)) {
    let b = bytes;
    if (line === 1 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) b = b.subarray(3);
    // Blank lines separate nothing and hold nothing: they are not records.
    if (b.every((x) => x === 0x20 || x === 0x09)) continue;
    report.read();
    const key = `${name}:${line}`;
    try {
      let text = decodeUtf8(b);
      let lossy = false;
      if (text === null) {
        // Parse the lossy decode to tell a bad caption (the usual case: latin-1 text pasted into a
        // UTF-8 file) from a line that is broken anyway.
        text = utf8Lossy.decode(b);
        lossy = true;
      }
      let obj: unknown;
      try {
        obj = JSON.parse(text);
      } catch (err) {
        throw new BadRecord('malformed_record', `invalid JSON: ${(err as Error).message}`);
      }
      const rec = recordFromObject(obj, spec, root, report, key);
      if (lossy && !rec.captions.some((c) => c.includes('\uFFFD'))) {
        throw new BadRecord('malformed_record', 'line is not valid UTF-8 (outside the captions)');
      }
      yield rec;
    } catch (err) {
      const bad = asBad(err);
      report.drop(bad.reason, key, bad.message);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// CSV

async function* readCsv(spec: DatasetSpec, file: string, report: DataReport): AsyncGenerator<CaptionRecord> {
  const root = resolve(spec.imageRoot ?? dirname(file));
  const name = basename(file);
  const skipped: string[] = [];
  // encoding null: fields arrive as bytes, so each caption's UTF-8 is checked on its own. Rows
  // with an unclosed quote or the wrong number of fields are skipped by csv-parse and counted.
  const parser = createReadStream(file).pipe(
    parseCsv({
      encoding: null,
      bom: true,
      skip_empty_lines: true,
      skip_records_with_error: true,
      info: true,
      on_skip: (err) => {
        const line = (err as { lines?: number } | undefined)?.lines;
        skipped.push(`${line !== undefined ? `line ${line}: ` : ''}${err ? err.message : 'unparseable row'}`);
        return undefined;
      },
    }),
  );
  let header: string[] | null = null;
  let imgCol = -1;
  let capCol = -1;
  const flushSkipped = () => {
    for (const msg of skipped.splice(0)) {
      report.read();
      report.drop('malformed_record', `${name}`, msg);
    }
  };
  for await (const { record, info } of parser as AsyncIterable<{ record: Buffer[]; info: { lines: number } }>) {
    flushSkipped();
    if (header === null) {
      header = record.map((f) => utf8Lossy.decode(f).trim());
      imgCol = spec.imageField !== undefined ? header.indexOf(spec.imageField) : header.findIndex((h) => IMAGE_FIELDS.includes(h));
      capCol = spec.captionField !== undefined ? header.indexOf(spec.captionField) : header.findIndex((h) => CAPTION_FIELDS.includes(h));
      if (imgCol < 0 || capCol < 0) {
        throw new VlError('DATA_INVALID', `CSV header [${header.join(', ')}] lacks an image or caption column`, {
          subject: file,
          hint: 'name them image and caption, or pass imageField/captionField',
        });
      }
      continue;
    }
    report.read();
    const key = `${name}:${info.lines}`;
    try {
      const capBytes = record[capCol] as Buffer;
      const caption = decodeUtf8(capBytes);
      if (caption === null) throw new BadRecord('non_utf8_caption', 'caption is not valid UTF-8');
      if (caption.trim() === '') throw new BadRecord('empty_caption', 'caption is empty');
      const img = decodeUtf8(record[imgCol] as Buffer);
      if (img === null || img.trim() === '') throw new BadRecord('missing_image', 'image column is empty or not UTF-8');
      const path = resolveUnder(root, img.trim(), spec.allowOutsideRoot ?? false);
      const meta: Record<string, unknown> = {};
      header.forEach((h, i) => {
        if (i !== imgCol && i !== capCol) meta[h] = utf8Lossy.decode(record[i] as Buffer);
      });
      yield { key, image: { kind: 'path', path }, captions: [caption.trim()], meta };
    } catch (err) {
      const bad = asBad(err);
      report.drop(bad.reason, key, bad.message);
    }
  }
  flushSkipped();
}

// ---------------------------------------------------------------------------------------------
// COCO captions, Karpathy split format: {"images": [{"filepath", "filename", "split",
// "sentences": [{"raw", "tokens"}], "cocoid"}, …]} — streamed element by element.

/**
 * Yields the raw bytes of each element of the top-level `key` array of a JSON document without
 * parsing the whole file (dataset_coco.json is ~150 MB). A byte scanner tracks strings and depth;
 * elements are cut at depth 2 and parsed one at a time.
 */
export async function* streamJsonArrayElements(path: string, key: string): AsyncGenerator<{ index: number; bytes: Uint8Array }> {
  const QUOTE = 0x22, BSLASH = 0x5c, LBRACE = 0x7b, RBRACE = 0x7d, LBRACK = 0x5b, RBRACK = 0x5d, COMMA = 0x2c, COLON = 0x3a;
  const isWs = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
  let depth = 0;
  let inString = false;
  let escape = false;
  // A string at depth 1 is captured (it may be a key); `currentKey` is set by the ':' after it.
  let strParts: Buffer[] | null = null;
  let strStart = -1;
  let lastString: string | null = null;
  let currentKey: string | null = null;
  let inArray = false;
  let found = false;
  // The element being cut out of the array (it may span chunks).
  let capturing = false;
  let container = false;
  let elemParts: Buffer[] = [];
  let elemStart = -1;
  let index = 0;
  const cut = (chunk: Buffer, end: number): { index: number; bytes: Uint8Array } => {
    elemParts.push(chunk.subarray(elemStart, end));
    const bytes = Buffer.concat(elemParts);
    elemParts = [];
    capturing = false;
    return { index: index++, bytes };
  };
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    if (strParts) strStart = 0;
    if (capturing) elemStart = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i] as number;
      if (inString) {
        if (escape) escape = false;
        else if (c === BSLASH) escape = true;
        else if (c === QUOTE) {
          inString = false;
          if (strParts) {
            strParts.push(chunk.subarray(strStart, i));
            lastString = utf8Lossy.decode(Buffer.concat(strParts));
            strParts = null;
          }
        }
        continue;
      }
      if (inArray && depth === 2 && !capturing && !isWs(c) && c !== COMMA && c !== RBRACK) {
        capturing = true;
        container = c === LBRACE || c === LBRACK;
        elemStart = i;
      }
      if (c === QUOTE) {
        inString = true;
        if (depth === 1) {
          strParts = [];
          strStart = i + 1;
        }
      } else if (c === LBRACE || c === LBRACK) {
        depth++;
        if (depth === 2 && c === LBRACK && currentKey === key && !found) inArray = found = true;
      } else if (c === RBRACE || c === RBRACK) {
        if (inArray && depth === 2 && capturing && !container) yield cut(chunk, i);
        depth--;
        if (inArray && depth === 2 && capturing && container) yield cut(chunk, i + 1);
        else if (inArray && depth === 1) inArray = false;
      } else if (c === COLON && depth === 1) {
        currentKey = lastString;
      } else if (c === COMMA) {
        if (depth === 1) currentKey = null;
        if (inArray && depth === 2 && capturing && !container) yield cut(chunk, i);
      }
    }
    if (strParts) strParts.push(Buffer.from(chunk.subarray(strStart)));
    if (capturing) elemParts.push(Buffer.from(chunk.subarray(elemStart)));
  }
  if (!found) throw new VlError('DATA_INVALID', `no top-level "${key}" array`, { subject: path, hint: 'expected the Karpathy split format (dataset_coco.json)' });
  if (depth !== 0 || inString) throw new VlError('DATA_INVALID', 'JSON ends early (truncated file?)', { subject: path });
}

async function* readCocoKarpathy(spec: DatasetSpec, file: string, report: DataReport): AsyncGenerator<CaptionRecord> {
  const root = resolve(spec.imageRoot ?? dirname(file));
  const name = basename(file);
  const splits = spec.splits ? new Set(spec.splits) : null;
  for await (const { index, bytes } of streamJsonArrayElements(file, 'images')) {
    report.read();
    const key = `${name}#${index}`;
    try {
      const text = decodeUtf8(bytes);
      let obj: unknown;
      try {
        obj = JSON.parse(text ?? utf8Lossy.decode(bytes));
      } catch (err) {
        throw new BadRecord('malformed_record', `invalid JSON: ${(err as Error).message}`);
      }
      if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new BadRecord('malformed_record', 'image entry is not an object');
      const o = obj as Record<string, unknown>;
      if (splits && !splits.has(String(o.split))) {
        report.filter();
        continue;
      }
      if (typeof o.filename !== 'string' || o.filename === '') throw new BadRecord('missing_image', 'entry has no filename');
      if (!Array.isArray(o.sentences)) throw new BadRecord('missing_caption', 'entry has no sentences');
      const captions = captionsFrom(o.sentences, report);
      if (text === null && !captions.some((c) => c.includes('\uFFFD'))) throw new BadRecord('malformed_record', 'entry is not valid UTF-8');
      const rel = typeof o.filepath === 'string' && o.filepath !== '' ? `${o.filepath}/${o.filename}` : o.filename;
      const path = resolveUnder(root, rel, spec.allowOutsideRoot ?? false);
      const { sentences: _s, filename: _f, filepath: _p, ...meta } = o;
      yield { key, image: { kind: 'path', path }, captions, meta };
    } catch (err) {
      const bad = asBad(err);
      report.drop(bad.reason, key, bad.message);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// WebDataset: consecutive tar entries sharing a key (path up to the first dot of the file name)
// form a sample, e.g. 000123.jpg + 000123.txt (+ 000123.json).

/** `a/b/000123.seg.png` → key `a/b/000123`, ext `seg.png` (webdataset's base_plus_ext). */
export function splitWdsName(name: string): { key: string; ext: string } | null {
  const m = /^((?:.*\/|)[^./]+)\.([^/]*)$/.exec(name);
  return m ? { key: m[1] as string, ext: (m[2] as string).toLowerCase() } : null;
}

function unsafeTarPath(name: string): boolean {
  if (name.startsWith('/') || /^[a-zA-Z]:/.test(name) || name.includes('\\')) return true;
  return name.split('/').some((part) => part === '..');
}

/** `shard-{0000..0002}.tar` → three names; `{a,b}` lists too. */
export function expandBraces(pattern: string): string[] {
  const m = /\{([^{}]*)\}/.exec(pattern);
  if (!m) return [pattern];
  const [whole, body] = m as unknown as [string, string];
  const range = /^(\d+)\.\.(\d+)$/.exec(body);
  let items: string[];
  if (range) {
    const [, a, b] = range as unknown as [string, string, string];
    const width = a.length;
    items = [];
    for (let i = Number(a); i <= Number(b); i++) items.push(String(i).padStart(width, '0'));
  } else {
    items = body.split(',');
  }
  const head = pattern.slice(0, m.index);
  const tail = pattern.slice(m.index + whole.length);
  return items.flatMap((it) => expandBraces(`${head}${it}${tail}`));
}

interface WdsSample {
  key: string;
  files: Map<string, Uint8Array>;
  unsafe: string | null;
}

function sampleToRecord(s: WdsSample, shard: string, report: DataReport): CaptionRecord {
  if (s.unsafe !== null) throw new BadRecord('unsafe_path', `tar entry '${s.unsafe}' escapes the shard root`);
  const imgExt = [...s.files.keys()].find((e) => IMAGE_EXTS.has(e));
  let captions: string[] | null = null;
  let meta: Record<string, unknown> = {};
  const txt = s.files.get('txt');
  const json = s.files.get('json');
  if (json !== undefined) {
    const text = decodeUtf8(json);
    if (text === null) throw new BadRecord('non_utf8_caption', '.json is not valid UTF-8');
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (err) {
      throw new BadRecord('malformed_record', `.json: ${(err as Error).message}`);
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new BadRecord('malformed_record', '.json is not an object');
    const o = obj as Record<string, unknown>;
    const field = CAPTION_FIELDS.find((f) => f in o);
    if (field !== undefined && txt === undefined) captions = captionsFrom(o[field], report);
    meta = o;
  }
  if (txt !== undefined) {
    const text = decodeUtf8(txt);
    if (text === null) throw new BadRecord('non_utf8_caption', '.txt is not valid UTF-8');
    captions = captionsFrom(text, report);
  }
  if (captions === null) throw new BadRecord('missing_caption', `sample has no .txt (or .json caption): ${[...s.files.keys()].join(', ')}`);
  if (imgExt === undefined) throw new BadRecord('missing_image', `sample has no image (${[...IMAGE_EXTS].join('/')}): ${[...s.files.keys()].join(', ')}`);
  return { key: `${shard}:${s.key}`, image: { kind: 'bytes', bytes: s.files.get(imgExt) as Uint8Array, name: `${s.key}.${imgExt}` }, captions, meta };
}

async function* readWebDatasetShard(file: string, report: DataReport): AsyncGenerator<CaptionRecord> {
  const shard = basename(file);
  const extract = tar.extract();
  const source = createReadStream(file);
  source.on('error', (err) => extract.destroy(err));
  source.pipe(extract);
  let current: WdsSample | null = null;
  const finish = function* (s: WdsSample | null): Generator<CaptionRecord> {
    if (s === null) return;
    report.read();
    try {
      yield sampleToRecord(s, shard, report);
    } catch (err) {
      const bad = asBad(err);
      report.drop(bad.reason, `${shard}:${s.key}`, bad.message);
    }
  };
  try {
    for await (const entry of extract) {
      const name = entry.header.name;
      if (entry.header.type !== 'file' && entry.header.type !== 'contiguous-file') {
        entry.resume();
        continue;
      }
      const split = splitWdsName(name.replace(/^\.\//, ''));
      const key = split?.key ?? name;
      // A new key closes the previous sample before this entry's body is read, so a shard cut
      // inside this entry still delivers the sample before it.
      if (current === null || current.key !== key) {
        yield* finish(current);
        current = { key, files: new Map(), unsafe: null };
      }
      const parts: Buffer[] = [];
      for await (const chunk of entry) parts.push(chunk as Buffer);
      if (unsafeTarPath(name)) current.unsafe = name;
      // An entry without an extension cannot be a field of a sample; keep it under '' so the
      // sample reports what it had.
      current.files.set(split?.ext ?? '', Buffer.concat(parts));
    }
  } catch (err) {
    // Truncated or garbled shard: what was read so far stands; the unfinished sample and the rest
    // of the shard count as one dropped record.
    report.read();
    report.drop('corrupt_shard', shard, `${err instanceof Error ? err.message : String(err)}${current ? ` (in sample ${current.key})` : ''}`);
    return;
  } finally {
    // Also on an early `break` by the consumer: close the file.
    source.destroy();
  }
  yield* finish(current);
}

// ---------------------------------------------------------------------------------------------

export function detectFormat(path: string): DatasetFormat {
  const p = path.toLowerCase();
  if (p.endsWith('.jsonl') || p.endsWith('.ndjson')) return 'jsonl';
  if (p.endsWith('.csv') || p.endsWith('.tsv')) return 'csv';
  if (p.endsWith('.tar') || p.includes('.tar{') || /\{[^}]*\}\.tar$/.test(p)) return 'webdataset';
  if (p.endsWith('.json')) return 'coco-karpathy';
  throw new VlError('DATA_INVALID', `cannot tell the dataset format of '${path}'`, {
    subject: path,
    hint: 'use .jsonl, .csv, .json (COCO Karpathy) or .tar shards, or pass format',
  });
}

/** Every record of a dataset, streamed; bad records are counted in `report` and skipped. */
export async function* readDataset(spec: DatasetSpec, report: DataReport = new DataReport()): AsyncGenerator<CaptionRecord> {
  const paths = (typeof spec.path === 'string' ? [spec.path] : [...spec.path]).flatMap(expandBraces);
  if (paths.length === 0) throw new VlError('INVALID_ARGUMENT', 'no dataset path given');
  const format = spec.format === undefined || spec.format === 'auto' ? detectFormat(paths[0] as string) : spec.format;
  for (const file of paths) {
    const st = await stat(file).catch(() => null);
    if (!st?.isFile()) throw new VlError('DATA_INVALID', 'dataset file not found', { subject: file });
    if (format === 'jsonl') yield* readJsonl(spec, file, report);
    else if (format === 'csv') yield* readCsv(spec, file, report);
    else if (format === 'coco-karpathy') yield* readCocoKarpathy(spec, file, report);
    else yield* readWebDatasetShard(file, report);
  }
}
