// CapFilt under hostile but realistic use (issue 14): two runs on one --out, counts checked against
// the source, --out over the input, resume refused when data or models changed, NaN scores.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  appendFileSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BertTokenizer } from '@vl/core';
import { readDataset } from '@vl/core/node';
import sharp from 'sharp';
import * as tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCapfiltCli } from '../cli.js';
import { LOCK_FILE } from '../lock.js';
import { DONE_FILE } from '../output.js';
import { writeNamed } from '../write-named.js';
import { MAX_SCORED_CHARS } from '../pipeline.js';
import { type CapfiltFixture, makeFixture } from './fixture.js';

const fixtures = fileURLToPath(new URL('../../../../core/src/data/__tests__/fixtures/images/', import.meta.url));
const encodeBatch = BertTokenizer.prototype.encodeBatch;
let dir: string;
let fx: CapfiltFixture;
let inputs: number;

/** Runs `blip capfilt` in-process; returns the exit code and what it printed on stderr. */
async function cli(args: string[]): Promise<{ code: number; err: string }> {
  const errs: string[] = [];
  const code = await runCapfiltCli([...args, '--quiet', '--backend', 'cpu'], { out: () => {}, err: (l) => errs.push(l) });
  return { code, err: errs.join('\n') };
}
const base = (out: string, data = fx.train, f = fx.filter) => [
  '--data',
  data,
  '--out',
  out,
  '--captioner',
  fx.captioner,
  '--filter',
  f,
  '--num-captions',
  '0',
  '--seed',
  '1',
  '--batch-size',
  '3',
];
const lines = (f: string) =>
  readFileSync(f, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
const report = (out: string) =>
  JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as {
    input: number;
    balanced: boolean;
    counts: Record<string, number>;
    failed: Record<string, number>;
  };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'capfilt-hard-'));
  fx = await makeFixture(dir, { images: 10 });
  inputs = lines(fx.train).length;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Overwrites every float of one tensor in a safetensors file with `value`. */
function poisonTensor(file: string, name: string, value: number): void {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const t = header[name];
  if (!t || t.dtype !== 'F32') throw new Error(`no F32 tensor ${name}`);
  for (let o = 8 + n + t.data_offsets[0]; o < 8 + n + t.data_offsets[1]; o += 4) buf.writeFloatLE(value, o);
  writeFileSync(file, buf);
}

describe('capfilt: one writer, counts from the source, inputs safe (issue 14 items 1–3)', () => {
  it('two runs on one --out: one runs, the other is refused naming the holder (item 1)', async () => {
    const out = join(dir, 'twice');
    const [a, b] = await Promise.all([cli(base(out)), cli(base(out))]);
    expect([a.code, b.code].sort()).toEqual([0, 2]);
    expect((a.code === 2 ? a : b).err).toMatch(
      new RegExp(`another CapFilt run writes to this folder \\(pid ${process.pid} on ${hostname()}`),
    );
    expect(lines(join(out, 'records.jsonl'))).toHaveLength(inputs);
    expect(report(out).balanced).toBe(true);
    expect(existsSync(join(out, LOCK_FILE))).toBe(false);
  });

  it('a stale lock (its process is gone) is taken over; a lock held on another host is refused (item 1)', async () => {
    const out = join(dir, 'stale');
    mkdirSync(out, { recursive: true });
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    writeFileSync(join(out, LOCK_FILE), JSON.stringify({ pid: dead, host: hostname(), procStart: null, token: 'x', since: 'then' }));
    expect((await cli(base(out))).code).toBe(0);
    writeFileSync(join(out, LOCK_FILE), JSON.stringify({ pid: 1, host: 'elsewhere.example', procStart: null, token: 'y', since: 'then' }));
    const r = await cli(base(out));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/pid 1 on elsewhere\.example/);
    expect(r.err).toContain(join(out, LOCK_FILE));
  });

  it('the report is balanced only against the source count; an unbalanced merge exits 3 (item 2)', async () => {
    const shards = [0, 1].map((i) => join(dir, `bal${i}`));
    for (const [i, s] of shards.entries()) expect((await cli([...base(s), '--shard', `${i}/2`])).code).toBe(0);
    // Lose shard 1's last journaled batch after it finished: the merge now lacks records.
    const journal = join(shards[1] as string, 'journal.jsonl');
    const kept = readFileSync(journal, 'utf8').split('\n').filter(Boolean);
    writeFileSync(journal, `${kept.slice(0, -1).join('\n')}\n`);
    const merged = join(dir, 'bal-merged');
    const errs: string[] = [];
    const code = await runCapfiltCli(['merge', '--out', merged, ...shards], { out: () => {}, err: (l) => errs.push(l) });
    expect(code).toBe(3);
    expect(errs.join('\n')).toMatch(new RegExp(`source has ${inputs}`));
    const r = report(merged);
    expect(r.input).toBeLessThan(inputs);
    expect(r.balanced).toBe(false);
  });

  it('refuses an --out that holds the data list or the image root, and leaves the list alone (item 3)', async () => {
    const before = readFileSync(fx.train);
    const r = await cli(base(fx.data));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/OUTPUT_CONFLICT.*contains the input/);
    expect(readFileSync(fx.train).equals(before)).toBe(true);
    expect((await cli(base(dirname(fx.data)))).code).toBe(2);
    mkdirSync(join(dir, 'lists'), { recursive: true });
    const other = join(dir, 'lists', 'other.jsonl');
    writeFileSync(other, readFileSync(fx.train));
    const img = await cli(['--images', fx.data, ...base(fx.data, other)]);
    expect(img.code).toBe(2);
    expect(img.err).toMatch(/contains the image root/);
  });
});

describe('capfilt: resume identity and non-finite scores (issue 14 items 7, 8)', () => {
  it('refuses to resume after the data changed, and says what changed (item 8)', async () => {
    const data = join(dir, 'd8');
    cpSync(fx.data, data, { recursive: true });
    const list = join(data, 'train.jsonl');
    const out = join(dir, 'resume8');
    expect((await cli(base(out, list))).code).toBe(0);
    const first = lines(list);
    appendFileSync(list, `${first[0]}\n${first[1]}\n`);
    const r = await cli(base(out, list));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/RESUME_MISMATCH.*data file .*train\.jsonl: size \d+ → \d+ bytes/);
    expect(lines(join(out, 'records.jsonl'))).toHaveLength(inputs);
  });

  it('the same relative --data from another folder is another dataset (item 8)', async () => {
    const [one, two] = ['rel1', 'rel2'].map((d) => join(dir, d));
    cpSync(fx.data, one as string, { recursive: true });
    cpSync(fx.data, two as string, { recursive: true });
    writeFileSync(join(two as string, 'train.jsonl'), lines(fx.train).slice(0, 4).join('\n'));
    const out = join(dir, 'resume-rel');
    const cwd = process.cwd();
    try {
      process.chdir(one as string);
      expect((await cli(base(out, 'train.jsonl'))).code).toBe(0);
      process.chdir(two as string);
      const r = await cli(base(out, 'train.jsonl'));
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/data file .*rel1.*train\.jsonl → .*rel2.*train\.jsonl/);
    } finally {
      process.chdir(cwd);
    }
  });

  it('non-finite filter scores fail their records as non_finite_score; swapped weights refuse to resume (items 7, 8)', async () => {
    const broken = join(dir, 'nan-filter');
    cpSync(fx.filter, broken, { recursive: true });
    poisonTensor(join(broken, 'model.safetensors'), 'itm_head.bias', Number.NaN);
    const out = join(dir, 'nan');
    const r = await cli(base(out, fx.train, broken));
    expect(r.code, r.err).toBe(0);
    const rep = report(out);
    expect(rep.balanced).toBe(true);
    expect(rep.counts).toEqual({ kept: 0, replaced: 0, dropped: 0, failed: inputs });
    expect(rep.failed).toEqual({ non_finite_score: inputs });
    expect(readFileSync(join(out, 'train.jsonl'), 'utf8')).toBe('');
    expect(readFileSync(join(out, 'journal.jsonl'), 'utf8')).not.toMatch(/"score":null/);
    // Fixing the weights in place: the journal belongs to the broken ones, so resuming is refused.
    cpSync(join(fx.filter, 'model.safetensors'), join(broken, 'model.safetensors'));
    const again = await cli(base(out, fx.train, broken));
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/filter file model\.safetensors changed/);
    expect(existsSync(join(out, DONE_FILE))).toBe(true);
  });
});

describe('capfilt: poison records end as one failed record or one removed caption (issue 14 items 5, 6, 9, 11, 12)', () => {
  it('a run over every kind of poison record finishes, each with its reason, and draws its report', async () => {
    const data = join(dir, 'poison');
    cpSync(fx.data, data, { recursive: true });
    const good = lines(fx.train).slice(0, 3);
    const img = (JSON.parse(good[0] as string) as { image: string }).image;
    writeFileSync(join(dir, 'secret.png'), readFileSync(join(data, img)));
    symlinkSync(join(dir, 'secret.png'), join(data, 'leak.png'));
    symlinkSync('/dev/zero', join(data, 'zero.png'));
    execFileSync('mkfifo', [join(data, 'fifo.png')]);
    copyFileSync(join(fixtures, 'bomb.png'), join(data, 'bomb.png'));
    const rec = (o: Record<string, unknown>) => JSON.stringify({ image: img, ...o });
    const list = join(data, 'poison.jsonl');
    const huge = `a red circle ${'and more words '.repeat(Number(process.env.HUGE ?? 1_400_000))}`; // ≈ 21 MB
    writeFileSync(
      list,
      Buffer.concat([
        Buffer.from(`${rec({ captions: ['a NUL \u0000 and a bell \u0007 in a caption', 'plain'] })}\n`),
        Buffer.from(`${rec({ caption: 'x', extra: JSON.parse(`${'['.repeat(100)}${']'.repeat(100)}`) as unknown })}\n`),
        Buffer.from(`{"image": "${img}", "caption": "deep", "extra": ${'['.repeat(200_000)}${']'.repeat(200_000)}}\n`),
        Buffer.from(`{"image": "${img}", "captions": ["good", "caf`),
        Buffer.from([0xe9]),
        Buffer.from(`"]}\n${rec({ caption: 'a real \uFFFD replacement character' })}\n`),
        Buffer.from(
          `${JSON.stringify({ image: 'leak.png', caption: 'leak' })}\n${JSON.stringify({ image: 'zero.png', caption: 'zero' })}\n`,
        ),
        Buffer.from(
          `${JSON.stringify({ image: 'fifo.png', caption: 'fifo' })}\n${JSON.stringify({ image: 'bomb.png', caption: 'bomb' })}\n`,
        ),
        Buffer.from(`${rec({ caption: huge })}\n${good.join('\n')}\n`),
      ]),
    );
    const seen: number[] = [];
    const spy = vi.spyOn(BertTokenizer.prototype, 'encodeBatch').mockImplementation(function (this: BertTokenizer, texts, opts) {
      seen.push(Math.max(0, ...texts.map((t) => t.length)));
      return encodeBatch.call(this, texts, opts);
    } as BertTokenizer['encodeBatch']);
    const out = join(dir, 'poison-out');
    const t0 = Date.now();
    let r;
    try {
      r = await cli(base(out, list));
    } finally {
      spy.mockRestore();
    }
    const seconds = (Date.now() - t0) / 1000;
    expect(r.code, r.err).toBe(0);
    const rep = report(out) as ReturnType<typeof report> & { removedCaptions?: Record<string, number> };
    expect(rep.failed).toEqual({ malformed_record: 2, unsafe_path: 2, not_a_file: 1, image_too_large: 1 });
    expect(rep.removedCaptions).toEqual({ non_utf8_caption: 1 });
    expect(rep.input).toBe(13);
    const status = Object.fromEntries(
      lines(join(out, 'records.jsonl'))
        .map((l) => JSON.parse(l) as { key: string; status: string; reason?: string })
        .map((x) => [x.key, x.reason ?? x.status]),
    );
    expect(status['poison.jsonl:1']).not.toBe('failed'); // the control characters were scored and drawn
    expect(status['poison.jsonl:4']).not.toBe('failed'); // the latin-1 caption went, "good" stayed
    expect(status['poison.jsonl:5']).not.toBe('failed'); // U+FFFD is a character like any other
    expect(status['poison.jsonl:6']).toBe('unsafe_path');
    expect(status['poison.jsonl:8']).toBe('not_a_file');
    expect(status['poison.jsonl:9']).toBe('image_too_large');
    expect(status['poison.jsonl:10']).not.toBe('failed');
    // The 21 MB caption was cut before tokenizing: no text the tokenizer saw was longer than 4096 characters.
    expect(Math.max(...seen)).toBeLessThanOrEqual(MAX_SCORED_CHARS);
    expect(seconds).toBeLessThan(60);
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    // eslint-disable-next-line no-control-regex -- the test is that report.md holds none of them
    expect(md).not.toMatch(/[\u0000-\u0008\u000B\u000C\u000E-\u001F]/);
    expect((await sharp(join(out, 'samples.png')).metadata()).height).toBe(7 * 110); // the 7 records that were scored
  }, 120_000);
});

describe('capfilt: WebDataset keys, options, outputs (issue 14 items 10, 12)', () => {
  it('two shards numbered from 000000 give a cleaned.tar whose samples read back apart; a repeated key fails (item 10)', async () => {
    const recs = lines(fx.train)
      .slice(0, 3)
      .map((l) => JSON.parse(l) as { image: string; captions: string[] });
    const png = (i: number) => readFileSync(join(fx.data, (recs[i] as { image: string }).image));
    const shards: string[] = [];
    for (const s of ['a', 'b']) {
      const pack = tar.pack();
      recs.forEach((r, i) => {
        pack.entry({ name: `00000${i}.png` }, png(i));
        pack.entry({ name: `00000${i}.txt` }, `${s} ${r.captions[0]}`);
      });
      // Shard b repeats sample 000000 at its end: a duplicate key.
      if (s === 'b') {
        pack.entry({ name: '000000.png' }, png(0));
        pack.entry({ name: '000000.txt' }, 'b again');
      }
      pack.finalize();
      const parts: Buffer[] = [];
      for await (const c of pack as AsyncIterable<Buffer>) parts.push(c);
      const shard = join(dir, `wds-${s}.tar`);
      writeFileSync(shard, Buffer.concat(parts));
      shards.push(shard);
    }
    const out = join(dir, 'wds-two');
    const r = await cli([...base(out, shards[0]), shards[1] as string, '--threshold', '0']);
    expect(r.code, r.err).toBe(0);
    expect(report(out).failed).toEqual({ duplicate_key: 1 });
    const back: { key: string; caption: string }[] = [];
    for await (const x of readDataset({ path: join(out, 'cleaned.tar') })) back.push({ key: x.key, caption: x.captions[0] as string });
    expect(back.map((b) => b.key)).toEqual(['wds-a', 'wds-b'].flatMap((p) => [0, 1, 2].map((i) => `cleaned.tar:${p}/00000${i}`)));
    expect(back.map((b) => b.caption[0])).toEqual(['a', 'a', 'a', 'b', 'b', 'b']);
  });

  it('options out of range and a vocab.txt that disagrees with the config exit 2 before the first batch (item 12)', async () => {
    for (const [flag, value, msg] of [
      ['--top-p', '2', /--top-p must be in \(0, 1\], got 2/],
      ['--max-length', '100000', /--max-length must be an integer in \[2, 512\]/],
      ['--threshold=-1', '', /--threshold must be in \[0, 1\]/],
      ['--num-captions', '1.5', /--num-captions must be an integer/],
    ] as const) {
      const r = await cli([...base(join(dir, 'opts')), flag, ...(value ? [value] : [])]);
      expect(r.code, flag).toBe(2);
      expect(r.err).toMatch(msg);
    }
    expect(existsSync(join(dir, 'opts'))).toBe(false);
    const long = await cli([...base(join(dir, 'opts-long')), '--max-length', '100']);
    expect(long.code).toBe(2);
    expect(long.err).toMatch(/captioner texts of 100 tokens exceed its max_position_embeddings 64/);
    const badVocab = join(dir, 'filter-vocab');
    cpSync(fx.filter, badVocab, { recursive: true });
    appendFileSync(join(badVocab, 'vocab.txt'), Array.from({ length: 50 }, (_, i) => `extra${i}`).join('\n'));
    const out = join(dir, 'opts-vocab');
    const v = await cli(base(out, fx.train, badVocab));
    expect(v.code).toBe(2);
    // The words appended before the added [DEC] move it: the load-time id check (processor.ts) names it first.
    expect(v.err).toMatch(
      /CONFIG_INVALID.*\[DEC\] is 191 in \S*filter-vocab\/vocab\.txt but text_config\.bos_token_id is 141 in \S*filter-vocab\/config\.json/,
    );
    expect(existsSync(join(out, 'journal.jsonl'))).toBe(false);
    const help: string[] = [];
    await runCapfiltCli(['--help'], { out: (l) => help.push(l), err: () => {} });
    expect(help.join('\n')).toMatch(/tar input: cleaned\.tar/);
  });

  it('a failed final write leaves no partial outputs and names the file; ENOSPC names it too (item 12)', async () => {
    const out = join(dir, 'absent');
    expect((await cli(base(out))).code).toBe(0);
    rmSync(join(out, 'histograms.png'));
    mkdirSync(join(out, 'histograms.png', 'blocker'), { recursive: true });
    await expect(cli(base(out))).rejects.toThrow(/WRITE_FAILED.*cannot write histograms\.png/);
    for (const f of ['train.jsonl', 'records.jsonl', 'report.json', 'report.md', 'samples.png', DONE_FILE])
      expect(existsSync(join(out, f)), f).toBe(false);
    expect(readdirSync(out).filter((f) => f.endsWith('.tmp') || f === LOCK_FILE)).toEqual([]);
    rmSync(join(out, 'histograms.png'), { recursive: true });
    expect((await cli(base(out))).code).toBe(0);
    expect(existsSync(join(out, DONE_FILE))).toBe(true);
    await expect(writeNamed('report.json', '/dev/full', () => writeFile('/dev/full', 'x'))).rejects.toThrow(
      /WRITE_FAILED \[\/dev\/full\]: cannot write report\.json \(ENOSPC\)/,
    );
  });
});
