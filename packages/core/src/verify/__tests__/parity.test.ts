// Parity helpers: decoding the fixture tensor format, exact ids, float tolerance, clear failures.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isVlError } from '../../errors.js';
import { compareOutputs, decodeTensorJson, formatParityReport } from '../parity.js';
import { readExpectedFile } from '../../node/parity-file.js';

describe('decodeTensorJson', () => {
  it('flattens row-major and checks nesting against the shape', () => {
    const t = decodeTensorJson(
      {
        dtype: 'int64',
        shape: [2, 3],
        data: [
          [1, 2, 3],
          [4, 5, 6],
        ],
      },
      'x',
    );
    expect(t.kind).toBe('int');
    expect(Array.from(t.data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(() => decodeTensorJson({ dtype: 'float32', shape: [2, 2], data: [[1, 2], [3]] }, 'bad')).toThrow(/depth 1/);
    expect(() => decodeTensorJson({ dtype: 'int64', shape: [1], data: [2 ** 40] }, 'big')).toThrow(/int32/);
    expect(decodeTensorJson({ dtype: 'float32', shape: [], data: 1.5 }, 's').data[0]).toBe(1.5);
  });
});

describe('compareOutputs', () => {
  const expected = {
    logits: decodeTensorJson({ dtype: 'float32', shape: [2], data: [0.5, -1] }, 'e'),
    ids: decodeTensorJson({ dtype: 'int64', shape: [2], data: [7, 3] }, 'e'),
  };
  it('passes within tolerance, demands exact ids, and flags missing or mis-shaped outputs', () => {
    const ok = compareOutputs(expected, { logits: { shape: [2], data: [0.50005, -1] }, ids: { shape: [2], data: [7, 3] } }, 1e-4);
    expect(ok.passed).toBe(true);
    expect(ok.checks[0]!.maxAbsDiff).toBeCloseTo(5e-5, 8);
    const off = compareOutputs(expected, { logits: { shape: [2], data: [0.6, -1] }, ids: { shape: [2], data: [7, 4] } }, 1e-4);
    expect(off.checks.map((c) => c.passed)).toEqual([false, false]);
    const missing = compareOutputs(expected, { logits: { shape: [1, 2], data: [0.5, -1] } }, 1e-4);
    expect(missing.checks.map((c) => c.note)).toEqual(['shape [1,2] ≠ expected [2]', 'not computed']);
    expect(formatParityReport(missing)).toMatch(/2 output\(s\) out of tolerance/);
    const nan = compareOutputs({ logits: expected.logits }, { logits: { shape: [2], data: [NaN, -1] } }, 1e-4);
    expect(nan.passed).toBe(false);
  });
});

describe('compareOutputs with compareWhere', () => {
  it('skips the elements marked 0, says how many were compared, and rejects a mask of the wrong size', () => {
    const expected = {
      steps: decodeTensorJson(
        {
          dtype: 'float32',
          shape: [2, 2],
          data: [
            [1, 2],
            [3, 4],
          ],
        },
        'e',
      ),
    };
    const actual = { shape: [2, 2], data: [1, 2, 3, 99] };
    expect(compareOutputs(expected, { steps: actual }, 1e-4).passed).toBe(false);
    const masked = compareOutputs(expected, { steps: { ...actual, compareWhere: [1, 1, 1, 0] } }, 1e-4);
    expect(masked.passed).toBe(true);
    expect(masked.checks[0]!.note).toBe('compared at 3 of 4 elements');
    expect(formatParityReport(masked)).toMatch(/steps .* ok \(compared at 3 of 4 elements\)/);
    const off = compareOutputs(expected, { steps: { shape: [2, 2], data: [1, 2.5, 3, 99], compareWhere: [1, 1, 1, 0] } }, 1e-4);
    expect(off.checks[0]!.maxAbsDiff).toBe(0.5);
    const bad = compareOutputs(expected, { steps: { ...actual, compareWhere: [1, 1] } }, 1e-4);
    expect(bad.checks[0]!.note).toMatch(/compareWhere has 2 entries for 4 elements/);
    expect(bad.passed).toBe(false);
  });
});

describe('readExpectedFile', () => {
  it('reads the fixture layout and reports a malformed file with its path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vl-parity-'));
    const good = join(dir, 'expected.json');
    writeFileSync(
      good,
      JSON.stringify({ meta: { calls: { loss: 'f(x)' } }, outputs: { loss: 0.25, y: { dtype: 'float32', shape: [1], data: [2] } } }),
    );
    const { meta, outputs } = await readExpectedFile(good);
    expect(meta.calls).toEqual({ loss: 'f(x)' });
    expect(outputs.loss!.shape).toEqual([]);
    expect(Array.from(outputs.y!.data)).toEqual([2]);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"meta": {}}');
    await expect(readExpectedFile(bad)).rejects.toSatisfy(
      (e: unknown) => isVlError(e, 'DATA_INVALID') && (e as Error).message.includes(bad),
    );
  });

  it('decodes the shipped BLIP fixture', async () => {
    const path = join(__dirname, '..', '..', '..', '..', '..', 'fixtures', 'blip-hf', 'blip-captioning-seed0', 'expected.json');
    const { outputs } = await readExpectedFile(path);
    expect(outputs.decoder_logits!.shape).toEqual([2, 7, 99]);
    expect(outputs.greedy_sequences!.kind).toBe('int');
    expect(outputs.greedy_sequences!.data[0]).toBe(97);
  });
});
