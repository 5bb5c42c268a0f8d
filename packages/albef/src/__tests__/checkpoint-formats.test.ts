// loadAlbef reads the released ALBEF.pth layout ({"model": state_dict, "optimizer", "lr_scheduler", "config", "epoch"})
// as well as model.safetensors: the reference fixture saved that way loads to the same weights and passes verify.
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initRuntime } from '@vl/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAlbef } from '../checkpoint.js';
import { verifyAlbef } from '../verify.js';

const DIR = fileURLToPath(new URL('../../../../fixtures/albef-official/albef-seed0/', import.meta.url));
const PTH = fileURLToPath(new URL('../../../../fixtures/torch-pickle/albef-official.pth', import.meta.url));

describe('ALBEF from an ALBEF.pth', () => {
  let dir: string;
  beforeAll(async () => {
    await initRuntime({ backend: 'cpu' });
    dir = await mkdtemp(join(tmpdir(), 'vl-albef-pth-'));
    await copyFile(join(DIR, 'config.json'), join(dir, 'config.json'));
    await copyFile(PTH, join(dir, 'ALBEF.pth'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads the same weights as model.safetensors from the file path', async () => {
    const reference = await loadAlbef(DIR);
    const model = await loadAlbef(join(dir, 'ALBEF.pth'));
    try {
      const a = reference.stateDict();
      const b = model.stateDict();
      expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
      for (const [name, t] of a) {
        const [x, y] = await Promise.all([t.data(), b.get(name)!.data()]);
        expect(
          Buffer.compare(Buffer.from(x.buffer, x.byteOffset, x.byteLength), Buffer.from(y.buffer, y.byteOffset, y.byteLength)),
          name,
        ).toBe(0);
      }
    } finally {
      reference.dispose();
      model.dispose();
    }
  });

  it('passes verify from the folder holding config.json and ALBEF.pth', async () => {
    const report = await verifyAlbef({ model: dir, inputs: join(DIR, 'inputs.json'), expected: join(DIR, 'expected.json') });
    expect(report.passed).toBe(true);
    expect(report.checks.length).toBe(15);
  });
});
