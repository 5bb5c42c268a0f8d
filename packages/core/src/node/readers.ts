// Streaming dataset readers: JSONL and CSV caption lists with an image root, COCO captions in the
// Karpathy split format, and WebDataset `.tar` shards. Each yields CaptionRecords one at a time
// (memory stays constant in the dataset size) and accounts for every input record in a DataReport.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import * as tar from 'tar-stream';
import { VlError } from '../errors.js';
import { type CaptionRecord, DataReport, type DropReason } from '../data/records.js';

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

/** JSON nested deeper than this (arrays/objects) is a malformed record, not a stack overflow. */
export const MAX_JSON_DEPTH = 64;
/** A JSONL line longer than this is a malformed record (read past without being held). */
export const MAX_LINE_BYTES = 64 * 1024 * 1024;
/** A CSV field longer than this is a malformed row. */
export const MAX_CSV_FIELD_BYTES = 1024 * 1024;
/** A WebDataset member larger than this is not read into memory; its sample fails. */
export const MAX_TAR_MEMBER_BYTES = 64 * 1024 * 1024;

function decodeUtf8(bytes: Uint8Array): string | null {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

const isCont = (b: number | undefined) => b !== undefined && (b & 0xc0) === 0x80;

/**
 * UTF-8 → string where each byte of an invalid sequence becomes the lone surrogate U+DC80+byte
 * (Python's surrogateescape): valid text decodes as usual and only the strings that held bad bytes
 * are ill-formed, so one latin-1 caption can be told apart from the rest of its line.
 */
export function decodeUtf8Escaped(bytes: Uint8Array): { text: string; valid: boolean } {
  const fast = decodeUtf8(bytes);
  if (fast !== null) return { text: fast, valid: true };
  const parts: string[] = [];
  let units: number[] = [];
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i] as number;
    const b1 = bytes[i + 1];
    let cp = -1;
    let len = 1;
    if (b < 0x80) cp = b;
    else if (b >= 0xc2 && b <= 0xdf && isCont(b1)) [cp, len] = [((b & 0x1f) << 6) | ((b1 as number) & 0x3f), 2];
    else if (b >= 0xe0 && b <= 0xef && isCont(b1) && isCont(bytes[i + 2])) {
      const lo = b === 0xe0 ? 0xa0 : 0x80;
      const hi = b === 0xed ? 0x9f : 0xbf;
      if ((b1 as number) >= lo && (b1 as number) <= hi) {
        cp = ((b & 0x0f) << 12) | (((b1 as number) & 0x3f) << 6) | ((bytes[i + 2] as number) & 0x3f);
        len = 3;
      }
    } else if (b >= 0xf0 && b <= 0xf4 && isCont(b1) && isCont(bytes[i + 2]) && isCont(bytes[i + 3])) {
      const lo = b === 0xf0 ? 0x90 : 0x80;
      const hi = b === 0xf4 ? 0x8f : 0xbf;
      if ((b1 as number) >= lo && (b1 as number) <= hi) {
        const [c2, c3] = [(bytes[i + 2] as number) & 0x3f, (bytes[i + 3] as number) & 0x3f];
        cp = ((b & 0x07) << 18) | (((b1 as number) & 0x3f) << 12) | (c2 << 6) | c3;
        len = 4;
      }
    }
    if (cp < 0) units.push(0xdc00 + b);
    else if (cp > 0xffff) units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
    else units.push(cp);
    i += cp < 0 ? 1 : len;
    if (units.length >= 8192) {
      parts.push(String.fromCharCode(...units));
      units = [];
    }
  }
  parts.push(String.fromCharCode(...units));
  return { text: parts.join(''), valid: false };
}

/** A string with a lone surrogate cannot be written as UTF-8 (a bad byte, or a `\udc80` escape). */
const ILL_FORMED = /[\uD800-\uDFFF]/u;
const illFormed = (s: string) => ILL_FORMED.test(s);

/** Whether any string (or key) inside a parsed JSON value is ill-formed. */
function anyIllFormed(v: unknown): boolean {
  if (typeof v === 'string') return illFormed(v);
  if (Array.isArray(v)) return v.some(anyIllFormed);
  if (typeof v === 'object' && v !== null) return Object.entries(v).some(([k, x]) => illFormed(k) || anyIllFormed(x));
  return false;
}

/** Whether JSON text nests arrays/objects deeper than `limit` (checked before JSON.parse). */
export function jsonTooDeep(text: string, limit = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** JSON.parse with a depth limit: a malformed record instead of a stack overflow later on. */
function parseJsonRecord(text: string, what: string, errorPrefix = 'invalid JSON'): unknown {
  if (jsonTooDeep(text)) throw new BadRecord('malformed_record', `${what} nests deeper than ${MAX_JSON_DEPTH} levels`);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new BadRecord('malformed_record', `${errorPrefix}: ${(err as Error).message}`);
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

/**
 * Captions from a field value: a string or a list of strings. Empty captions and captions that are
 * not valid UTF-8 are removed one by one (counted per reason); the record fails only when none is left.
 */
function captionsFrom(value: unknown, report: DataReport, key: string): string[] {
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list)) throw new BadRecord('malformed_record', `caption is ${typeof value}, expected a string or a list of strings`);
  const out: string[] = [];
  let nonUtf8 = 0;
  for (const c of list) {
    // COCO-style sentence objects carry the text in `raw`.
    const text = typeof c === 'object' && c !== null && typeof (c as { raw?: unknown }).raw === 'string' ? (c as { raw: string }).raw : c;
    if (typeof text !== 'string') throw new BadRecord('malformed_record', `caption entry is ${typeof text}, expected a string`);
    if (illFormed(text)) nonUtf8++;
    else if (text.trim() !== '') out.push(text.trim());
    else if (list.length > 1) report.dropCaption('empty_caption', key);
  }
  if (out.length === 0) {
    if (nonUtf8 > 0) throw new BadRecord('non_utf8_caption', 'caption is not valid UTF-8');
    throw new BadRecord('empty_caption', list.length === 0 ? 'no captions' : 'caption is empty');
  }
  for (let i = 0; i < nonUtf8; i++) report.dropCaption('non_utf8_caption', key);
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
function recordFromObject(obj: unknown, spec: DatasetSpec, root: string, report: DataReport, key: string): CaptionRecord {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new BadRecord('malformed_record', 'line is not a JSON object');
  const o = obj as Record<string, unknown>;
  const capField = firstField(o, spec.captionField, CAPTION_FIELDS);
  if (capField === undefined) throw new BadRecord('missing_caption', `no caption field (${spec.captionField ?? CAPTION_FIELDS.join('/')})`);
  const imgField = firstField(o, spec.imageField, IMAGE_FIELDS);
  if (imgField === undefined) throw new BadRecord('missing_image', `no image field (${spec.imageField ?? IMAGE_FIELDS.join('/')})`);
  const imgValue = o[imgField];
  if (typeof imgValue !== 'string' || imgValue === '')
    throw new BadRecord('malformed_record', `image field '${imgField}' is not a non-empty string`);
  if (illFormed(imgValue)) throw new BadRecord('malformed_record', `image field '${imgField}' is not valid UTF-8`);
  const captions = captionsFrom(o[capField], report, key);
  const path = resolveUnder(root, imgValue, spec.allowOutsideRoot ?? false);
  const meta = { ...o };
  delete meta[capField];
  delete meta[imgField];
  return { key, image: imageAt(path, root, spec), captions, meta };
}

function imageAt(path: string, root: string, spec: DatasetSpec): CaptionRecord['image'] {
  return spec.allowOutsideRoot ? { kind: 'path', path } : { kind: 'path', path, root };
}

/** A record-level problem, or a bug/IO failure that must surface instead of being counted as data. */
function asBad(err: unknown): BadRecord {
  if (err instanceof BadRecord) return err;
  throw err;
}

// ---------------------------------------------------------------------------------------------
// JSONL

/**
 * Lines of a file as bytes (UTF-8 is checked per line, so one bad line does not poison the rest).
 * A line's pieces are joined once, when its newline arrives, so a long line costs linear time. With
 * `maxBytes`, a longer line is not held in memory: it comes back empty with `tooLong` set.
 */
export async function* readByteLines(
  path: string,
  maxBytes = Infinity,
): AsyncGenerator<{ line: number; bytes: Uint8Array; tooLong?: boolean }> {
  let parts: Buffer[] = [];
  let held = 0;
  let line = 0;
  let skipping = false;
  const join = (last: Buffer): Uint8Array => {
    const bytes = parts.length ? Buffer.concat([...parts, last]) : last;
    return bytes.length > 0 && bytes[bytes.length - 1] === 0x0d ? bytes.subarray(0, -1) : bytes;
  };
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    let start = 0;
    for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
      if (skipping || held + (nl - start) > maxBytes) yield { line: ++line, bytes: new Uint8Array(0), tooLong: true };
      else yield { line: ++line, bytes: join(chunk.subarray(start, nl)) };
      parts = [];
      held = 0;
      skipping = false;
      start = nl + 1;
    }
    if (start < chunk.length && !skipping) {
      parts.push(chunk.subarray(start));
      held += chunk.length - start;
      if (held > maxBytes) {
        parts = [];
        held = 0;
        skipping = true;
      }
    }
  }
  if (skipping) yield { line: line + 1, bytes: new Uint8Array(0), tooLong: true };
  else if (held > 0) yield { line: line + 1, bytes: join(Buffer.alloc(0)) };
}

async function* readJsonl(spec: DatasetSpec, file: string, report: DataReport): AsyncGenerator<CaptionRecord> {
  const root = resolve(spec.imageRoot ?? dirname(file));
  const name = basename(file);
  for await (const { line, bytes, tooLong } of readByteLines(file, MAX_LINE_BYTES)) {
    let b = bytes;
    if (line === 1 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) b = b.subarray(3);
    // Blank lines separate nothing and hold nothing: they are not records.
    if (!tooLong && b.every((x) => x === 0x20 || x === 0x09)) continue;
    report.read();
    const key = `${name}:${line}`;
    try {
      if (tooLong) throw new BadRecord('malformed_record', `line is longer than ${MAX_LINE_BYTES} bytes`);
      // Invalid bytes become lone surrogates: a caption holding them is removed on its own, while
      // bad bytes anywhere else (keys, image path, other fields) make the line malformed.
      const { text, valid } = decodeUtf8Escaped(b);
      const obj = parseJsonRecord(text, 'line');
      const rec = recordFromObject(obj, spec, root, report, key);
      if (!valid && anyIllFormed(rec.meta)) throw new BadRecord('malformed_record', 'line is not valid UTF-8 (outside the captions)');
      yield rec;
    } catch (err) {
      const bad = asBad(err);
      report.drop(bad.reason, key, bad.message);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// CSV

type CsvRow = { line: number; fields: Buffer[]; error?: undefined } | { line: number; fields?: undefined; error: string };

/** A growable byte buffer for one CSV field. */
class FieldBytes {
  private buf = Buffer.alloc(256);
  length = 0;

  push(b: number): void {
    if (this.length === this.buf.length) {
      const next = Buffer.alloc(this.buf.length * 2);
      this.buf.copy(next);
      this.buf = next;
    }
    this.buf[this.length++] = b;
  }

  /** Drops a trailing CR (the CR of a CRLF line end). */
  trimCr(): void {
    if (this.length > 0 && this.buf[this.length - 1] === 0x0d) this.length--;
  }

  take(): Buffer {
    const out = Buffer.from(this.buf.subarray(0, this.length));
    this.length = 0;
    return out;
  }
}

/**
 * CSV rows as bytes, read the way spreadsheets write them (RFC 4180: quoted fields may hold the
 * delimiter, newlines and doubled quotes; a UTF-8 BOM is skipped; empty lines are not rows). A
 * malformed row (a character after a closing quote, a field over MAX_CSV_FIELD_BYTES, a quote never
 * closed) comes back as one error at the line it starts on, and reading goes on after it: from the
 * next line, or for an unclosed quote from the line after the one the row started on.
 */
export async function* readCsvRows(file: string, delimiter = 0x2c): AsyncGenerator<CsvRow> {
  const QUOTE = 0x22,
    NL = 0x0a,
    CR = 0x0d;
  let startOffset = 0;
  let startLine = 1;
  for (;;) {
    let line = startLine;
    let rowLine = startLine;
    // Byte offset just after the first newline inside the current row (where to resume after an unclosed quote).
    let rowNextLine = -1;
    let state: 'start' | 'plain' | 'quoted' | 'quote' | 'skip' = 'start';
    let fields: Buffer[] = [];
    let error = '';
    const field = new FieldBytes();
    let offset = startOffset;
    let restart = -1;
    const rows: CsvRow[] = [];
    const endRow = () => {
      fields.push(field.take());
      // A line with nothing on it is not a row.
      if (!(fields.length === 1 && (fields[0] as Buffer).length === 0)) rows.push({ line: rowLine, fields });
      fields = [];
    };
    const fail = (msg: string): 'skip' => {
      error = msg;
      field.length = 0;
      fields = [];
      return 'skip';
    };
    for await (const chunk of createReadStream(file, { start: startOffset }) as AsyncIterable<Buffer>) {
      let i = 0;
      if (offset === 0 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) {
        i = 3;
        offset = 3;
      }
      for (; i < chunk.length; i++, offset++) {
        const c = chunk[i] as number;
        if (state === 'quoted') {
          if (c === QUOTE) state = 'quote';
          else {
            if (c === NL) {
              line++;
              if (rowNextLine < 0) rowNextLine = offset + 1;
            }
            field.push(c);
            if (field.length > MAX_CSV_FIELD_BYTES) {
              const msg = `quoted field longer than ${MAX_CSV_FIELD_BYTES} bytes (a quote never closed?)`;
              if (rowNextLine < 0) {
                state = fail(msg);
                continue;
              }
              restart = rowNextLine;
              rows.push({ line: rowLine, error: msg });
              break;
            }
          }
          continue;
        }
        if (c === NL) {
          if (state === 'skip') rows.push({ line: rowLine, error });
          else {
            if (state === 'plain') field.trimCr();
            endRow();
          }
          state = 'start';
          line++;
          rowLine = line;
          rowNextLine = -1;
          continue;
        }
        if (state === 'skip') continue;
        if (state === 'quote') {
          if (c === QUOTE) {
            field.push(QUOTE);
            state = 'quoted';
          } else if (c === delimiter) {
            fields.push(field.take());
            state = 'start';
          } else if (c !== CR) {
            state = fail(`character '${String.fromCharCode(c)}' after a closing quote`);
          }
          continue;
        }
        if (state === 'start' && c === QUOTE) {
          state = 'quoted';
          continue;
        }
        if (c === delimiter) {
          fields.push(field.take());
          state = 'start';
          continue;
        }
        field.push(c);
        state = 'plain';
        if (field.length > MAX_CSV_FIELD_BYTES) state = fail(`field longer than ${MAX_CSV_FIELD_BYTES} bytes`);
      }
      yield* rows.splice(0);
      if (restart >= 0) break;
    }
    if (restart < 0 && state === 'quoted') {
      yield { line: rowLine, error: 'quote never closed' };
      restart = rowNextLine;
    } else if (restart < 0) {
      if (state === 'skip') yield { line: rowLine, error };
      else if (state !== 'start' || fields.length > 0) {
        if (state === 'plain') field.trimCr();
        endRow();
        yield* rows.splice(0);
      }
    }
    if (restart < 0) return;
    startOffset = restart;
    startLine = rowLine + 1;
  }
}

async function* readCsv(spec: DatasetSpec, file: string, report: DataReport): AsyncGenerator<CaptionRecord> {
  const root = resolve(spec.imageRoot ?? dirname(file));
  const name = basename(file);
  let header: string[] | null = null;
  let imgCol = -1;
  let capCol = -1;
  for await (const row of readCsvRows(file, file.toLowerCase().endsWith('.tsv') ? 0x09 : 0x2c)) {
    if (header === null) {
      if (row.error !== undefined) throw new VlError('DATA_INVALID', `CSV header (line ${row.line}): ${row.error}`, { subject: file });
      header = row.fields.map((f) => utf8Lossy.decode(f).trim());
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
    const key = `${name}:${row.line}`;
    try {
      if (row.error !== undefined) throw new BadRecord('malformed_record', `line ${row.line}: ${row.error}`);
      const record = row.fields;
      if (record.length !== header.length) {
        throw new BadRecord('malformed_record', `line ${row.line}: ${record.length} fields, the header has ${header.length}`);
      }
      const caption = decodeUtf8(record[capCol] as Buffer);
      if (caption === null) throw new BadRecord('non_utf8_caption', 'caption is not valid UTF-8');
      if (caption.trim() === '') throw new BadRecord('empty_caption', 'caption is empty');
      const img = decodeUtf8(record[imgCol] as Buffer);
      if (img === null || img.trim() === '') throw new BadRecord('missing_image', 'image column is empty or not UTF-8');
      const path = resolveUnder(root, img.trim(), spec.allowOutsideRoot ?? false);
      const meta: Record<string, unknown> = {};
      header.forEach((h, i) => {
        if (i !== imgCol && i !== capCol) meta[h] = utf8Lossy.decode(record[i] as Buffer);
      });
      yield { key, image: imageAt(path, root, spec), captions: [caption.trim()], meta };
    } catch (err) {
      const bad = asBad(err);
      report.drop(bad.reason, key, bad.message);
    }
  }
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
  const QUOTE = 0x22,
    BSLASH = 0x5c,
    LBRACE = 0x7b,
    RBRACE = 0x7d,
    LBRACK = 0x5b,
    RBRACK = 0x5d,
    COMMA = 0x2c,
    COLON = 0x3a;
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
  if (!found)
    throw new VlError('DATA_INVALID', `no top-level "${key}" array`, {
      subject: path,
      hint: 'expected the Karpathy split format (dataset_coco.json)',
    });
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
      const { text, valid } = decodeUtf8Escaped(bytes);
      const obj = parseJsonRecord(text, 'entry');
      if (typeof obj !== 'object' || obj === null || Array.isArray(obj))
        throw new BadRecord('malformed_record', 'image entry is not an object');
      const o = obj as Record<string, unknown>;
      if (splits && !splits.has(String(o.split))) {
        report.filter();
        continue;
      }
      if (typeof o.filename !== 'string' || o.filename === '') throw new BadRecord('missing_image', 'entry has no filename');
      if (!Array.isArray(o.sentences)) throw new BadRecord('missing_caption', 'entry has no sentences');
      const captions = captionsFrom(o.sentences, report, key);
      const { sentences: _s, filename: _f, filepath: _p, ...meta } = o;
      if (!valid && anyIllFormed([o.filename, o.filepath, meta])) {
        throw new BadRecord('malformed_record', 'entry is not valid UTF-8 (outside the captions)');
      }
      const rel = typeof o.filepath === 'string' && o.filepath !== '' ? `${o.filepath}/${o.filename}` : o.filename;
      const path = resolveUnder(root, rel, spec.allowOutsideRoot ?? false);
      yield { key, image: imageAt(path, root, spec), captions, meta };
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
  /** A member over MAX_TAR_MEMBER_BYTES (not read). */
  tooLarge: { name: string; size: number; image: boolean } | null;
  /** Another sample of this shard already had this key. */
  duplicate: boolean;
}

function sampleToRecord(s: WdsSample, shard: string, report: DataReport): CaptionRecord {
  const key = `${shard}:${s.key}`;
  if (s.unsafe !== null) throw new BadRecord('unsafe_path', `tar entry '${s.unsafe}' escapes the shard root`);
  if (s.duplicate) throw new BadRecord('duplicate_key', `key '${s.key}' was already used by an earlier sample of ${shard}`);
  if (s.tooLarge !== null) {
    const { name, size, image } = s.tooLarge;
    const detail = `tar member '${name}' is ${size} bytes, over the limit of ${MAX_TAR_MEMBER_BYTES}`;
    throw new BadRecord(image ? 'image_too_large' : 'malformed_record', detail);
  }
  const imgExt = [...s.files.keys()].find((e) => IMAGE_EXTS.has(e));
  let captions: string[] | null = null;
  let meta: Record<string, unknown> = {};
  const txt = s.files.get('txt');
  const json = s.files.get('json');
  if (json !== undefined) {
    const { text, valid } = decodeUtf8Escaped(json);
    const obj = parseJsonRecord(text, '.json', '.json');
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new BadRecord('malformed_record', '.json is not an object');
    const o = obj as Record<string, unknown>;
    const field = CAPTION_FIELDS.find((f) => f in o);
    if (field !== undefined && txt === undefined) captions = captionsFrom(o[field], report, key);
    const rest = field !== undefined && txt === undefined ? Object.fromEntries(Object.entries(o).filter(([k]) => k !== field)) : o;
    if (!valid && anyIllFormed(rest)) {
      const reason = txt === undefined && field !== undefined ? 'malformed_record' : 'non_utf8_caption';
      throw new BadRecord(reason, '.json is not valid UTF-8 (outside the captions)');
    }
    meta = o;
  }
  if (txt !== undefined) {
    const text = decodeUtf8(txt);
    if (text === null) throw new BadRecord('non_utf8_caption', '.txt is not valid UTF-8');
    captions = captionsFrom(text, report, key);
  }
  if (captions === null) throw new BadRecord('missing_caption', `sample has no .txt (or .json caption): ${[...s.files.keys()].join(', ')}`);
  if (imgExt === undefined)
    throw new BadRecord('missing_image', `sample has no image (${[...IMAGE_EXTS].join('/')}): ${[...s.files.keys()].join(', ')}`);
  return { key, image: { kind: 'bytes', bytes: s.files.get(imgExt) as Uint8Array, name: `${s.key}.${imgExt}` }, captions, meta };
}

async function* readWebDatasetShard(file: string, report: DataReport): AsyncGenerator<CaptionRecord> {
  const shard = basename(file);
  const extract = tar.extract();
  const source = createReadStream(file);
  source.on('error', (err) => extract.destroy(err));
  source.pipe(extract);
  let current: WdsSample | null = null;
  // Keys of this shard's samples so far: a repeated key is a duplicate_key failure (WebDataset
  // readers would merge or shadow such samples).
  const seen = new Set<string>();
  const finish = function* (s: WdsSample | null): Generator<CaptionRecord> {
    if (s === null) return;
    report.read();
    if (seen.has(s.key)) s.duplicate = true;
    seen.add(s.key);
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
      const ext = split?.ext ?? '';
      // A new key closes the previous sample before this entry's body is read, so a shard cut
      // inside this entry still delivers the sample before it. The same key with a member it
      // already has starts another sample (with a duplicate key) instead of overwriting it.
      if (current === null || current.key !== key || current.files.has(ext) || current.tooLarge?.name === name) {
        yield* finish(current);
        current = { key, files: new Map(), unsafe: null, tooLarge: null, duplicate: false };
      }
      if (unsafeTarPath(name)) current.unsafe = name;
      const size = entry.header.size ?? 0;
      if (size > MAX_TAR_MEMBER_BYTES) {
        // Not held in memory: skipped through, and the sample fails.
        for await (const _chunk of entry) void _chunk;
        current.tooLarge = { name, size, image: IMAGE_EXTS.has(ext) };
        current.files.set(ext, new Uint8Array(0));
        continue;
      }
      const parts: Buffer[] = [];
      for await (const chunk of entry) parts.push(chunk as Buffer);
      // An entry without an extension cannot be a field of a sample; keep it under '' so the
      // sample reports what it had.
      current.files.set(ext, Buffer.concat(parts));
    }
  } catch (err) {
    // Truncated or garbled shard: what was read so far stands; the unfinished sample and the rest
    // of the shard count as one dropped record.
    report.read();
    report.drop(
      'corrupt_shard',
      shard,
      `${err instanceof Error ? err.message : String(err)}${current ? ` (in sample ${current.key})` : ''}`,
    );
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
