// CapFilt on a job queue (issue 21) against a real Redis (redis.ts): a coordinator and worker processes
// of the built CLI give the same bytes as one process, and the faults the issue lists (workers killed,
// drained, a poison item, Redis killed, a mismatched worker, an unreachable URL) end as documented.
// Needs `tsup` (nx runs build before test) and `redis-server` on PATH.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type CapfiltFixture, makeFixture } from './fixture.js';
import { startRedis, type TestRedis } from './redis.js';

const CLI = fileURLToPath(new URL('../../../bin/blip.js', import.meta.url));
const OUTPUTS = [
  'train.jsonl',
  'records.jsonl',
  'report.json',
  'report.md',
  'histograms.png',
  'samples.png',
  'capfilt.done.json',
  'journal.jsonl',
];
let dir: string;
let fx: CapfiltFixture;
let redis: TestRedis;
let single: string;
let inputs: number;
let singleStdout: string;

const common = () => [
  '--data',
  fx.train,
  '--captioner',
  fx.captioner,
  '--filter',
  fx.filter,
  '--num-captions',
  '1',
  '--keep-rate',
  '0.7',
  '--calibrate-on',
  '8',
  '--batch-size',
  '2',
  '--seed',
  '3',
  '--backend',
  'cpu',
];

interface Proc {
  child: ChildProcess;
  stderr: () => string;
  stdout: () => string;
  exit: Promise<number | null>;
  /** Resolves when stderr has matched `re` (rejects after `ms`). */
  waitFor(re: RegExp, ms?: number): Promise<void>;
}

function cli(args: string[]): Proc {
  const child = spawn(process.execPath, [CLI, 'capfilt', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  let out = '';
  const waiters: { re: RegExp; resolve: () => void }[] = [];
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of waiters.splice(0))
      if (w.re.test(err)) w.resolve();
      else waiters.push(w);
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    stderr: () => err,
    stdout: () => out,
    exit,
    waitFor(re, ms = 60_000) {
      if (re.test(err)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no ${re} within ${ms} ms in:\n${err}`)), ms);
        waiters.push({ re, resolve: () => (clearTimeout(t), resolve()) });
        void exit.then(() => setTimeout(() => reject(new Error(`exited before ${re}:\n${err}`)), 50));
      });
    },
  };
}

const coordinator = (out: string, job: string, extra: string[] = []) =>
  cli([...common(), '--out', out, '--queue', redis.url, '--job', job, '--item-size', '4', ...extra]);
const worker = (job: string, extra: string[] = []) =>
  cli(['worker', '--queue', redis.url, '--job', job, '--backend', 'cpu', '--stalled-interval', '1000', ...extra]);

async function expectCode(p: Proc, code: number): Promise<void> {
  expect(await p.exit, p.stderr()).toBe(code);
}

/** Every output byte-identical to the single-process run, and every input record once in records.jsonl. */
function expectSameAsSingle(out: string): void {
  for (const f of OUTPUTS) expect(readFileSync(join(out, f)).equals(readFileSync(join(single, f))), f).toBe(true);
  const indexes = readFileSync(join(out, 'records.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { index: number }).index);
  expect(indexes).toEqual([...Array(inputs).keys()]);
  expect(existsSync(join(out, 'items'))).toBe(false);
  expect(readdirSync(out).filter((f) => f.endsWith('.tmp') || f === 'capfilt.lock')).toEqual([]);
}

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build the package first (npx tsup)`);
  dir = mkdtempSync(join(tmpdir(), 'capfilt-queue-'));
  redis = await startRedis();
  fx = await makeFixture(dir, { bad: true, images: 30 });
  single = join(dir, 'single');
  const r = cli([...common(), '--out', single, '--quiet']);
  await expectCode(r, 0);
  singleStdout = r.stdout();
  inputs = readFileSync(join(single, 'records.jsonl'), 'utf8').trim().split('\n').length;
}, 120_000);
afterAll(async () => {
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it('3 workers write the same bytes as one process; status reports the job from anywhere', async () => {
  const out = join(dir, 'three');
  const c = coordinator(out, 'three');
  const ws = [worker('three'), worker('three'), worker('three')];
  await ws[0]?.waitFor(/item \d+-\d+ done/);
  const status = cli(['status', '--queue', redis.url, '--job', 'three']);
  await expectCode(status, 0);
  expect(status.stdout()).toMatch(new RegExp(`job three: .*\\n  ${inputs} records in ${Math.ceil(inputs / 4)} items of 4`));
  expect(status.stdout()).toMatch(/items: \d+ done, \d+ active, \d+ waiting, 0 retrying, 0 failed\n {2}records: \d+\/\d+ .* workers/);
  await expectCode(c, 0);
  for (const w of ws) await expectCode(w, 0);
  expect(
    ws.every((w) => /item \d+-\d+ done/.test(w.stderr())),
    ws.map((w) => w.stderr()).join('\n'),
  ).toBe(true);
  expectSameAsSingle(out);
  expect(c.stdout().split(out).join('OUT')).toBe(singleStdout.split(single).join('OUT'));
}, 120_000);
