// ALBEF gradient parity on the cpu backend (grads-suite.ts), and how `albef verify --grads` reports a
// gradient file that differs: exit 1 with a row naming each parameter out of tolerance, one the model
// lacks and a loss it does not replay; exit 2 on an unreadable or missing file.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HostTensor } from '@vl/core';
import { readSafetensorsFile, writeSafetensorsFile } from '@vl/core/node';
import { captureIo } from '@vl/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli.js';
import { albefGradientSuite, DIR } from './grads-suite.js';

albefGradientSuite('cpu');

const args = (grads: string) => [
  'verify',
  '--model',
  DIR,
  '--inputs',
  join(DIR, 'inputs.json'),
  '--expected',
  join(DIR, 'expected.json'),
  '--grads',
  grads,
  '--backend',
  'cpu',
];

describe('albef verify --grads', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'albef-grads-'));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('exits 1 naming a perturbed gradient, a parameter the model lacks and a loss it does not replay', async () => {
    const file = await readSafetensorsFile(join(DIR, 'grads.safetensors'));
    // The ITM gradients only (one loss keeps the test short), one element of itm_head.bias moved by 0.01.
    const out = new Map<string, HostTensor>([...file.tensors].filter(([k]) => k.startsWith('itm/')));
    const bias = out.get('itm/itm_head.bias')!;
    const moved = Float32Array.from(bias.data);
    moved[1]! += 0.01;
    out.set('itm/itm_head.bias', { ...bias, data: moved });
    out.set('itm/itm_head.scale', { ...bias });
    out.set('nsp/itm_head.bias', { ...bias });
    const path = join(tmp, 'perturbed.safetensors');
    await writeSafetensorsFile(path, out, { format: 'pt' });
    const c = captureIo();
    expect(await runCli(args(path), c.io), c.err.join('\n')).toBe(1);
    const text = c.out.join('\n');
    expect(text).toMatch(/^itm\/itm_head\.bias\s+\[2\]\s+1\.00e-2\s+0\.0001\s+FAIL/m);
    expect(text).toMatch(
      /^itm\/itm_head\.scale .* FAIL \(only in the reference: the model has no trainable parameter 'itm_head\.scale'\)/m,
    );
    expect(text).toMatch(/^itm gradients .* 1\.00e-2 .* FAIL \(121 tensors; worst itm\/itm_head\.bias; 2 listed below\)/m);
    expect(text).toMatch(/^nsp gradients .* FAIL \(not computed: this model replays ita, itm, mlm\)/m);
    expect(text).toMatch(/^image_embeds .* ok/m);
    expect(text).toContain('4 output(s) out of tolerance');
  });

  it('exits 2 on a missing gradients file or keys that are not <loss>/<name>', async () => {
    const missing = captureIo();
    expect(await runCli(args(join(tmp, 'nope.safetensors')), missing.io)).toBe(2);
    expect(missing.err.join('\n')).toMatch(/no such gradients file/);
    const path = join(tmp, 'flat.safetensors');
    await writeSafetensorsFile(
      path,
      new Map([['temp', { dtype: 'float32', shape: [], data: Float32Array.of(1), fileDtype: 'F32' } as HostTensor]]),
    );
    const flat = captureIo();
    expect(await runCli(args(path), flat.io)).toBe(2);
    expect(flat.err.join('\n')).toMatch(/gradient key 'temp' is not '<loss>\/<parameter name>'/);
  });
});
