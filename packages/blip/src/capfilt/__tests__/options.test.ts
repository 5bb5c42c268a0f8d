// CapFilt's flags as @vl/core/cli parses them (issue 12): `blip capfilt --help` and `vl capfilt blip --help`
// list every flag with its description and default, `merge` is a subcommand with its own --out, and usage
// errors exit 2 naming the flag, before anything is read or written.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Io } from '@vl/core';
import { addModelCommands, createProgram, type ProgramState, runProgram } from '@vl/core/cli';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../../cli.js';

const dir = mkdtempSync(join(tmpdir(), 'capfilt-options-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function capture(): Io & { lines: string[]; errors: string[] } {
  const lines: string[] = [];
  const errors: string[] = [];
  return { lines, errors, out: (l) => lines.push(...l.split('\n')), err: (l) => errors.push(...l.split('\n')) };
}

/** `vl <argv>` over the registry (blip is registered by importing ../../cli.js). */
async function vl(argv: string[], io: Io): Promise<number> {
  const state: ProgramState = { code: 0 };
  const program = createProgram('vl', 'vl', io);
  addModelCommands(program, io, state);
  return runProgram(program, state, argv, io);
}

/** The help's option entries (a flag line and its wrapped continuation lines, whitespace collapsed), by long flag. */
function optionEntries(help: string[]): Map<string, string> {
  const entries = new Map<string, string>();
  let flag: string | undefined;
  for (const line of help) {
    const start = /^ {2}(?:-\w, )?(--[\w-]+)/.exec(line);
    if (start) flag = start[1];
    else if (!/^ {10,}\S/.test(line)) flag = undefined;
    if (flag !== undefined) entries.set(flag, [entries.get(flag), line.trim()].filter(Boolean).join(' '));
  }
  return entries;
}

// The flags of docs/capfilt.md's table, with the defaults it gives (undefined: no default).
const FLAGS: [string, string | undefined][] = [
  ['--data', undefined],
  ['--images', undefined],
  ['--out', undefined],
  ['--captioner', undefined],
  ['--filter', undefined],
  ['--num-captions', '1'],
  ['--top-p', '0.9'],
  ['--beam', undefined],
  ['--threshold', undefined],
  ['--keep-rate', undefined],
  ['--calibrate-on', '256'],
  ['--itc', undefined],
  ['--batch-size', '8'],
  ['--shard', undefined],
  ['--seed', '0'],
  ['--max-length', '30'],
  ['--quiet', undefined],
  ['--backend', undefined],
  ['--queue', undefined],
  ['--job', undefined],
  ['--item-size', '256'],
  ['--attempts', '3'],
];

describe('capfilt --help', () => {
  it('blip capfilt and vl capfilt blip list every flag with a description and its default', async () => {
    for (const run of [(io: Io) => runCli(['capfilt', '--help'], io), (io: Io) => vl(['capfilt', 'blip', '--help'], io)]) {
      const io = capture();
      expect(await run(io)).toBe(0);
      const entries = optionEntries(io.lines);
      for (const [flag, def] of FLAGS) {
        const entry = entries.get(flag);
        expect(entry, flag).toBeDefined();
        // A description follows the flag (and its value name).
        expect(entry, flag).toMatch(new RegExp(`^${flag}(?: <[^>]+>)? +\\S`));
        if (def !== undefined) expect(entry, flag).toContain(`(default: ${def})`);
        else expect(entry, flag).not.toMatch(/\(default: [\d.]+\)/);
      }
      expect(entries.get('--threshold')).toContain('default: 0.5 unless --keep-rate');
      const text = io.lines.join('\n');
      expect(text).toMatch(/merge \[options\] <shard-dirs\.\.\.>/);
      expect(text).toMatch(/tar input: cleaned\.tar/);
    }
  });

  it('merge has its own help with --out', async () => {
    const io = capture();
    expect(await runCli(['capfilt', 'merge', '--help'], io)).toBe(0);
    expect(optionEntries(io.lines).get('--out')).toMatch(/output folder/);
  });

  it("worker and status have their own help; the worker's CapFilt flags default to the job's", async () => {
    const io = capture();
    expect(await runCli(['capfilt', 'worker', '--help'], io)).toBe(0);
    const entries = optionEntries(io.lines);
    expect(entries.get('--concurrency')).toContain('(default: 1)');
    expect(entries.get('--stalled-interval')).toContain('(default: 30000)');
    for (const flag of ['--data', '--out', '--captioner', '--filter', '--seed', '--batch-size', '--keep-rate']) {
      expect(entries.get(flag), flag).toContain("(default: the job's)");
      expect(entries.get(flag), flag).not.toMatch(/\(default: [\d.]+\)/);
    }
    expect(entries.has('--shard')).toBe(false);
    const status = capture();
    expect(await runCli(['capfilt', 'status', '--help'], status)).toBe(0);
    expect([...optionEntries(status.lines).keys()].sort()).toEqual(['--help', '--job', '--queue']);
  });
});

describe('capfilt usage errors', () => {
  const out = join(dir, 'out');
  const base = ['--data', join(dir, 'train.jsonl'), '--out', out, '--captioner', dir, '--filter', dir, '--backend', 'cpu'];
  it.each([
    [['--top-p', 'x'], /--top-p <p>.*'x' is invalid\. must be a number/],
    [['--seed', ''], /--seed <s>.*'' is invalid/],
    [['--bogus'], /unknown option '--bogus'/],
    [['--backend', 'gpu'], /--backend <name>.*'gpu' is invalid\. Allowed choices are tfjs-node-gpu, tfjs-node, wasm, cpu/],
    [['--shard', '1-2'], /--shard must be i\/n with 0 ≤ i < n, got '1-2'/],
    [['--threshold', '0.5', '--keep-rate', '0.7'], /--threshold and --keep-rate exclude each other/],
    [['--batch-size', '0'], /--batch-size must be an integer in \[1, 4096\], got 0/],
    [['--queue', 'redis://127.0.0.1:1/0'], /--job must be 1–100 of A–Z a–z 0–9 \. _ -, got ''/],
    [['--queue', 'http://x', '--job', 'a'], /--queue must be a redis:\/\/HOST:PORT\/DB URL, got 'http:\/\/x'/],
    [['--job', 'a b', '--queue', 'redis://127.0.0.1:1/0'], /--job must be 1–100 of/],
    [['--queue', 'redis://127.0.0.1:1/0', '--job', 'a', '--item-size', '0'], /--item-size must be an integer in 1–1000000, got 0/],
    [['--queue', 'redis://127.0.0.1:1/0', '--job', 'a', '--shard', '0/2'], /--shard and --queue exclude each other/],
  ])('%j exits 2 naming the flag, and writes nothing', async (extra, message) => {
    const io = capture();
    expect(await runCli(['capfilt', ...base, ...extra], io)).toBe(2);
    expect(io.errors.join('\n')).toMatch(message);
    expect(existsSync(out)).toBe(false);
  });

  it('a missing required flag, and merge without --out or shard folders, exit 2 naming what is missing', async () => {
    for (const [argv, message] of [
      [['capfilt', '--out', out, '--backend', 'cpu'], /--data is required/],
      [['capfilt', '--data', 'x.jsonl', '--out', out, '--filter', dir, '--backend', 'cpu'], /--captioner is required/],
      [['capfilt', 'merge', dir], /--out is required/],
      [['capfilt', 'merge', '--out', out], /missing required argument 'shard-dirs'/],
    ] as const) {
      const io = capture();
      expect(await runCli([...argv], io), argv.join(' ')).toBe(2);
      expect(io.errors.join('\n')).toMatch(message);
    }
    expect(existsSync(out)).toBe(false);
  });
});
