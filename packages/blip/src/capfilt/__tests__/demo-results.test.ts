// docs/capfilt/demo-results.json (a copy of the results.json `npm run demo` writes, scripts/demo.mjs)
// has the fields issue 15 asks for, fractions in [0, 1], and numbers that follow from the counts and
// per-seed values it records (so the headline numbers are derived, not typed in).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';

const fraction = z.number().min(0).max(1);
const arm = z.object({
  retrievalR1Mean: fraction,
  retrievalR1Se: fraction,
  // CIDEr-D is not a fraction (it can exceed 1), but it is never negative.
  ciderD: z.number().min(0),
  ciderDSe: z.number().min(0),
  seeds: z.array(z.object({ seed: z.number().int(), retrievalR1: fraction, ciderD: z.number().min(0) })).min(3),
});
const kindCount = z.object({ removed: z.number().int().min(0), total: z.number().int().min(1) });
const schema = z.object({
  rule: z.string(),
  noiseRemoval: z.object({
    precision: fraction,
    recall: fraction,
    recallByKind: z.object({ otherImage: fraction, keywordSoup: fraction, wrongAttribute: fraction }),
    cleanRemovedRate: fraction,
    counts: z.object({
      tp: z.number().int(),
      fp: z.number().int(),
      fn: z.number().int(),
      tn: z.number().int(),
      byKind: z.object({ otherImage: kindCount, keywordSoup: kindCount, wrongAttribute: kindCount }),
    }),
  }),
  downstream: z.object({ noisy: arm, cleaned: arm, clean: arm }),
  data: z.object({ testImages: z.number().int().min(500) }),
});

const file = fileURLToPath(new URL('../../../../../docs/capfilt/demo-results.json', import.meta.url));

describe('docs/capfilt/demo-results.json', () => {
  const results = schema.parse(JSON.parse(readFileSync(file, 'utf8')));

  it("uses BLIP's rule", () => {
    expect(results.rule).toMatch(/ITM P\(match\) ≥ 0\.5 \(BLIP's CapFilt rule\)/);
  });

  it('derives precision, recall and the per-kind recall from the recorded counts', () => {
    const { counts: c, precision, recall, recallByKind, cleanRemovedRate } = results.noiseRemoval;
    expect(precision).toBeCloseTo(c.tp / (c.tp + c.fp), 12);
    expect(recall).toBeCloseTo(c.tp / (c.tp + c.fn), 12);
    expect(cleanRemovedRate).toBeCloseTo(c.fp / (c.fp + c.tn), 12);
    for (const k of ['otherImage', 'keywordSoup', 'wrongAttribute'] as const)
      expect(recallByKind[k]).toBeCloseTo(c.byKind[k].removed / c.byKind[k].total, 12);
    const byKind = Object.values(c.byKind);
    expect(byKind.reduce((s, k) => s + k.removed, 0)).toBe(c.tp);
    expect(byKind.reduce((s, k) => s + k.total, 0)).toBe(c.tp + c.fn);
  });

  it('derives each mean and standard error from the per-seed values', () => {
    for (const a of Object.values(results.downstream)) {
      for (const [key, mean, se] of [
        ['retrievalR1', a.retrievalR1Mean, a.retrievalR1Se],
        ['ciderD', a.ciderD, a.ciderDSe],
      ] as const) {
        const xs = a.seeds.map((s) => s[key]);
        const m = xs.reduce((p, q) => p + q, 0) / xs.length;
        const sd = Math.sqrt(xs.reduce((p, q) => p + (q - m) ** 2, 0) / (xs.length - 1));
        expect(mean).toBeCloseTo(m, 12);
        expect(se).toBeCloseTo(sd / Math.sqrt(xs.length), 12);
      }
    }
  });
});
