// The `vlmo` alias (= `vl <command> vlmo`): verify exits 0 on both official fixtures with a per-output
// report, 1 on a perturbed expected file or past the tolerance, 2 on usage errors; the committed bin
// runs the built CLI.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initRuntime } from '@vl/core';
import { captureIo, verifyArgs } from '@vl/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli.js';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/vlmo-official/', import.meta.url));
const BASE = join(FIXTURES, 'vlmo-seed0');
const PLUS = join(FIXTURES, 'vlmo-plus-seed4');
const tmp = mkdtempSync(join(tmpdir(), 'vlmo-cli-'));

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('vlmo verify', () => {
  it('passes on both official fixtures (folder and .pth) and lists every output', async () => {
    for (const [dir, checkpoint] of [
      [BASE, BASE],
      [PLUS, join(PLUS, 'pytorch_model.pth')],
    ] as const) {
      const c = captureIo();
      expect(await runCli(verifyArgs(dir, undefined, checkpoint), c.io), c.err.join('\n')).toBe(0);
      const text = c.out.join('\n');
      for (const name of ['image_cls_vlffn_feats', 'itc_vl_i2t_logits', 'fusion_cls_feats', 'itm_logits_rolled_images', 'textmlm_loss']) {
        expect(text).toMatch(new RegExp(`${name} .* ok`));
      }
      expect(text).toContain('all outputs within tolerance');
    }
  });

  it('exits 1 on a perturbed expected file, naming the output that differs', async () => {
    const expected = JSON.parse(readFileSync(join(BASE, 'expected.json'), 'utf8')) as { outputs: Record<string, { data: unknown }> };
    const scale = expected.outputs.itc_logit_vl_scale as { data: number };
    scale.data += 0.01;
    const perturbed = join(tmp, 'perturbed.json');
    writeFileSync(perturbed, JSON.stringify(expected));
    const c = captureIo();
    expect(await runCli(verifyArgs(BASE, perturbed), c.io)).toBe(1);
    const text = c.out.join('\n');
    expect(text).toMatch(/itc_logit_vl_scale\s+\[\]\s+1\.00e-2\s+0\.0001\s+FAIL/);
    expect(text).toContain('1 output(s) out of tolerance');
    const tight = captureIo();
    expect(await runCli([...verifyArgs(PLUS), '--tol', '1e-12'], tight.io)).toBe(1);
  });

  it('exits 2 on missing arguments, a bad tolerance or a missing checkpoint', async () => {
    const c = captureIo();
    expect(await runCli(['verify', '--checkpoint', BASE], c.io)).toBe(2);
    expect(c.err.join('\n')).toMatch(/--inputs is required/);
    expect(await runCli([...verifyArgs(BASE), '--tol', 'abc'], c.io)).toBe(2);
    expect(await runCli(verifyArgs(BASE, undefined, join(tmp, 'nonexistent')), c.io)).toBe(2);
  });
});

describe('bin/vlmo.js', () => {
  it('prints its help and runs verify with its exit code', () => {
    const bin = fileURLToPath(new URL('../../bin/vlmo.js', import.meta.url));
    const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/verify/);
    const ok = spawnSync(process.execPath, [bin, ...verifyArgs(PLUS)], { encoding: 'utf8' });
    expect(ok.status, ok.stderr).toBe(0);
    const bad = spawnSync(process.execPath, [bin, ...verifyArgs(BASE), '--tol', '1e-12'], { encoding: 'utf8' });
    expect(bad.status, bad.stderr).toBe(1);
  });
});
