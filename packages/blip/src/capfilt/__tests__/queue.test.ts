// CapFilt on a job queue (issue 21) against a real Redis (redis.ts): a coordinator and worker processes
// of the built CLI give the same bytes as one process, and the faults the issue lists (workers killed,
// drained, a poison item, Redis killed, a mismatched worker, an unreachable URL) end as documented.
// Needs `tsup` (nx runs build before test) and `redis-server` on PATH.
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type CapfiltFixture, makeFixture } from './fixture.js';
import { freePort, startRedis, type TestRedis } from './redis.js';

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
// A short lock and stalled check (1 s) so a killed worker's item moves on quickly. A worker whose event loop
// is blocked (tfjs on CPU) for over half of it may lose its item's lock: another worker then does the item
// again, which is harmless (same bytes).
const worker = (job: string, extra: string[] = [], stalledMs = 1000) =>
  cli(['worker', '--queue', redis.url, '--job', job, '--backend', 'cpu', '--stalled-interval', String(stalledMs), ...extra]);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
  fx = await makeFixture(dir, { bad: true, images: 20 });
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
  const items = Math.ceil(inputs / 4);
  // Before any worker: every item waiting (status polled until the coordinator has enqueued them all).
  const waiting = `  items: 0 done, 0 active, ${items} waiting, 0 retrying, 0 failed\n  records: 0/${inputs} (0.0%), 0 workers, ? records/s, ETA ?\n`;
  let before = '';
  for (let i = 0; i < 40 && !before.endsWith(waiting); i++) {
    const s = cli(['status', '--queue', redis.url, '--job', 'three']);
    await s.exit;
    before = s.stdout();
    if (!before.endsWith(waiting)) await sleep(250);
  }
  expect(before).toMatch(
    new RegExp(
      `^job three: fingerprint [0-9a-f]{16}, created \\S+, out ${out}\n  ${inputs} records in ${items} items of 4, threshold [\\d.]+, 3 attempts per item\n`,
    ),
  );
  expect(before.endsWith(waiting), before).toBe(true);
  const ws = [worker('three'), worker('three'), worker('three')];
  await expectCode(c, 0);
  expect(c.stderr()).not.toMatch(/failed for good/);
  for (const w of ws) await expectCode(w, 0);
  expect(
    ws.every((w) => /item \d+-\d+ done/.test(w.stderr())),
    ws.map((w) => w.stderr()).join('\n'),
  ).toBe(true);
  const after = cli(['status', '--queue', redis.url, '--job', 'three']);
  await expectCode(after, 0);
  expect(after.stdout()).toMatch(/\n {2}finished \d{4}-\d\d-\d\dT\S+\n$/);
  expectSameAsSingle(out);
  expect(c.stdout().split(out).join('OUT')).toBe(singleStdout.split(single).join('OUT'));
}, 120_000);

it('a worker SIGKILLed at random moments 3 times: its items go to other workers, same bytes, every record once', async () => {
  const out = join(dir, 'killed');
  const c = coordinator(out, 'killed');
  const kills: number[] = [];
  // Victims first, one at a time, so each dies while the job is far from done (most likely mid-item:
  // a ready worker takes an item at once); then a worker that stays finishes, taking over the stalled items.
  for (let k = 0; k < 3; k++) {
    const victim = worker('killed');
    await victim.waitFor(/ready for job/);
    const at = Math.round(Math.random() * 1500);
    kills.push(at);
    await sleep(at);
    victim.child.kill('SIGKILL');
    expect(await victim.exit, victim.stderr()).toBe(null);
  }
  const steady = worker('killed');
  await expectCode(c, 0);
  await expectCode(steady, 0);
  expectSameAsSingle(out);
}, 180_000);

it('SIGTERM drains: the worker finishes the item in hand and exits 0; a killed coordinator rerun resumes', async () => {
  const out = join(dir, 'drain');
  const c = coordinator(out, 'drain');
  // A lock long enough that this worker keeps its item while busy: nothing may be left active.
  const w = worker('drain', [], 5000);
  await w.waitFor(/item \d+-\d+ done/);
  w.child.kill('SIGTERM');
  await expectCode(w, 0);
  expect(w.stderr()).toMatch(/SIGTERM: finishing the item in hand, exiting/);
  // At most the item in hand is finished after the signal; nothing is left locked for the stalled check.
  expect((w.stderr().split('SIGTERM')[1] ?? '').match(/ done \(/g)?.length ?? 0).toBeLessThanOrEqual(1);
  const status = cli(['status', '--queue', redis.url, '--job', 'drain']);
  await expectCode(status, 0);
  expect(status.stdout(), w.stderr()).toMatch(/items: \d+ done, 0 active/);
  // The coordinator dies too; rerunning it resumes: the items written are not enqueued (nor done) again.
  c.child.kill('SIGKILL');
  await c.exit;
  const again = coordinator(out, 'drain');
  const w2 = worker('drain');
  await expectCode(again, 0);
  await expectCode(w2, 0);
  expectSameAsSingle(out);
  const ids = (p: Proc) => [...p.stderr().matchAll(/item (\d+-\d+) done/g)].map((m) => m[1]);
  expect(ids(w).length).toBeGreaterThan(0);
  expect(ids(w2).filter((id) => ids(w).includes(id))).toEqual([]);
}, 120_000);

it('a poison item (its file cannot be written) goes to the failed set; its records end failed and the counts add up', async () => {
  const out = join(dir, 'poison');
  // A folder where item 4–8's file goes: every worker's rename onto it fails (EISDIR), every attempt.
  mkdirSync(join(out, 'items', '0000000004-0000000008.json'), { recursive: true });
  const c = coordinator(out, 'poison', ['--attempts', '2']);
  const w = worker('poison');
  await expectCode(c, 0);
  await expectCode(w, 0);
  expect(c.stderr()).toMatch(/item 0000000004-0000000008 failed for good: WRITE_FAILED .*EISDIR.* \(after 2 attempts\)/);
  const lines = readFileSync(join(out, 'records.jsonl'), 'utf8').trim().split('\n');
  const want = readFileSync(join(single, 'records.jsonl'), 'utf8').trim().split('\n');
  expect(lines).toHaveLength(inputs);
  lines.forEach((l, i) => {
    if (i < 4 || i >= 8) expect(l).toBe(want[i]);
    else expect(JSON.parse(l)).toEqual({ ...JSON.parse(want[i] as string), status: 'failed', reason: 'item_failed' });
  });
  const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as {
    input: number;
    balanced: boolean;
    counts: Record<string, number>;
    failed: Record<string, number>;
  };
  expect(report.balanced).toBe(true);
  expect(Object.values(report.counts).reduce((a, b) => a + b, 0)).toBe(inputs);
  expect(report.failed.item_failed).toBe(4);
}, 120_000);

it('Redis killed mid-run and restarted empty: workers reconnect, the coordinator enqueues again, same bytes', async () => {
  const out = join(dir, 'redis-restart');
  const c = coordinator(out, 'restart');
  const ws = [worker('restart'), worker('restart')];
  await ws[0]?.waitFor(/item \d+-\d+ done/);
  await redis.kill();
  await sleep(1000);
  await redis.start();
  await expectCode(c, 0);
  for (const w of ws) await expectCode(w, 0);
  expectSameAsSingle(out);
}, 180_000);

it('a worker or coordinator with other options or files than the job is refused, naming the difference', async () => {
  const c = coordinator(join(dir, 'mismatch'), 'mismatch');
  const seed = worker('mismatch', ['--seed', '9']);
  await expectCode(seed, 2);
  expect(seed.stderr()).toMatch(/RESUME_MISMATCH \[mismatch\]: worker .* differs from queue job 'mismatch': option seed 3 → 9/);
  const filter = join(dir, 'filter-edited');
  cpSync(fx.filter, filter, { recursive: true });
  appendFileSync(join(filter, 'model.safetensors'), 'x');
  const other = worker('mismatch', ['--filter', filter]);
  await expectCode(other, 2);
  expect(other.stderr()).toMatch(/differs from queue job 'mismatch': filter file model.safetensors changed/);
  const c2 = coordinator(join(dir, 'mismatch-2'), 'mismatch', ['--seed', '9']);
  await expectCode(c2, 2);
  expect(c2.stderr()).toMatch(/this command differs from queue job 'mismatch': option seed 3 → 9/);
  c.child.kill('SIGKILL');
  await c.exit;
  // A worker started before its job exists waits for it, and a SIGTERM meanwhile ends it at once.
  const early = worker('not-yet');
  await early.waitFor(/waiting for job 'not-yet'/);
  early.child.kill('SIGTERM');
  await expectCode(early, 0);
}, 120_000);

it('an unreachable queue URL fails within seconds, naming it (status, worker, coordinator)', async () => {
  const url = `redis://127.0.0.1:${await freePort()}/0`;
  const t0 = Date.now();
  const runs = [
    cli(['status', '--queue', url, '--job', 'x']),
    cli(['worker', '--queue', url, '--job', 'x']),
    cli([...common(), '--out', join(dir, 'unreachable'), '--queue', url, '--job', 'x']),
  ];
  for (const r of runs) {
    await expectCode(r, 1);
    expect(r.stderr()).toMatch(/QUEUE_UNREACHABLE \[redis:\/\/127\.0\.0\.1:\d+\/0\]: cannot reach the queue: .*ECONNREFUSED/);
  }
  expect(Date.now() - t0).toBeLessThan(20_000);
}, 60_000);
