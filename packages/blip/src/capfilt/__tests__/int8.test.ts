// `blip capfilt --int8` with the embedded scenes-tiny models: on wasm with @vl/accel's kernels the run
// says it quantised, the journal records int8 (so a float run cannot resume it), and every score stays
// close to the float run's; without the kernels (cpu backend) it is refused with BACKEND_UNAVAILABLE.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, int8KernelsAvailable } from '@vl/core';
import { writeSynthDataset } from '@vl/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCapfiltCli } from '../cli.js';

let dir: string;
let data: string;
await initRuntime({ backend: 'wasm' });
const native = int8KernelsAvailable();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'capfilt-int8-'));
  data = join(dir, 'data');
  await writeSynthDataset({ out: data, images: 12, seed: 7, imageSize: 32, captionsPerImage: 2, noise: 0.3, splits: [1, 0, 0] });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Scored = { text: string; score: number; kept: boolean };
type Rec = { key: string; original?: Scored[]; synthetic?: Scored[] };

async function run(out: string, backend: string, int8: boolean): Promise<{ code: number; errs: string[] }> {
  const errs: string[] = [];
  const io = { out: () => {}, err: (l: string) => errs.push(l) };
  const argv = ['--data', join(data, 'train.jsonl'), '--out', out, '--captioner', 'scenes-tiny', '--filter', 'scenes-tiny'];
  argv.push('--num-captions', '1', '--seed', '0', '--backend', backend, ...(int8 ? ['--int8'] : []));
  return { code: await runCapfiltCli(argv, io), errs };
}

function journal(out: string): { header: Record<string, unknown>; records: Rec[] } {
  const lines = readFileSync(join(out, 'journal.jsonl'), 'utf8').split('\n').filter(Boolean);
  return {
    header: JSON.parse(lines[0] as string) as Record<string, unknown>,
    records: lines.slice(1).flatMap((l) => (JSON.parse(l) as { p: { records: Rec[] } }).p.records),
  };
}

describe('blip capfilt --int8', () => {
  it('has the int8 kernels exactly when @vl/accel loaded (VL_ACCEL_REQUIRE=1 requires them)', () => {
    if (process.env.VL_ACCEL_REQUIRE === '1') expect(native).toBe(true);
    expect(tf.getKernel('VlInt8Linear', 'wasm') !== undefined).toBe(native);
  });

  it.runIf(native)('quantises both models, records int8 in the journal, and scores within 0.1 of the float run', async () => {
    const float = await run(join(dir, 'float'), 'wasm', false);
    const int8 = await run(join(dir, 'int8'), 'wasm', true);
    expect(float.code).toBe(0);
    expect(int8.code).toBe(0);
    expect(int8.errs.join('\n')).toMatch(/int8: \d+ linear layers quantised/);
    expect(float.errs.join('\n')).not.toMatch(/int8/);
    const f = journal(join(dir, 'float'));
    const q = journal(join(dir, 'int8'));
    expect(JSON.stringify(q.header)).toMatch(/"int8":true/);
    expect(JSON.stringify(f.header)).not.toMatch(/"int8"/);
    const originals = (j: typeof f) => j.records.flatMap((r) => r.original ?? []);
    const fo = originals(f);
    const qo = originals(q);
    expect(qo.map((c) => c.text)).toEqual(fo.map((c) => c.text));
    let differ = 0;
    fo.forEach((c, i) => {
      const d = qo[i] as Scored;
      expect(Math.abs(d.score - c.score)).toBeLessThan(0.1);
      if (d.score !== c.score) differ++;
    });
    expect(differ).toBeGreaterThan(0); // int8 really ran
    // A float run does not resume the int8 run's folder.
    const resumed = await run(join(dir, 'int8'), 'wasm', false);
    expect(resumed.code).not.toBe(0);
    expect(resumed.errs.join('\n')).toMatch(/int8/);
  });

  it('is refused on a backend without the kernels', async () => {
    await expect(run(join(dir, 'cpu'), 'cpu', true)).rejects.toMatchObject({
      code: 'BACKEND_UNAVAILABLE',
      message: expect.stringMatching(/@vl\/accel/) as unknown,
    });
  });
});
