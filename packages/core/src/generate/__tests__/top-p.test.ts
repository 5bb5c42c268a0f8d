// applyTopP (a native sort of the values, ties at the cut resolved by token id) against the direct
// transcription of HF's TopPLogitsWarper it replaced (indices sorted by score, then id; cumulative
// softmax in ascending order): the same scores removed, bit for bit, over rows with ties at the cut,
// -Infinity scores, minTokensToKeep, and vocabulary-sized rows.
import { describe, expect, it } from 'vitest';
import { Rng } from '../../runtime/rng.js';
import { applyTopP } from '../logits-process.js';

function referenceTopP(scores: Float64Array, topP: number, minTokensToKeep: number): void {
  const n = scores.length;
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => (scores[a] as number) - (scores[b] as number) || a - b);
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, scores[i] as number);
  if (max === -Infinity) return;
  let total = 0;
  for (let i = 0; i < n; i++) total += Math.exp((scores[i] as number) - max);
  let cum = 0;
  const removeLimit = n - minTokensToKeep;
  for (let r = 0; r < n; r++) {
    const idx = order[r] as number;
    cum += Math.exp((scores[idx] as number) - max) / total;
    if (r < removeLimit && cum <= 1 - topP) scores[idx] = -Infinity;
  }
}

function row(rng: Rng, n: number, levels: number | null, negInf: number): Float64Array {
  const s = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    // `levels` quantises the scores so that many are equal (ties at the cut).
    const v = rng.normal() * 2;
    s[i] = levels === null ? v : Math.round(v * levels) / levels;
  }
  for (let i = 0; i < negInf; i++) s[Math.floor(rng.uniform() * n)] = -Infinity;
  return s;
}

describe('applyTopP', () => {
  it('removes exactly what the index-sorting transcription of HF removes', () => {
    const rng = new Rng(11);
    let cases = 0;
    for (const n of [1, 2, 7, 50, 400]) {
      for (const levels of [null, 1, 4]) {
        for (const topP of [0.05, 0.5, 0.9, 0.999]) {
          for (const keep of [1, 3]) {
            for (const negInf of [0, 5]) {
              const s = row(rng, n, levels, negInf);
              const want = Float64Array.from(s);
              referenceTopP(want, topP, keep);
              applyTopP(s, topP, keep);
              expect(Array.from(s)).toEqual(Array.from(want));
              cases++;
            }
          }
        }
      }
    }
    expect(cases).toBe(5 * 3 * 4 * 2 * 2);
  });

  it('breaks ties at the cut by token id (lowest ids removed first)', () => {
    // Four equal scores: 1/4 each; top-p 0.5 keeps the smallest top set reaching 0.5 → two of them.
    const s = Float64Array.from([0, 0, 0, 0]);
    applyTopP(s, 0.5, 1);
    expect(Array.from(s)).toEqual([-Infinity, -Infinity, 0, 0]);
  });

  it('matches on a vocabulary-sized row (BERT 30524)', () => {
    const rng = new Rng(3);
    const s = row(rng, 30524, null, 0);
    const want = Float64Array.from(s);
    referenceTopP(want, 0.9, 1);
    applyTopP(s, 0.9, 1);
    expect(Array.from(s)).toEqual(Array.from(want));
  });
});
