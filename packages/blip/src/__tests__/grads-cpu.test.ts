// BLIP gradient parity on the cpu backend (grads-suite.ts), and how `blip verify --grads` reports a
// gradients file that differs: exit 1 with a row naming each parameter out of tolerance and the tied
// duplicate the reference never writes; exit 2 on a missing file.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HostTensor, Io } from '@vl/core';
import { readSafetensorsFile, writeSafetensorsFile } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli.js';
import { blipGradientSuite } from './grads-suite.js';
import { CAPTIONING, RETRIEVAL } from './helpers.js';

blipGradientSuite('cpu');

function capture(): Io & { lines: string[]; errors: string[] } {
  const lines: string[] = [];
  const errors: string[] = [];
  return { lines, errors, out: (l) => lines.push(l), err: (l) => errors.push(l) };
}

const args = (dir: string, grads: string) => [
  'verify',
  '--model',
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

describe('blip verify --grads', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'blip-grads-'));
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('exits 0 on both fixtures, printing the worst gradient of each loss', async () => {
    for (const [dir, losses] of [
      [CAPTIONING, ['lm']],
      [RETRIEVAL, ['itc', 'itm']],
    ] as const) {
      const io = capture();
      expect(await runCli(args(dir, join(dir, 'grads.safetensors')), io), io.errors.join('\n')).toBe(0);
      const text = io.lines.join('\n');
      for (const loss of losses)
        expect(text).toMatch(new RegExp(`^${loss} gradients +\\[\\] +\\S+ +0\\.0001 +ok \\(\\d+ tensors; worst ${loss}/`, 'm'));
      expect(text).toContain('all outputs within tolerance');
    }
  });

  it('exits 1 naming a perturbed gradient and a tied duplicate key', async () => {
    const file = await readSafetensorsFile(join(CAPTIONING, 'grads.safetensors'));
    const out = new Map<string, HostTensor>(file.tensors);
    const key = 'lm/text_decoder.cls.predictions.bias';
    const bias = out.get(key)!;
    const moved = Float32Array.from(bias.data);
    moved[5]! -= 0.001;
    out.set(key, { ...bias, data: moved });
    out.set('lm/text_decoder.cls.predictions.decoder.bias', { ...bias });
    const path = join(tmp, 'perturbed.safetensors');
    await writeSafetensorsFile(path, out, { format: 'pt' });
    const io = capture();
    expect(await runCli(args(CAPTIONING, path), io), io.errors.join('\n')).toBe(1);
    const text = io.lines.join('\n');
    expect(text).toMatch(/^lm\/text_decoder\.cls\.predictions\.bias +\[99\] +1\.00e-3 +0\.0001 +FAIL$/m);
    expect(text).toMatch(/^lm\/text_decoder\.cls\.predictions\.decoder\.bias +\[99\] +inf .* FAIL \(the key map drops this key/m);
    expect(text).toMatch(/^lm gradients .* FAIL \(92 tensors; worst lm\/text_decoder\.cls\.predictions\.bias; 2 listed below\)/m);
    expect(text).toMatch(/^decoder_logits .* ok/m);
  });

  it('exits 2 on a missing gradients file', async () => {
    const io = capture();
    expect(await runCli(args(RETRIEVAL, join(tmp, 'nope.safetensors')), io)).toBe(2);
    expect(io.errors.join('\n')).toMatch(/no such gradients file/);
  });
});
