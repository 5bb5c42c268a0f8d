// The `albef verify` command: exit 0 within tolerance with a per-output report, 1 past it, 2 on usage errors.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initRuntime } from '@vl/core';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../command.js';

const DIR = fileURLToPath(new URL('../../../../fixtures/albef-official/albef-seed0/', import.meta.url));
const args = ['verify', '--model', DIR, '--inputs', join(DIR, 'inputs.json'), '--expected', join(DIR, 'expected.json')];

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

afterEach(() => {
  vi.restoreAllMocks();
});

function capture(): { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((m: unknown) => void out.push(String(m)));
  vi.spyOn(console, 'error').mockImplementation((m: unknown) => void err.push(String(m)));
  return { out, err };
}

describe('albef verify', () => {
  it('passes on the official fixture and lists every output', async () => {
    const { out } = capture();
    expect(await main(args)).toBe(0);
    const text = out.join('\n');
    for (const name of ['image_embeds', 'sim_i2t', 'itm_logits_all', 'mlm_logits', 'mlm_loss_ce']) expect(text).toContain(name);
    expect(text).toContain('all outputs within tolerance');
  });

  it('exits 1 past the tolerance', async () => {
    const { out } = capture();
    expect(await main([...args, '--tol', '1e-12'])).toBe(1);
    expect(out.join('\n')).toMatch(/out of tolerance/);
  });

  it('exits 2 on missing arguments, a bad tolerance or a missing model folder', async () => {
    const { err } = capture();
    expect(await main(['verify', '--model', DIR])).toBe(2);
    expect(await main([...args, '--tol', 'abc'])).toBe(2);
    expect(await main(['verify', '--model', '/nonexistent', '--inputs', join(DIR, 'inputs.json'), '--expected', join(DIR, 'expected.json')])).toBe(2);
    expect(await main(['frobnicate'])).toBe(2);
    expect(err.join('\n')).toMatch(/required/);
  });
});
