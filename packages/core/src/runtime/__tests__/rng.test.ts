// Seeded Rng: determinism, exact resume from state, fork independence, distributions.
import { describe, expect, it } from 'vitest';
import { Rng } from '../rng.js';

const draw = (r: Rng, n: number) => Array.from({ length: n }, () => r.nextUint32());

describe('Rng', () => {
  it('same seed gives the same stream; different seeds differ', () => {
    expect(draw(new Rng(5), 20)).toEqual(draw(new Rng(5), 20));
    expect(draw(new Rng(5), 20)).not.toEqual(draw(new Rng(6), 20));
  });

  it('continues exactly from a saved state (as a checkpoint resume does)', () => {
    const a = new Rng(11);
    draw(a, 37);
    const saved = JSON.parse(JSON.stringify(a.state()));
    const rest = draw(a, 50);
    expect(draw(Rng.fromState(saved), 50)).toEqual(rest);
  });

  it('fork gives independent labelled streams without advancing the parent', () => {
    const a = new Rng(3);
    const state = a.state();
    const f1 = draw(a.fork('dropout'), 10);
    const f2 = draw(a.fork('masking'), 10);
    expect(a.state()).toEqual(state);
    expect(f1).not.toEqual(f2);
    expect(draw(new Rng(3).fork('dropout'), 10)).toEqual(f1);
  });

  it('uniform, int, normal and categorical have the right statistics', () => {
    const r = new Rng(1);
    const n = 50_000;
    let sum = 0;
    let sq = 0;
    let nsum = 0;
    let nsq = 0;
    const counts = [0, 0, 0];
    for (let i = 0; i < n; i++) {
      const u = r.uniform();
      expect(u >= 0 && u < 1).toBe(true);
      sum += u;
      sq += u * u;
      const z = r.normal();
      nsum += z;
      nsq += z * z;
      counts[r.categorical([1, 0, 3])]! += 1;
    }
    expect(Math.abs(sum / n - 0.5)).toBeLessThan(0.01);
    expect(Math.abs(sq / n - 1 / 3)).toBeLessThan(0.01);
    expect(Math.abs(nsum / n)).toBeLessThan(0.02);
    expect(Math.abs(nsq / n - 1)).toBeLessThan(0.03);
    expect(counts[1]).toBe(0);
    expect(Math.abs(counts[0]! / n - 0.25)).toBeLessThan(0.01);
    const ints = new Set(Array.from({ length: 1000 }, () => r.int(7)));
    expect([...ints].sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(() => r.int(0)).toThrow(RangeError);
  });

  it('shuffle is a seeded permutation', () => {
    const xs = Array.from({ length: 20 }, (_, i) => i);
    const a = new Rng(2).shuffle([...xs]);
    expect([...a].sort((p, q) => p - q)).toEqual(xs);
    expect(new Rng(2).shuffle([...xs])).toEqual(a);
    expect(a).not.toEqual(xs);
  });
});
