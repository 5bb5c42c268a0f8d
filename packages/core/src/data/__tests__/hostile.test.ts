// Readers and image files under hostile input (issue 14): CSV stray quotes and BOM, JSON nested too
// deep, one latin-1 caption among good ones, U+FFFD as a real character, WebDataset duplicate keys,
// over-long lines, symlinks out of the root, FIFOs, devices, size caps and read timeouts.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageFileError, readImageFile, withTimeout } from '../../node/image-file.js';
import { type CaptionRecord, DataReport } from '../records.js';
import { decodeUtf8Escaped, jsonTooDeep, readByteLines, readCsvRows, readDataset } from '../../node/readers.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vl-hostile-'));
  mkdirSync(join(dir, 'images'));
  copyFileSync(join(fixtures, 'images', 'ok1.png'), join(dir, 'images', 'ok1.png'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function read(path: string): Promise<{ recs: CaptionRecord[]; report: DataReport }> {
  const report = new DataReport();
  const recs: CaptionRecord[] = [];
  for await (const r of readDataset({ path }, report)) recs.push(r);
  return { recs, report };
}

const nonZero = (report: DataReport) => Object.fromEntries(Object.entries(report.summary().dropped).filter(([, n]) => n > 0));

describe('CSV as spreadsheets write it', () => {
  it('a stray character after a closing quote is one malformed row with its line; the rest goes on', async () => {
    const f = join(dir, 'stray.csv');
    const rows = [
      'image,caption',
      'images/ok1.png,one',
      'images/ok1.png,"a ""bad"" quote"x',
      'images/ok1.png,three',
      'images/ok1.png,"four, quoted"',
      'images/ok1.png,five',
    ];
    writeFileSync(f, `${rows.join('\n')}\n`);
    const { recs, report } = await read(f);
    expect(recs.map((r) => [r.key, r.captions[0]])).toEqual([
      ['stray.csv:2', 'one'],
      ['stray.csv:4', 'three'],
      ['stray.csv:5', 'four, quoted'],
      ['stray.csv:6', 'five'],
    ]);
    expect(report.summary().input).toBe(5);
    expect(nonZero(report)).toEqual({ malformed_record: 1 });
    expect(report.examples[0]).toMatchObject({
      subject: 'stray.csv:3',
      detail: expect.stringMatching(/^line 3: character 'x' after a closing quote/),
    });
  });

  it('a UTF-8 BOM (Excel "CSV UTF-8") is skipped; CRLF lines, quoted newlines and doubled quotes read back', async () => {
    const f = join(dir, 'bom.csv');
    writeFileSync(
      f,
      Buffer.concat([
        Buffer.from([0xef, 0xbb, 0xbf]),
        Buffer.from('image,caption\r\nimages/ok1.png,"two\r\nlines ""q"""\r\nimages/ok1.png,last\r\n'),
      ]),
    );
    const { recs, report } = await read(f);
    expect(recs.map((r) => [r.key, r.captions[0]])).toEqual([
      ['bom.csv:2', 'two\r\nlines "q"'],
      ['bom.csv:4', 'last'],
    ]);
    expect(report.summary().droppedTotal).toBe(0);
  });

  it('skipped rows are counted in input order, each with its line; an unclosed quote costs one row', async () => {
    const f = join(dir, 'order.csv');
    writeFileSync(f, 'image,caption\nimages/ok1.png,a,extra\nimages/ok1.png,b\nimages/ok1.png,"never closed\nimages/ok1.png,d\n');
    const rows = [];
    for await (const r of readCsvRows(f))
      rows.push(r.error !== undefined ? `${r.line}: error` : `${r.line}: ${r.fields.map(String).join('|')}`);
    expect(rows).toEqual(['1: image|caption', '2: images/ok1.png|a|extra', '3: images/ok1.png|b', '4: error', '5: images/ok1.png|d']);
    const { recs, report } = await read(f);
    expect(recs.map((r) => r.key)).toEqual(['order.csv:3', 'order.csv:5']);
    expect(report.examples.map((e) => e.subject)).toEqual(['order.csv:2', 'order.csv:4']);
  });
});

describe('JSON and UTF-8', () => {
  it('a line nested 200,000 deep is a malformed record, not a stack overflow; the next line is read', async () => {
    const f = join(dir, 'deep.jsonl');
    const deep = `${'['.repeat(200_000)}${']'.repeat(200_000)}`;
    writeFileSync(f, `{"image": "images/ok1.png", "caption": "a", "extra": ${deep}}\n{"image": "images/ok1.png", "caption": "b"}\n`);
    const { recs, report } = await read(f);
    expect(recs.map((r) => r.captions)).toEqual([['b']]);
    expect(report.examples[0]).toMatchObject({
      reason: 'malformed_record',
      subject: 'deep.jsonl:1',
      detail: expect.stringMatching(/deeper than 64/),
    });
    expect(jsonTooDeep('{"a": "[[[[[[[[", "b": [[1]]}', 3)).toBe(false);
    expect(jsonTooDeep('[[[1]]]', 2)).toBe(true);
  });

  it('one latin-1 caption is removed on its own; a real U+FFFD is a valid caption', async () => {
    const f = join(dir, 'latin1.jsonl');
    writeFileSync(
      f,
      Buffer.concat([
        Buffer.from('{"image": "images/ok1.png", "captions": ["good one", "caf'),
        Buffer.from([0xe9]),
        Buffer.from(' au lait", "good two"]}\n{"image": "images/ok1.png", "caption": "replacement \uFFFD char"}\n'),
        Buffer.from('{"image": "images/ok1.png", "caption": "fine", "tag": "'),
        Buffer.from([0xff]),
        Buffer.from('"}\n'),
      ]),
    );
    const { recs, report } = await read(f);
    expect(recs.map((r) => r.captions)).toEqual([['good one', 'good two'], ['replacement \uFFFD char']]);
    expect(report.summary().captionsDropped).toEqual({ non_utf8_caption: 1 });
    expect(report.examples).toEqual([
      { reason: 'malformed_record', subject: 'latin1.jsonl:3', detail: 'line is not valid UTF-8 (outside the captions)' },
    ]);
    const bad = decodeUtf8Escaped(Buffer.from([0x61, 0xc3, 0x28, 0xf0, 0x9f, 0x98, 0x80]));
    expect(bad).toEqual({ text: 'a\uDCC3(\u{1F600}', valid: false });
  });

  it('a line longer than the cap is read past, not held', async () => {
    const f = join(dir, 'long.txt');
    writeFileSync(f, `short\n${'x'.repeat(200_000)}\nafter`);
    const got = [];
    for await (const l of readByteLines(f, 1000)) got.push([l.line, l.bytes.length, Boolean(l.tooLong)]);
    expect(got).toEqual([
      [1, 5, false],
      [2, 0, true],
      [3, 5, false],
    ]);
    // A 21 MB line is joined once, not re-copied per read chunk (that took 110 s; now well under a second).
    writeFileSync(f, `${'and more words '.repeat(1_400_000)}\nnext\n`);
    const t0 = Date.now();
    const sizes = [];
    for await (const l of readByteLines(f)) sizes.push(l.bytes.length);
    expect(sizes).toEqual([21_000_000, 4]);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });
});

async function tarOf(members: [string, string | Buffer][]): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, body] of members) pack.entry({ name }, body);
  pack.finalize();
  const parts: Buffer[] = [];
  for await (const c of pack as AsyncIterable<Buffer>) parts.push(c);
  return Buffer.concat(parts);
}

describe('WebDataset keys', () => {
  it('a key repeated right after itself or later is a duplicate_key failure; nothing is merged', async () => {
    const png = (await import('node:fs')).readFileSync(join(fixtures, 'images', 'ok1.png'));
    const f = join(dir, 'dup.tar');
    writeFileSync(
      f,
      await tarOf([
        ['a.png', png],
        ['a.txt', 'first a'],
        ['a.png', png],
        ['a.txt', 'second a'],
        ['b.png', png],
        ['b.txt', 'b'],
        ['a.txt', 'third a'],
      ]),
    );
    const { recs, report } = await read(f);
    expect(recs.map((r) => [r.key, r.captions[0]])).toEqual([
      ['dup.tar:a', 'first a'],
      ['dup.tar:b', 'b'],
    ]);
    expect(report.summary().input).toBe(4);
    expect(nonZero(report)).toEqual({ duplicate_key: 2 });
  });
});

describe('image files, not paths', () => {
  it('refuses symlinks out of the root, FIFOs and devices, and files over the size cap', async () => {
    const root = join(dir, 'root');
    mkdirSync(root);
    copyFileSync(join(fixtures, 'images', 'ok1.png'), join(dir, 'secret.png'));
    symlinkSync(join(dir, 'secret.png'), join(root, 'leak.png'));
    symlinkSync('/dev/zero', join(root, 'zero.png'));
    execFileSync('mkfifo', [join(root, 'fifo.png')]);
    copyFileSync(join(fixtures, 'images', 'ok1.png'), join(root, 'ok.png'));
    const reason = (p: string, o = {}) =>
      readImageFile(join(root, p), { root, ...o }).then(
        () => 'read',
        (e: unknown) => (e instanceof ImageFileError ? e.reason : String(e)),
      );
    expect(await reason('ok.png')).toBe('read');
    expect(await reason('leak.png')).toBe('unsafe_path');
    expect(await reason('zero.png')).toBe('unsafe_path');
    expect(await readImageFile(join(root, 'zero.png')).catch((e: ImageFileError) => e.reason)).toBe('not_a_file');
    expect(await reason('fifo.png')).toBe('not_a_file');
    expect(await reason('ok.png', { maxBytes: 10 })).toBe('image_too_large');
    expect(await reason('none.png')).toBe('missing_image');
    await expect(withTimeout(new Promise(() => {}), 20, () => new ImageFileError('read_timeout', 'slow'))).rejects.toMatchObject({
      reason: 'read_timeout',
    });
  });

  it('the loader fails a record whose image symlink leaves the root as unsafe_path', async () => {
    const list = join(dir, 'root', 'list.jsonl');
    writeFileSync(
      list,
      '{"image": "leak.png", "caption": "leak"}\n{"image": "fifo.png", "caption": "fifo"}\n{"image": "ok.png", "caption": "ok"}\n',
    );
    const { createDataLoader } = await import('../../node/loader.js');
    const { BertTokenizer } = await import('../tokenizer.js');
    const { bertBaseUncasedVocab } = await import('./bert-vocab.js');
    const { initRuntime } = await import('../../runtime/backend.js');
    await initRuntime({ backend: 'cpu' });
    const tok = BertTokenizer.fromVocab(bertBaseUncasedVocab(), { addedTokens: ['[DEC]', '[ENC]'] });
    const { batches, report } = createDataLoader({ path: list }, { batchSize: 4, tokenizer: tok, transform: { size: 8 } });
    const keys: string[] = [];
    for await (const b of batches) {
      keys.push(...b.keys);
      b.dispose();
    }
    expect(keys).toEqual(['list.jsonl:3']);
    expect(nonZero(report)).toEqual({ unsafe_path: 1, not_a_file: 1 });
  });
});
