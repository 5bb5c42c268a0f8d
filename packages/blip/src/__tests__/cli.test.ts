// The `blip` CLI: verify passes on both fixtures and fails past a tiny tolerance; usage errors exit 2;
// the built bin runs.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initRuntime } from '@vl/core';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Io } from '@vl/core';
import { runCli } from '../cli.js';
import { CAPTIONING, RETRIEVAL } from './helpers.js';

function capture(): Io & { lines: string[]; errors: string[] } {
  const lines: string[] = [];
  const errors: string[] = [];
  return { lines, errors, out: (l) => lines.push(l), err: (l) => errors.push(l) };
}

const verifyArgs = (dir: string) => [
  'verify',
  '--model',
  dir,
  '--inputs',
  join(dir, 'inputs.json'),
  '--expected',
  join(dir, 'expected.json'),
  '--backend',
  'cpu',
];

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

describe('blip verify', () => {
  it('prints the max abs diff of every output and exits 0 within tolerance', async () => {
    for (const dir of [CAPTIONING, RETRIEVAL]) {
      const io = capture();
      expect(await runCli(verifyArgs(dir), io)).toBe(0);
      const text = io.lines.join('\n');
      expect(text).toContain('all outputs within tolerance');
      expect(text).toMatch(dir === CAPTIONING ? /beam_sequences_scores\s+\[2\]/ : /itc_similarity\s+\[2,2\]/);
    }
  });

  it('exits 1 past --tol, naming the outputs out of tolerance', async () => {
    const io = capture();
    expect(await runCli([...verifyArgs(CAPTIONING), '--tol', '1e-9'], io)).toBe(1);
    expect(io.lines.join('\n')).toMatch(/decoder_logits.*FAIL/);
  });

  it('--json gives a machine-readable report', async () => {
    const io = capture();
    expect(await runCli([...verifyArgs(RETRIEVAL), '--json'], io)).toBe(0);
    const r = JSON.parse(io.lines.join('\n')) as { title: string; passed: boolean; checks: { name: string }[] };
    expect(r.title).toBe(`BlipForImageTextRetrieval ${RETRIEVAL}`);
    expect(r.checks).toHaveLength(8);
  });

  it('usage errors exit 2 with the command help', async () => {
    const io = capture();
    expect(await runCli(['verify', '--model', CAPTIONING], io)).toBe(2);
    expect(io.errors.join('\n')).toContain('--inputs is required');
    expect(await runCli(['nope'], capture())).toBe(2);
    expect(await runCli(['verify', '--bogus'], capture())).toBe(2);
  });
});

describe('the built bin', () => {
  const bin = fileURLToPath(new URL('../../bin/blip.js', import.meta.url));
  it('is bin/blip.js, runs verify and exits with its code', () => {
    expect(existsSync(bin)).toBe(true);
    const ok = spawnSync(process.execPath, [bin, ...verifyArgs(CAPTIONING)], { encoding: 'utf8' });
    expect(ok.status, ok.stderr).toBe(0);
    const bad = spawnSync(process.execPath, [bin, ...verifyArgs(CAPTIONING), '--tol', '1e-9'], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(execFileSync(process.execPath, [bin, '--help'], { encoding: 'utf8' })).toContain('verify');
  });
});
