// open_clip's SimpleTokenizer on a hand-made merges file: ids worked out by hand from the vocabulary
// layout (256 byte symbols by code point, the same with </w>, one per merge, sot, eot).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { initRuntime } from '@vl/core';
import { afterAll, describe, expect, it } from 'vitest';
import { generateOptions, loadCocaTokenizer } from '../caption.js';
import { bytesToUnicode, CLIP_BPE_FILE, cleanLower, ClipTokenizer } from '../clip-tokenizer.js';
import { cocaPreset } from '../config.js';
import { CoCa } from '../model.js';

const MERGES = ['#version: 0.2', 'l o', 'lo w</w>', 'e r</w>', 'n e', 'ne w</w>', ''].join('\n');
const tmp = mkdtempSync(join(tmpdir(), 'clip-bpe-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// A printable ASCII byte's symbol id is its code − 0x21; with </w> add 256; merge r is 512 + r.
const b = (c: string) => (c.codePointAt(0) as number) - 0x21;
const w = (c: string) => 256 + b(c);
const [LO, LOW_W, ER_W, NE, NEW_W, SOT, EOT] = [512, 513, 514, 515, 516, 517, 518];

describe('ClipTokenizer (open_clip SimpleTokenizer)', () => {
  const tok = new ClipTokenizer(MERGES);

  it('lays out the vocabulary as open_clip: bytes, bytes</w>, merges, sot, eot', () => {
    expect(tok.vocabSize).toBe(519);
    expect([tok.sotTokenId, tok.eotTokenId]).toEqual([SOT, EOT]);
    // The full file (48894 merges) gives 49408 with sot 49406, eot 49407; 'a</w>' is 320 in CLIP too.
    expect(w('a')).toBe(320);
    const table = bytesToUnicode();
    expect(new Set(table).size).toBe(256);
    expect([table[0x21], table[0x20], table[0xc3]]).toEqual(['!', String.fromCodePoint(256 + 32), 'Ã']);
  });

  it('splits known words by the merge ranks', () => {
    expect(tok.encode('low')).toEqual([LOW_W]);
    // l o → lo; (lo, w) has no rank (only "lo w</w>"), e r</w> → er</w>.
    expect(tok.encode('lower')).toEqual([LO, b('w'), ER_W]);
    expect(tok.encode('new')).toEqual([NEW_W]);
    expect(tok.encode('news')).toEqual([NE, b('w'), w('s')]);
    // Cleaned (lowercase, whitespace collapsed, HTML unescaped twice) and cut by open_clip's pattern.
    expect(cleanLower('  Hello,\n\t WORLD &amp;amp; ')).toBe('hello, world &');
    expect(tok.encode("It's LOW!!")).toEqual([b('i'), w('t'), b("'"), w('s'), LOW_W, b('!'), w('!')]);
    expect(tok.encode('a1b')).toEqual([w('a'), w('1'), w('b')]);
    expect(tok.encode('<start_of_text>low')).toEqual([SOT, LOW_W]);
  });

  it('round-trips through decode (words end in a space, UTF-8 bytes restored)', () => {
    expect(tok.decode(tok.encode('low lower new'))).toBe('low lower new ');
    const cafe = tok.encode('Café');
    // é is two bytes, C3 A9, each one byte symbol; the last one carries </w>.
    expect(cafe).toHaveLength(5);
    expect(tok.decode(cafe)).toBe('café ');
  });

  it('fits rows to the context as open_clip __call__', () => {
    expect(tok.tokenize('low', 4)).toEqual([SOT, LOW_W, EOT, 0]);
    expect(tok.tokenize('low low low low', 4)).toEqual([SOT, LOW_W, LOW_W, EOT]);
  });

  it('reads the gzip merges from a folder; a CoCa folder holding it captions with it', async () => {
    await initRuntime({ backend: 'cpu' });
    writeFileSync(join(tmp, CLIP_BPE_FILE), gzipSync(Buffer.from(MERGES)));
    expect(ClipTokenizer.fromFile(tmp).encode('lower')).toEqual([LO, b('w'), ER_W]);
    const model = new CoCa(cocaPreset('tiny', { vocabSize: 519 }), { seed: 0 });
    const capTok = await loadCocaTokenizer(tmp, model);
    expect(capTok.kind).toBe('bpe');
    expect(capTok.decode([LOW_W, NEW_W])).toBe('low new');
    expect(generateOptions(model, capTok, { numBeams: 1, prompt: 'Low' }, 1).text).toEqual([[SOT, LOW_W]]);
    model.dispose();
    const wrong = new CoCa(cocaPreset('tiny', { vocabSize: 520 }), { seed: 0 });
    await expect(loadCocaTokenizer(tmp, wrong)).rejects.toThrow(/519 tokens but the model has 520/);
    wrong.dispose();
  });

  it('refuses a malformed merges line, naming it', () => {
    expect(() => new ClipTokenizer('#version\nl o\nabc\n', 'm.txt')).toThrow(/merges line 3/);
  });
});
