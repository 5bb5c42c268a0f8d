// CapFilt under hostile but realistic use (issue 14): two runs on one --out, counts checked against
// the source, --out over the input, resume refused when data or models changed, NaN scores.
import { spawnSync } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCapfiltCli } from '../cli.js';
import { LOCK_FILE } from '../lock.js';
import { DONE_FILE } from '../output.js';
import { type CapfiltFixture, makeFixture } from './fixture.js';

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
      new RegExp(`another CapFilt run writes to this folder \\(pid ${process.pid} on ${hostname()}`)
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
