// BERT WordPiece tokenizer (bert-base-uncased as BLIP/ALBEF use it), built from the lines of a
// `vocab.txt` or a parsed Hugging Face `tokenizer.json` (node/tokenizer-file.ts reads them from
// disk); normalisation, pre-tokenisation and WordPiece come from @huggingface/tokenizers, special
// tokens, truncation, padding and masks are done here.
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { VlError } from '../errors.js';

export interface TokenizerOptions {
  /** Lower-case and strip accents (bert-base-uncased). Only used when building from vocab.txt. */
  lowercase?: boolean;
  /**
   * Special tokens appended after the vocabulary, in this order, when the files lack them, as
   * `tokenizer.add_special_tokens` does in Python (BLIP's `init_tokenizer` adds `[DEC]` → 30522 and
   * `[ENC]` → 30523 to bert-base-uncased: `@vl/blip` passes its `BLIP_ADDED_TOKENS`).
   */
  addedTokens?: readonly string[];
  /** Longest sequence the model accepts (position embeddings); default 512. */
  modelMaxLength?: number;
}

export type PaddingMode = 'none' | 'longest' | 'max_length';

export interface TokenizerEncodeOptions {
  /** Add `[CLS] … [SEP]` (default true). */
  addSpecialTokens?: boolean;
  /**
   * Replace the leading `[CLS]` by another token: BLIP's decoder uses `[DEC]`, its image-grounded
   * encoder `[ENC]` (the model code overwrites `input_ids[:, 0]`; doing it here keeps it explicit).
   */
  firstToken?: string;
  /** Truncate to this many tokens including specials (default `modelMaxLength`). */
  maxLength?: number;
  /** Cut at maxLength (default true); false throws when a text is too long. */
  truncation?: boolean;
  /** `max_length` pads every sequence to maxLength; `longest` (batches) to the longest one. */
  padding?: PaddingMode;
}

export interface Encoded {
  ids: number[];
  attentionMask: number[];
  /** Tokens before padding, for debugging and tests. */
  tokens: string[];
}

export interface EncodedBatch {
  /** [batch, seqLen] row-major. */
  inputIds: Int32Array;
  /** [batch, seqLen], 1 for real tokens, 0 for padding. */
  attentionMask: Int32Array;
  batchSize: number;
  seqLength: number;
  /** Unpadded length of each row. */
  lengths: number[];
}

export interface TokenizerDecodeOptions {
  /** Drop [PAD], [CLS], [SEP], [MASK], [UNK], [DEC], [ENC] (default true). */
  skipSpecialTokens?: boolean;
}

interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

interface TokenizerJson {
  model: { type: string; vocab: Record<string, number>; [key: string]: unknown };
  normalizer: { type: string; handle_chinese_chars?: boolean; [key: string]: unknown } | null;
  added_tokens?: AddedTokenJson[];
  [key: string]: unknown;
}

const BERT_SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];

function addedToken(id: number, content: string): AddedTokenJson {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

/** The `tokenizer.json` that `BertTokenizerFast` saves for a vocab.txt (same components, same options). */
export function bertTokenizerJson(vocab: readonly string[], lowercase = true): TokenizerJson {
  const map: Record<string, number> = {};
  vocab.forEach((token, id) => {
    // Real vocabularies have no duplicate lines; one means a damaged file, and guessing which id
    // wins would silently shift every token after it.
    if (Object.prototype.hasOwnProperty.call(map, token)) {
      throw new VlError('DATA_INVALID', `vocabulary has '${token}' twice (lines ${(map[token] ?? 0) + 1} and ${id + 1})`, {
        subject: 'vocab.txt',
      });
    }
    map[token] = id;
  });
  for (const s of BERT_SPECIALS) {
    if (map[s] === undefined) {
      throw new VlError('DATA_INVALID', `vocabulary lacks ${s}`, { subject: 'vocab.txt', hint: 'use a BERT vocab.txt' });
    }
  }
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: BERT_SPECIALS.map((s) => addedToken(map[s] as number, s)),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: null,
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: map },
  };
}

/** Splits vocab.txt into tokens: one per line, line number (from 0) = id. */
export function parseVocabTxt(text: string): string[] {
  const lines = text.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

// BERT's `_is_chinese_char` ranges. @huggingface/tokenizers 0.2.0's BertNormalizer walks the text
// by UTF-16 code unit, so ideographs outside the BMP (CJK extensions B–E, compatibility
// supplement) never get spaces around them and glue onto neighbouring letters; it also keeps
// unassigned code points (category Cn), which BERT's `clean_text` drops as control characters.
// `preNormalize` fixes both before the library sees the text.
function isCjk(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

const UNASSIGNED = /\p{Cn}/u;

function preNormalize(text: string): string {
  let out = '';
  let changed = false;
  for (const ch of text) {
    const cp = ch.codePointAt(0) as number;
    if (cp > 0xffff && isCjk(cp)) {
      out += ` ${ch} `;
      changed = true;
    } else if (UNASSIGNED.test(ch)) {
      changed = true;
    } else {
      out += ch;
    }
  }
  return changed ? out : text;
}

export class BertTokenizer {
  readonly vocabSize: number;
  readonly padId: number;
  readonly unkId: number;
  readonly clsId: number;
  readonly sepId: number;
  readonly maskId: number;
  readonly modelMaxLength: number;
  private readonly hf: HfTokenizer;
  private readonly fixUnicode: boolean;
  private readonly specialIds: Set<number>;

  private constructor(json: TokenizerJson, options: TokenizerOptions, config: Record<string, unknown>) {
    if (json.model?.type !== 'WordPiece') {
      throw new VlError('DATA_INVALID', `tokenizer model is '${String(json.model?.type)}', expected WordPiece`, {
        subject: 'tokenizer.json',
        hint: 'BLIP, ALBEF, VLMo and BEiT-3 text towers use BERT WordPiece vocabularies',
      });
    }
    const added = [...(json.added_tokens ?? [])];
    const vocab = json.model.vocab;
    // A loop, not Math.max(...spread): multilingual vocabularies (250k entries) overflow the stack.
    let size = Object.keys(vocab).length;
    for (const id of Object.values(vocab)) size = Math.max(size, id + 1);
    for (const t of added) size = Math.max(size, t.id + 1);
    for (const t of options.addedTokens ?? []) {
      if (vocab[t] === undefined && !added.some((a) => a.content === t)) added.push(addedToken(size++, t));
    }
    json = { ...json, added_tokens: added };
    this.hf = new HfTokenizer(json, config);
    this.vocabSize = size;
    this.modelMaxLength = options.modelMaxLength ?? 512;
    this.fixUnicode = json.normalizer?.type === 'BertNormalizer' && json.normalizer.handle_chinese_chars !== false;
    const need = (t: string): number => {
      const id = this.hf.token_to_id(t);
      if (id === undefined) throw new VlError('DATA_INVALID', `vocabulary lacks ${t}`, { subject: 'tokenizer' });
      return id;
    };
    this.padId = need('[PAD]');
    this.unkId = need('[UNK]');
    this.clsId = need('[CLS]');
    this.sepId = need('[SEP]');
    this.maskId = need('[MASK]');
    this.specialIds = new Set([this.padId, this.unkId, this.clsId, this.sepId, this.maskId]);
    // Named added tokens are special even when the vocabulary file already has them (decode skips them).
    for (const t of options.addedTokens ?? []) this.specialIds.add(need(t));
    for (const t of added) if (t.special) this.specialIds.add(t.id);
  }

  /** From the lines of a BERT `vocab.txt` (line number = id). */
  static fromVocab(vocab: readonly string[], options: TokenizerOptions = {}): BertTokenizer {
    return new BertTokenizer(bertTokenizerJson(vocab, options.lowercase ?? true), options, {});
  }

  /** From a parsed Hugging Face `tokenizer.json` (and optionally its `tokenizer_config.json`). */
  static fromTokenizerJson(json: unknown, options: TokenizerOptions = {}, config: Record<string, unknown> = {}): BertTokenizer {
    if (typeof json !== 'object' || json === null || !('model' in json)) {
      throw new VlError('DATA_INVALID', 'not a tokenizer.json (no "model")', { subject: 'tokenizer.json' });
    }
    const maxLen = typeof config.model_max_length === 'number' && config.model_max_length < 1e6 ? config.model_max_length : undefined;
    return new BertTokenizer(json as TokenizerJson, { modelMaxLength: maxLen, ...options }, config);
  }

  /** WordPiece tokens of a text, without special tokens. */
  tokenize(text: string): string[] {
    return this.hf.tokenize(this.fixUnicode ? preNormalize(text) : text, { add_special_tokens: false });
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  /** One text → ids and mask. Padding `longest` is the same as none for a single text. */
  encode(text: string, options: TokenizerEncodeOptions = {}): Encoded {
    const addSpecial = options.addSpecialTokens ?? true;
    const maxLength = options.maxLength ?? this.modelMaxLength;
    if (!Number.isInteger(maxLength) || maxLength < (addSpecial ? 2 : 1)) {
      throw new VlError('INVALID_ARGUMENT', `maxLength must be an integer ≥ ${addSpecial ? 2 : 1}, got ${maxLength}`);
    }
    let tokens = this.tokenize(text);
    const room = maxLength - (addSpecial ? 2 : 0);
    if (tokens.length > room) {
      if (options.truncation === false) {
        throw new VlError('INVALID_ARGUMENT', `text has ${tokens.length + (addSpecial ? 2 : 0)} tokens, more than maxLength ${maxLength}`, {
          subject: text.slice(0, 60),
          hint: 'enable truncation or raise maxLength',
        });
      }
      tokens = tokens.slice(0, room);
    }
    if (addSpecial) {
      const first = options.firstToken ?? '[CLS]';
      if (this.hf.token_to_id(first) === undefined) {
        throw new VlError('INVALID_ARGUMENT', `first token '${first}' is not in the vocabulary`, {
          hint: `load the tokenizer with { addedTokens: ['${first}'] } (BLIP: BLIP_ADDED_TOKENS from @vl/blip)`,
        });
      }
      tokens = [first, ...tokens, '[SEP]'];
    }
    const ids = tokens.map((t) => this.hf.token_to_id(t) ?? this.unkId);
    const attentionMask = ids.map(() => 1);
    if (options.padding === 'max_length') {
      while (ids.length < maxLength) {
        ids.push(this.padId);
        attentionMask.push(0);
      }
    }
    return { ids, attentionMask, tokens };
  }

  /** Many texts → one padded [batch, seqLen] block (padding `longest` unless `max_length`). */
  encodeBatch(texts: readonly string[], options: TokenizerEncodeOptions = {}): EncodedBatch {
    const rows = texts.map((t) => this.encode(t, { ...options, padding: 'none' }));
    const lengths = rows.map((r) => r.ids.length);
    const seqLen = options.padding === 'max_length' ? (options.maxLength ?? this.modelMaxLength) : Math.max(1, ...lengths);
    const inputIds = new Int32Array(texts.length * seqLen).fill(this.padId);
    const attentionMask = new Int32Array(texts.length * seqLen);
    rows.forEach((r, b) => {
      inputIds.set(r.ids, b * seqLen);
      attentionMask.fill(1, b * seqLen, b * seqLen + r.ids.length);
    });
    return { inputIds, attentionMask, batchSize: texts.length, seqLength: seqLen, lengths };
  }

  /** Ids → text, WordPiece pieces joined and BERT's tokenisation spaces cleaned up. */
  decode(ids: ArrayLike<number>, options: TokenizerDecodeOptions = {}): string {
    const skip = options.skipSpecialTokens ?? true;
    const keep: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i] as number;
      if (skip && this.specialIds.has(id)) continue;
      keep.push(id);
    }
    // The library throws on an empty id list; an all-special sequence decodes to ''.
    if (keep.length === 0) return '';
    return this.hf.decode(keep, { skip_special_tokens: false });
  }
}
