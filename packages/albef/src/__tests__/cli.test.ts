// The `albef` alias (= `vl <command> albef`): verify exits 0 within tolerance with a per-output report,
// 1 past it, 2 on usage errors; the committed bin runs the built CLI.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initRuntime } from '@vl/core';
import { captureIo } from '@vl/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli.js';

const DIR = fileURLToPath(new URL('../../../../fixtures/albef-official/albef-seed0/', import.meta.url));
const args = ['verify', '--model', DIR, '--inputs', join(DIR, 'inputs.json'), '--expected', join(DIR, 'expected.json'), '--backend', 'cpu'];

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

describe('albef verify', () => {
  it('passes on the official fixture and lists every output', async () => {
    const c = captureIo();
    expect(await runCli(args, c.io)).toBe(0);
    const text = c.out.join('\n');
    for (const name of ['image_embeds', 'sim_i2t', 'itm_logits_all', 'mlm_logits', 'mlm_loss_ce']) expect(text).toContain(name);
    expect(text).toContain('all outputs within tolerance');
  });

  it('exits 1 past the tolerance', async () => {
    const c = captureIo();
    expect(await runCli([...args, '--tol', '1e-12'], c.io)).toBe(1);
    expect(c.out.join('\n')).toMatch(/out of tolerance/);
  });

  it('exits 2 on missing arguments, a bad tolerance or a missing model folder', async () => {
    const c = captureIo();
    expect(await runCli(['verify', '--model', DIR], c.io)).toBe(2);
    expect(c.err.join('\n')).toMatch(/--inputs is required/);
    expect(await runCli([...args, '--tol', 'abc'], c.io)).toBe(2);
    expect(
      await runCli(
        ['verify', '--model', '/nonexistent', '--inputs', join(DIR, 'inputs.json'), '--expected', join(DIR, 'expected.json')],
        c.io,
      ),
    ).toBe(2);
    expect(await runCli(['frobnicate'], c.io)).toBe(2);
  });
});

describe('bin/albef.js', () => {
  it('prints its help and runs verify with its exit code', () => {
    const bin = fileURLToPath(new URL('../../bin/albef.js', import.meta.url));
    const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/verify/);
    const bad = spawnSync(process.execPath, [bin, ...args, '--tol', '1e-12'], { encoding: 'utf8' });
    expect(bad.status, bad.stderr).toBe(1);
  });
});
