// Tokenizer tests on the real bert-base-uncased vocabulary: known ids, specials, padding, decode.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BertTokenizer, bertTokenizerJson } from '../tokenizer.js';
import { loadBertTokenizer } from '../../node/tokenizer-file.js';
import { bertBaseUncasedVocab, writeVocabTxt } from './bert-vocab.js';

let vocab: string[];
let tok: BertTokenizer;

beforeAll(async () => {
  vocab = bertBaseUncasedVocab();
  tok = await loadBertTokenizer(join(writeVocabTxt(), 'vocab.txt'), { addedTokens: ['[DEC]', '[ENC]'] });
});

// Expected ids: each piece looked up as a line of vocab.txt (id = line number - 1), e.g.
// `grep -nx 'zurich' vocab.txt` → 10205 → id 10204. The first two rows are published outputs
// (Hugging Face tokenizers quicktour; transformers' tokenizer summary), not our own lookups.
const CASES: Array<{ text: string; tokens: string[]; ids: number[]; decoded: string }> = [
  {
    // Published: HF tokenizers quicktour, bert-base-uncased. Emoji → [UNK], punctuation split off.
    text: "Hello, y'all! How are you 😁 ?",
    tokens: ['[CLS]', 'hello', ',', 'y', "'", 'all', '!', 'how', 'are', 'you', '[UNK]', '?', '[SEP]'],
    ids: [101, 7592, 1010, 1061, 1005, 2035, 999, 2129, 2024, 2017, 100, 1029, 102],
    decoded: "hello, y'all! how are you?",
  },
  {
    // Published: transformers "tokenizer summary" (GPU → gp ##u).
    text: 'I have a new GPU!',
    tokens: ['[CLS]', 'i', 'have', 'a', 'new', 'gp', '##u', '!', '[SEP]'],
    ids: [101, 1045, 2031, 1037, 2047, 14246, 2226, 999, 102],
    decoded: 'i have a new gpu!',
  },
  {
    // Accents stripped after lower-casing (É → e, ü → u); the em dash is Unicode punctuation.
    text: "Café naïve résumé — Zürich's ÉCOLE!",
    tokens: ['[CLS]', 'cafe', 'naive', 'resume', '—', 'zurich', "'", 's', 'ecole', '!', '[SEP]'],
    ids: [101, 7668, 15743, 13746, 1517, 10204, 1005, 1055, 12431, 999, 102],
    decoded: "cafe naive resume — zurich's ecole!",
  },
  {
    // A long word split greedily into the longest pieces in the vocabulary.
    text: 'supercalifragilisticexpialidocious',
    tokens: ['[CLS]', 'super', '##cal', '##if', '##rag', '##ilis', '##tic', '##ex', '##pia', '##lid', '##oc', '##ious', '[SEP]'],
    ids: [101, 3565, 9289, 10128, 29181, 24411, 4588, 10288, 19312, 21273, 10085, 6313, 102],
    decoded: 'supercalifragilisticexpialidocious',
  },
  {
    text: 'unaffable',
    tokens: ['[CLS]', 'una', '##ffa', '##ble', '[SEP]'],
    ids: [101, 14477, 20961, 3468, 102],
    decoded: 'unaffable',
  },
  {
    // Contractions and ASCII symbols are split at every punctuation character, as BERT does.
    text: "Don't stop-believin' (1981)!!",
    tokens: ['[CLS]', 'don', "'", 't', 'stop', '-', 'bel', '##ie', '##vin', "'", '(', '1981', ')', '!', '!', '[SEP]'],
    ids: [101, 2123, 1005, 1056, 2644, 1011, 19337, 2666, 6371, 1005, 1006, 3261, 1007, 999, 999, 102],
    decoded: "don't stop - believin'( 1981 )!!",
  },
  {
    // CJK ideographs become words of their own, including one outside the BMP (U+20000, which the
    // library alone would glue onto "abc" and turn the whole word into [UNK]).
    text: '𠀀abc中国def',
    tokens: ['[CLS]', '[UNK]', 'abc', '中', '国', 'def', '[SEP]'],
    ids: [101, 100, 5925, 1746, 1799, 13366, 102],
    decoded: 'abc 中 国 def',
  },
  {
    // Tab → space, NUL and the zero-width space (Cf) are deleted, so "null\u200bzero" is one word.
    text: 'tab\there\u0000 null\u200bzero-width',
    tokens: ['[CLS]', 'tab', 'here', 'null', '##zer', '##o', '-', 'width', '[SEP]'],
    ids: [101, 21628, 2182, 19701, 6290, 2080, 1011, 9381, 102],
    decoded: 'tab here nullzero - width',
  },
  {
    // A word over 100 characters is [UNK] as a whole (max_input_chars_per_word).
    text: `ok ${'a'.repeat(101)} ok`,
    tokens: ['[CLS]', 'ok', '[UNK]', 'ok', '[SEP]'],
    ids: [101, 7929, 100, 7929, 102],
    decoded: 'ok ok',
  },
];

describe('BertTokenizer on bert-base-uncased', () => {
  it('rebuilds the original vocab.txt layout', () => {
    expect(vocab).toHaveLength(30522);
    expect(vocab.slice(0, 2)).toEqual(['[PAD]', '[unused0]']);
    expect(vocab.slice(100, 104)).toEqual(['[UNK]', '[CLS]', '[SEP]', '[MASK]']);
    expect(vocab[1996]).toBe('the');
    expect(vocab[30521]).toBe('##～');
  });

  for (const c of CASES) {
    it(`encodes ${JSON.stringify(c.text.slice(0, 40))}`, () => {
      const e = tok.encode(c.text);
      expect(e.tokens).toEqual(c.tokens);
      expect(e.ids).toEqual(c.ids);
      // The ids are vocab.txt line numbers of the pieces (specials and [UNK] aside).
      c.tokens.forEach((t, i) => {
        if (t !== '[UNK]') expect(vocab[c.ids[i] as number]).toBe(t);
      });
      expect(e.attentionMask).toEqual(c.ids.map(() => 1));
      expect(tok.decode(e.ids)).toBe(c.decoded);
    });
  }

  it('appends added tokens (BLIP [DEC]/[ENC]) after the vocabulary, in order, and uses them as first token', () => {
    expect(tok.vocabSize).toBe(30524);
    expect(tok.tokenToId('[DEC]')).toBe(30522);
    expect(tok.tokenToId('[ENC]')).toBe(30523);
    expect(tok.encode('a dog', { firstToken: '[DEC]' }).ids).toEqual([30522, 1037, 3899, 102]);
    expect(tok.encode('a dog', { firstToken: '[ENC]' }).ids).toEqual([30523, 1037, 3899, 102]);
    // Written in the text, special tokens stay whole (not split at the brackets).
    expect(tok.encode('[DEC] a [MASK] dog').ids).toEqual([101, 30522, 1037, 103, 3899, 102]);
    const plain = BertTokenizer.fromVocab(vocab);
    expect(plain.tokenToId('[DEC]')).toBeUndefined();
    expect(() => plain.encode('a', { firstToken: '[DEC]' })).toThrow(/not in the vocabulary/);
    // Added tokens are special: decode skips them whether appended or already in the vocabulary.
    expect(tok.decode([30522, 1037, 3899, 102], { skipSpecialTokens: true })).toBe('a dog');
    const inVocab = BertTokenizer.fromVocab([...vocab, '[DEC]'], { addedTokens: ['[DEC]', '[ENC]'] });
    expect([inVocab.tokenToId('[DEC]'), inVocab.tokenToId('[ENC]')]).toEqual([30522, 30523]);
    expect(inVocab.decode([30522, 1037, 3899], { skipSpecialTokens: true })).toBe('a dog');
  });

  it('truncates, pads and masks', () => {
    const e = tok.encode('a red circle left of a blue square', { maxLength: 6, padding: 'max_length' });
    expect(e.ids).toEqual([101, 1037, 2417, 4418, 2187, 102]);
    const p = tok.encode('a dog', { maxLength: 6, padding: 'max_length' });
    expect(p.ids).toEqual([101, 1037, 3899, 102, 0, 0]);
    expect(p.attentionMask).toEqual([1, 1, 1, 1, 0, 0]);
    expect(() => tok.encode('a red circle left of a blue square', { maxLength: 6, truncation: false })).toThrow(/maxLength 6/);
    expect(tok.encode('a dog', { addSpecialTokens: false }).ids).toEqual([1037, 3899]);

    const b = tok.encodeBatch(['a dog', 'two red circles', ''], { maxLength: 8 });
    expect(b.seqLength).toBe(5); // longest: [CLS] two red circles [SEP]
    expect(b.lengths).toEqual([4, 5, 2]);
    expect(Array.from(b.inputIds)).toEqual([101, 1037, 3899, 102, 0, 101, 2048, 2417, 7925, 102, 101, 102, 0, 0, 0]);
    expect(Array.from(b.attentionMask)).toEqual([1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
    const fixed = tok.encodeBatch(['a dog'], { maxLength: 8, padding: 'max_length' });
    expect(fixed.seqLength).toBe(8);
    expect(tok.decode([101, 0, 0])).toBe('');
    expect(tok.decode([101, 1037, 3899, 102], { skipSpecialTokens: false })).toBe('[CLS] a dog [SEP]');
  });

  it('loads a tokenizer.json (with BLIP tokens already in it) to the same ids', () => {
    const json = bertTokenizerJson(vocab) as unknown as { added_tokens: object[]; post_processor: unknown };
    // As in the files transformers saves: a TemplateProcessing post-processor adding [CLS]/[SEP]
    // (we add specials ourselves, so it must not add a second pair).
    json.post_processor = {
      type: 'TemplateProcessing',
      single: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } },
        { SpecialToken: { id: '[SEP]', type_id: 1 } },
      ],
      special_tokens: {
        '[CLS]': { id: '[CLS]', ids: [101], tokens: ['[CLS]'] },
        '[SEP]': { id: '[SEP]', ids: [102], tokens: ['[SEP]'] },
      },
    };
    json.added_tokens.push({
      id: 30522,
      content: '[DEC]',
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    });
    const dir = mkdtempSync(join(tmpdir(), 'vl-tokjson-'));
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 40, do_lower_case: true }));
    return loadBertTokenizer(dir, { addedTokens: ['[DEC]', '[ENC]'] }).then((fromJson) => {
      expect(fromJson.tokenToId('[DEC]')).toBe(30522);
      expect(fromJson.tokenToId('[ENC]')).toBe(30523); // appended because the file lacked it
      expect(fromJson.modelMaxLength).toBe(40);
      for (const c of CASES) expect(fromJson.encode(c.text).ids).toEqual(c.ids);
    });
  });

  it('refuses vocabularies that are not BERT WordPiece', () => {
    expect(() => BertTokenizer.fromVocab(['a', 'b'])).toThrow(/lacks \[PAD\]/);
    expect(() => BertTokenizer.fromVocab(['[PAD]', 'a', 'a'])).toThrow(/twice/);
    expect(() => BertTokenizer.fromTokenizerJson({ model: { type: 'BPE', vocab: {} } })).toThrow(/WordPiece/);
  });
});
