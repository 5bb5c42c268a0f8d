// The `beit3` alias (= `vl <command> beit3`): verify exits 0 on the official fixtures with a per-output
// report, 1 on a perturbed expected file or past the tolerance, 2 on usage errors; the committed bin runs
// the built CLI.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initRuntime } from '@vl/core';
import { captureIo, verifyArgs } from '@vl/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli.js';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/beit3-official/', import.meta.url));
const RETRIEVAL = join(FIXTURES, 'beit3-retrieval-seed0');
const NLVR2 = join(FIXTURES, 'beit3-nlvr2-seed0');
const tmp = mkdtempSync(join(tmpdir(), 'beit3-cli-'));

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('beit3 verify', () => {
  it('passes on the official fixtures (folder and .pth) and lists every output', async () => {
    for (const [dir, checkpoint] of [
      [RETRIEVAL, RETRIEVAL],
      [NLVR2, join(NLVR2, 'pytorch_model.pth')],
    ] as const) {
      const c = captureIo();
      expect(await runCli(verifyArgs(dir, undefined, checkpoint), c.io), c.err.join('\n')).toBe(0);
      const text = c.out.join('\n');
      const names =
        dir === RETRIEVAL ? ['joint_layer0_out', 'image_masked_encoder_out', 'clip_loss', 'logits_per_text'] : ['head_input', 'logits'];
      for (const name of names) expect(text).toMatch(new RegExp(`${name} .* ok`));
      expect(text).toContain('all outputs within tolerance');
    }
  });

  it('exits 1 on a perturbed expected file, naming the output that differs', async () => {
    const expected = JSON.parse(readFileSync(join(RETRIEVAL, 'expected.json'), 'utf8')) as { outputs: Record<string, { data: unknown }> };
    const scale = expected.outputs.logit_scale as { data: number };
    scale.data += 0.01;
    const perturbed = join(tmp, 'perturbed.json');
    writeFileSync(perturbed, JSON.stringify(expected));
    const c = captureIo();
    expect(await runCli(verifyArgs(RETRIEVAL, perturbed), c.io)).toBe(1);
    const text = c.out.join('\n');
    expect(text).toMatch(/logit_scale\s+\[\]\s+1\.00e-2\s+0\.0001\s+FAIL/);
    expect(text).toContain('1 output(s) out of tolerance');
    const tight = captureIo();
    expect(await runCli([...verifyArgs(NLVR2), '--tol', '1e-12'], tight.io)).toBe(1);
  });

  it('exits 2 on missing arguments, a bad tolerance or a missing checkpoint', async () => {
    const c = captureIo();
    expect(await runCli(['verify', '--checkpoint', RETRIEVAL], c.io)).toBe(2);
    expect(c.err.join('\n')).toMatch(/--inputs is required/);
    expect(await runCli([...verifyArgs(RETRIEVAL), '--tol', 'abc'], c.io)).toBe(2);
    expect(await runCli(verifyArgs(RETRIEVAL, undefined, join(tmp, 'nonexistent')), c.io)).toBe(2);
  });
});

describe('bin/beit3.js', () => {
  it('runs verify and exits with its code (1 past a tolerance no float output meets)', () => {
    const bin = fileURLToPath(new URL('../../bin/beit3.js', import.meta.url));
    const run = spawnSync(process.execPath, [bin, ...verifyArgs(NLVR2), '--tol', '1e-12'], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(1);
    expect(run.stdout).toMatch(/multiway_split_position\s+\[\]\s+0\.00e\+0\s+0\s+ok/);
    expect(run.stdout).toMatch(/logits\s+\[2,2\].*FAIL/);
  });
});
