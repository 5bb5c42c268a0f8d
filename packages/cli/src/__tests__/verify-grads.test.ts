// `vl verify NAME --grads`: the reference's gradients of every loss (fixtures' grads.safetensors)
// compared parameter by parameter after the outputs; exit 0 on the ALBEF and BLIP fixtures with a
// row per loss giving its worst tensor, 1 when a gradient differs, 2 when the file is missing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HostTensor } from '@vl/core';
import { readSafetensorsFile, writeSafetensorsFile } from '@vl/core/node';
import { captureIo } from '@vl/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { runVl } from '../program.js';

const FIXTURES = fileURLToPath(new URL('../../../../fixtures/', import.meta.url));
const ALBEF = join(FIXTURES, 'albef-official', 'albef-seed0');
const BLIP = join(FIXTURES, 'blip-hf', 'blip-retrieval-seed0');
const tmp = mkdtempSync(join(tmpdir(), 'vl-grads-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const verify = (model: string, dir: string, grads = join(dir, 'grads.safetensors')) => [
  'verify',
  model,
  '--checkpoint',
  dir,
  '--inputs',
  join(dir, 'inputs.json'),
  '--expected',
  join(dir, 'expected.json'),
  '--grads',
  grads,
  '--backend',
  'cpu',
];

const lossRow = (loss: string, count: number) =>
  new RegExp(`^${loss} gradients +\\[\\] +(\\S+) +0\\.0001 +ok \\(${count} tensors; worst ${loss}/\\S+\\)$`, 'm');

describe('vl verify --grads', () => {
  it('albef: ITA, ITM and MLM gradients within 1e-4, exit 0', async () => {
    const c = captureIo();
    expect(await runVl(verify('albef', ALBEF), c.io), c.err.join('\n')).toBe(0);
    const text = c.out.join('\n');
    expect(text).toContain('(outputs and gradients)');
    for (const [loss, count] of [
      ['ita', 72],
      ['itm', 121],
      ['mlm', 124],
    ] as const) {
      const worst = Number(lossRow(loss, count).exec(text)?.[1]);
      expect(worst, loss).toBeLessThanOrEqual(1e-4);
      expect(text).toMatch(new RegExp(`^${loss} loss +\\[\\] +\\S+ +0\\.0001 +ok$`, 'm'));
    }
    expect(text).toMatch(/^mlm_logits .* ok$/m);
    expect(text).toContain('all outputs within tolerance');
  });

  it('blip: ITM and ITC gradients within 1e-4, exit 0; --json carries the same rows', async () => {
    const c = captureIo();
    expect(await runVl([...verify('blip', BLIP), '--json'], c.io), c.err.join('\n')).toBe(0);
    const report = JSON.parse(c.out.join('\n')) as { passed: boolean; checks: { name: string; passed: boolean; maxAbsDiff: number }[] };
    expect(report.passed).toBe(true);
    for (const name of ['itm loss', 'itm gradients', 'itc loss', 'itc gradients']) {
      const row = report.checks.find((r) => r.name === name);
      expect(row?.passed, name).toBe(true);
      expect(row!.maxAbsDiff, name).toBeLessThanOrEqual(1e-4);
    }
  });

  it('exits 1 naming the parameter whose gradient differs', async () => {
    const file = await readSafetensorsFile(join(ALBEF, 'grads.safetensors'));
    const out = new Map<string, HostTensor>([...file.tensors].filter(([k]) => k.startsWith('ita/')));
    const temp = out.get('ita/temp')!;
    out.set('ita/temp', { ...temp, data: Float32Array.of(temp.data[0]! + 0.5) });
    const path = join(tmp, 'albef-perturbed.safetensors');
    await writeSafetensorsFile(path, out, { format: 'pt' });
    const c = captureIo();
    expect(await runVl(verify('albef', ALBEF, path), c.io)).toBe(1);
    const text = c.out.join('\n');
    expect(text).toMatch(/^ita\/temp +\[\] +5\.00e-1 +0\.0001 +FAIL$/m);
    expect(text).toMatch(/^ita gradients .* FAIL \(72 tensors; worst ita\/temp; 1 listed below\)$/m);
    expect(text).toContain('2 output(s) out of tolerance');
  });

  it('exits 2 when the gradients file does not exist', async () => {
    const c = captureIo();
    expect(await runVl(verify('albef', ALBEF, join(tmp, 'none.safetensors')), c.io)).toBe(2);
    expect(c.err.join('\n')).toMatch(/no such gradients file/);
  });
});
