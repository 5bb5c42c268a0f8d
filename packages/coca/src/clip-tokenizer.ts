// open_clip's `SimpleTokenizer` (open_clip/tokenizer.py, clean='lower'): byte-level BPE over the merges
// file `bpe_simple_vocab_16e6.txt.gz`. The vocabulary is the 256 byte symbols, the same with `</w>`, one
// token per merge (file lines 1 … 48894, line 0 is a header), then `<start_of_text>` and
// `<end_of_text>` — 49406 and 49407 with the full file, the end of the vocabulary as text.ts's layout
// expects. Text is HTML-unescaped twice, whitespace-collapsed and lowercased; open_clip also runs
// ftfy.fix_text first (mojibake repair), which is not ported: clean UTF-8 text gives the same ids.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { VlError } from '@vl/core';

export const CLIP_BPE_FILE = 'bpe_simple_vocab_16e6.txt.gz';
/** open_clip keeps merges[1 : 49152 − 256 − 2 + 1]. */
const MAX_MERGES = 49152 - 256 - 2;
const SPECIALS = ['<start_of_text>', '<end_of_text>'];
// open_clip's pattern (the `regex` module's \p classes), IGNORECASE; specials first so they stay whole.
const PATTERN = /<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

/** GPT-2's byte → printable character table (`bytes_to_unicode`). */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const table = new Array<string>(256);
  for (const b of bs) table[b] = String.fromCodePoint(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (table[b] === undefined) table[b] = String.fromCodePoint(256 + n++);
  }
  return table;
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };
function htmlUnescape(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e: string) => {
    if (e[0] === '#') {
      const code = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : m;
    }
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}

/** open_clip's clean='lower': basic_clean (html.unescape twice, strip), whitespace_clean, lower(). */
export function cleanLower(text: string): string {
  return htmlUnescape(htmlUnescape(text)).trim().split(/\s+/).filter(Boolean).join(' ').toLowerCase();
}

export class ClipTokenizer {
  readonly vocabSize: number;
  readonly sotTokenId: number;
  readonly eotTokenId: number;
  private readonly encoder = new Map<string, number>();
  private readonly decoder: string[] = [];
  private readonly ranks = new Map<string, number>();
  private readonly byteEncoder = bytesToUnicode();
  private readonly byteDecoder = new Map<string, number>();
  private readonly cache = new Map<string, string[]>();

  /** `merges`: the merges file's text (header line first, then `a b` per line). */
  constructor(merges: string, subject = 'merges') {
    const lines = merges.split('\n').slice(1, MAX_MERGES + 1);
    const pairs: [string, string][] = [];
    lines.forEach((line, i) => {
      if (line.trim() === '') return;
      const parts = line.trim().split(/\s+/);
      if (parts.length !== 2) {
        throw new VlError('CHECKPOINT_INVALID', `merges line ${i + 2} is not two symbols: '${line}'`, { subject });
      }
      pairs.push(parts as [string, string]);
    });
    // open_clip lists the byte symbols in bytes_to_unicode's insertion order: the printable bytes, then
    // the rest mapped to 256 + n, i.e. by code point ('!' is 0, 'a' 64, 'a</w>' 320).
    const symbols = [...this.byteEncoder].sort((a, b) => (a.codePointAt(0) as number) - (b.codePointAt(0) as number));
    const vocab = [...symbols, ...symbols.map((c) => `${c}</w>`), ...pairs.map(([a, b]) => a + b), ...SPECIALS];
    vocab.forEach((t, id) => {
      if (!this.encoder.has(t)) this.encoder.set(t, id);
      this.decoder.push(t);
    });
    pairs.forEach(([a, b], r) => {
      const key = `${a} ${b}`;
      if (!this.ranks.has(key)) this.ranks.set(key, r);
    });
    this.byteEncoder.forEach((c, b) => this.byteDecoder.set(c, b));
    for (const s of SPECIALS) this.cache.set(s, [s]);
    this.vocabSize = vocab.length;
    this.sotTokenId = vocab.length - 2;
    this.eotTokenId = vocab.length - 1;
  }

  /** Reads `bpe_simple_vocab_16e6.txt.gz` (gzip) or a plain-text merges file, or a folder holding one. */
  static fromFile(path: string): ClipTokenizer {
    const file = existsSync(join(path, CLIP_BPE_FILE)) ? join(path, CLIP_BPE_FILE) : path;
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch (e) {
      throw new VlError('CHECKPOINT_INVALID', `cannot read the BPE merges: ${(e as Error).message}`, { subject: file });
    }
    const gz = bytes[0] === 0x1f && bytes[1] === 0x8b;
    return new ClipTokenizer((gz ? gunzipSync(bytes) : bytes).toString('utf8'), file);
  }

  /** BPE of one pre-token (already byte-mapped): its symbols, the last one ending in `</w>`. */
  bpe(token: string): string[] {
    const hit = this.cache.get(token);
    if (hit) return hit;
    const chars = [...token];
    let word = [...chars.slice(0, -1), `${chars[chars.length - 1]}</w>`];
    while (word.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < word.length; i++) {
        const r = this.ranks.get(`${word[i]} ${word[i + 1]}`);
        if (r !== undefined && r < bestRank) [bestRank, best] = [r, i];
      }
      if (best < 0) break;
      const [first, second] = [word[best] as string, word[best + 1] as string];
      // Merge every non-overlapping occurrence, left to right, as open_clip's loop does.
      const next: string[] = [];
      for (let i = 0; i < word.length;) {
        if (word[i] === first && word[i + 1] === second && i + 1 < word.length) {
          next.push(first + second);
          i += 2;
        } else next.push(word[i++] as string);
      }
      word = next;
    }
    this.cache.set(token, word);
    return word;
  }

  /** Text → ids without sot/eot (`SimpleTokenizer.encode`). */
  encode(text: string): number[] {
    const out: number[] = [];
    for (const m of cleanLower(text).matchAll(PATTERN)) {
      const mapped = Array.from(new TextEncoder().encode(m[0]), (b) => this.byteEncoder[b] as string).join('');
      for (const sym of this.bpe(mapped)) {
        const id = this.encoder.get(sym);
        if (id === undefined) throw new VlError('CHECKPOINT_INVALID', `BPE symbol '${sym}' is not in the vocabulary`);
        out.push(id);
      }
    }
    return out;
  }

  /** `SimpleTokenizer.__call__` for one text: [sot, …, eot] cut to contextLength (last → eot), 0-padded. */
  tokenize(text: string, contextLength = 77): number[] {
    const ids = [this.sotTokenId, ...this.encode(text), this.eotTokenId].slice(0, contextLength);
    if (ids.length === contextLength) ids[contextLength - 1] = this.eotTokenId;
    while (ids.length < contextLength) ids.push(0);
    return ids;
  }

  /** Ids → text (`SimpleTokenizer.decode`): bytes back, `</w>` → a space (so words end in a space). */
  decode(ids: readonly number[]): string {
    const text = ids.map((id) => this.decoder[id] ?? '').join('');
    const bytes: number[] = [];
    for (const c of text.replaceAll('</w>', ' ')) {
      const b = this.byteDecoder.get(c);
      if (b !== undefined) bytes.push(b);
      else bytes.push(...new TextEncoder().encode(c));
    }
    return new TextDecoder('utf-8').decode(new Uint8Array(bytes));
  }
}
