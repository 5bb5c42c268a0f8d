// Crash safety of the built CLI: SIGKILL `blip capfilt` at random moments several times, rerun the
// same command each time, and check the final outputs are byte-identical to an uninterrupted run and
// that every input record is in records.jsonl exactly once. Needs `tsup` (nx runs build before test).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type CapfiltFixture, makeFixture } from './fixture.js';

const CLI = fileURLToPath(new URL('../../../bin/blip.js', import.meta.url));
let dir: string;
let fx: CapfiltFixture;

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build the package first (npx tsup)`);
  dir = mkdtempSync(join(tmpdir(), 'capfilt-crash-'));
  fx = await makeFixture(dir, { bad: true, images: 40 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const args = (out: string) => [
  'capfilt',
  '--data',
  fx.train,
  '--out',
  out,
  '--captioner',
  fx.captioner,
  '--filter',
  fx.filter,
  '--num-captions',
  '2',
  '--batch-size',
  '2',
  '--seed',
  '3',
  '--backend',
  'cpu',
  '--quiet',
];

/** Runs the CLI; with `killAfterMs` SIGKILLs it then. Resolves with the exit code (null when killed) and the wall time. */
function runCli(out: string, killAfterMs?: number): Promise<{ code: number | null; ms: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [CLI, ...args(out)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = killAfterMs !== undefined ? setTimeout(() => child.kill('SIGKILL'), killAfterMs) : null;
    child.on('error', reject);
    child.on('exit', (code) => {
      if (timer) clearTimeout(timer);
      resolve({ code, ms: Date.now() - t0, stderr });
    });
  });
}

const OUTPUTS = ['train.jsonl', 'records.jsonl', 'report.json', 'report.md', 'histograms.png', 'samples.png', 'capfilt.done.json'];

it('resumes after SIGKILL at random moments with output identical to an uninterrupted run', async () => {
  const clean = join(dir, 'clean');
  const first = await runCli(clean);
  expect(first.code, first.stderr).toBe(0);
  const crashed = join(dir, 'crashed');
  const kills: number[] = [];
  let killed = 0;
  // Moments spread over the whole run (start-up, journaling, writing outputs), drawn at random. The
  // first lands well inside a fresh run (20–60% of the clean run's time): later kills hit resumed
  // runs, which are shorter and may finish first, so without it a fast machine could kill nothing.
  for (let k = 0; k < 5; k++) {
    const at = Math.round(k === 0 ? first.ms * (0.2 + 0.4 * Math.random()) : 300 + Math.random() * first.ms);
    kills.push(at);
    const r = await runCli(crashed, at);
    if (r.code === null) killed++;
    else expect(r.code, r.stderr).toBe(0);
  }
  const last = await runCli(crashed);
  expect(last.code, `${last.stderr} (kills at ${kills.join(', ')} ms)`).toBe(0);
  expect(killed, `kills at ${kills.join(', ')} ms`).toBeGreaterThan(0);
  for (const f of OUTPUTS)
    expect(readFileSync(join(crashed, f)).equals(readFileSync(join(clean, f))), `${f} (kills at ${kills.join(', ')} ms)`).toBe(true);
  const inputs = readFileSync(fx.train, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '').length;
  const indexes = readFileSync(join(crashed, 'records.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { index: number }).index);
  expect(indexes).toEqual([...Array(inputs).keys()]);
  expect(readdirSync(crashed).filter((f) => f.endsWith('.tmp') || f === 'capfilt.lock')).toEqual([]);
}, 240_000);
