// Gradient parity helpers on a toy module with hand-computed gradients: `<loss>/<name>` keys split per
// loss, tf.variableGrads named by state-dict keys, official names mapped through a key map, every
// tensor compared (worst per loss), tensors on one side only compared with zero and reported, a loss
// the replay does not compute failing, and the grads.json sidecar read for values and tolerance.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import type { HostTensor } from '../../io/safetensors.js';
import type { StateEntry } from '../../model/contract.js';
import { Linear } from '../../nn/layers.js';
import { Module } from '../../nn/module.js';
import { readReferenceGradients } from '../../node/grads-file.js';
import { writeSafetensorsFile } from '../../node/safetensors-file.js';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import {
  centralDifference,
  checkGradients,
  compareGradients,
  type GradientReplay,
  mergeTiedGradients,
  officialNames,
  parameterGradients,
  splitLossGradients,
} from '../grads.js';
import { formatParityReport } from '../parity.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

/** proj: Linear(2 → 1) with W = [[1, -1]], b = [0.5]; scale: a parameter only the 'scaled' loss reaches. */
class Toy extends Module {
  readonly proj: Linear;
  readonly scale: tf.Variable;
  constructor() {
    super();
    this.proj = this.registerModule('proj', new Linear(2, 1, new Rng(0)));
    tf.tidy(() => {
      this.proj.weight.assign(tf.tensor2d([[1, -1]]));
      this.proj.bias!.assign(tf.tensor1d([0.5]));
    });
    this.scale = this.registerParameter('scale', tf.scalar(3));
  }
}

const X = () =>
  tf.tensor2d([
    [1, 2],
    [3, 4],
  ]);

// Official names are ours under 'model.'.
const fromOfficial = (official: ReadonlyMap<string, StateEntry>) =>
  new Map([...official].map(([k, v]) => [k.replace(/^model\./, ''), v] as [string, StateEntry]));
const toOfficial = (m: Module) =>
  new Map(
    [...m.stateDict()].map(
      ([k, t]) =>
        [`model.${k}`, { dtype: 'float32', shape: [...t.shape], data: Float32Array.from(t.dataSync()), fileDtype: 'F32' }] as [
          string,
          HostTensor,
        ],
    ),
  );

const host = (shape: number[], data: number[]): HostTensor => ({
  dtype: 'float32',
  shape,
  data: Float32Array.from(data),
  fileDtype: 'F32',
});

describe('parameterGradients', () => {
  it('gives d/dθ of sum(proj(x)) under state-dict names, only for the parameters reached, and keeps no tensor', () => {
    const toy = new Toy();
    const x = X();
    const before = tf.memory().numTensors;
    const { value, grads } = parameterGradients(toy, () => tf.sum(toy.proj.forward(x)) as tf.Scalar);
    expect(tf.memory().numTensors).toBe(before);
    // y = x·Wᵀ + b = [-0.5, -0.5]: sum -1; dW = Σ rows of x = [4, 6]; db = 2 rows.
    expect(value).toBeCloseTo(-1, 6);
    expect([...grads.keys()].sort()).toEqual(['proj.bias', 'proj.weight']);
    expect(Array.from(grads.get('proj.weight')!.data)).toEqual([4, 6]);
    expect(grads.get('proj.weight')!.shape).toEqual([1, 2]);
    expect(Array.from(grads.get('proj.bias')!.data)).toEqual([2]);
    x.dispose();
    toy.dispose();
  });

  it('leaves frozen parameters out', () => {
    const toy = new Toy();
    toy.freeze('proj.bias');
    const x = X();
    const { grads } = parameterGradients(toy, () => tf.sum(tf.mul(toy.proj.forward(x), toy.scale)) as tf.Scalar);
    expect([...grads.keys()].sort()).toEqual(['proj.weight', 'scale']);
    expect(Array.from(grads.get('scale')!.data)).toEqual([-1]);
    x.dispose();
    toy.dispose();
  });
});

describe('centralDifference', () => {
  it('is exact on a quadratic, agrees with the gradient, and restores the parameter', () => {
    const toy = new Toy();
    const x = X();
    const f = () => tf.tidy(() => tf.sum(tf.square(toy.proj.forward(x))).dataSync()[0]!);
    // y = [-0.5, -0.5]; d/dW Σ y² = 2·Σ_rows y·x = 2·(-0.5·[1, 2] − 0.5·[3, 4]) = [-4, -6].
    const { grads } = parameterGradients(toy, () => tf.sum(tf.square(toy.proj.forward(x))) as tf.Scalar);
    expect(Array.from(grads.get('proj.weight')!.data)).toEqual([-4, -6]);
    expect(centralDifference(toy.proj.weight, 1, f, 0.25)).toBeCloseTo(-6, 4);
    expect(Array.from(toy.proj.weight.dataSync())).toEqual([1, -1]);
    expect(() => centralDifference(toy.proj.weight, 2, f, 0.25)).toThrow(/outside a parameter of 2/);
    x.dispose();
    toy.dispose();
  });
});

describe('splitLossGradients', () => {
  it('splits <loss>/<name> keys per loss and refuses other keys', () => {
    const split = splitLossGradients(
      new Map([
        ['a/model.proj.weight', host([1, 2], [1, 2])],
        ['b/model.scale', host([], [1])],
        ['a/model.proj.bias', host([1], [1])],
      ]),
      'g.safetensors',
    );
    expect([...split.keys()]).toEqual(['a', 'b']);
    expect([...split.get('a')!.keys()]).toEqual(['model.proj.weight', 'model.proj.bias']);
    expect(() => splitLossGradients(new Map([['scale', host([], [1])]]), 'g.safetensors')).toThrow(
      /'scale' is not '<loss>\/<parameter name>'/,
    );
    expect(() => splitLossGradients(new Map(), 'g.safetensors')).toThrow(/no tensors/);
  });
});

describe('compareGradients', () => {
  const parameters = new Map<string, number[]>([
    ['proj.weight', [1, 2]],
    ['proj.bias', [1]],
    ['scale', []],
  ]);
  const ours = new Map([
    ['proj.weight', { shape: [1, 2], data: [4, 6] }],
    ['proj.bias', { shape: [1], data: [2] }],
  ]);
  const names = new Map([
    ['proj.weight', 'model.proj.weight'],
    ['proj.bias', 'model.proj.bias'],
    ['scale', 'model.scale'],
  ]);
  const compare = (expected: [string, HostTensor][], actual = ours) =>
    compareGradients({
      loss: 'a',
      expected: new Map(expected),
      actual,
      parameters,
      fromOfficial,
      officialName: names,
      tolerance: 1e-4,
      actualValue: -1,
      expectedValue: -1.00002,
    });

  it('one summary row with the worst tensor when everything matches', () => {
    const rows = compare([
      ['model.proj.weight', host([1, 2], [4, 6.00005])],
      ['model.proj.bias', host([1], [2])],
    ]);
    expect(rows.map((r) => r.name)).toEqual(['a loss', 'a gradients']);
    expect(rows[0]!.maxAbsDiff).toBeCloseTo(2e-5, 6);
    expect(rows[1]!.maxAbsDiff).toBeCloseTo(5e-5, 6);
    expect(rows[1]!.note).toBe('2 tensors; worst a/model.proj.weight');
    expect(rows.every((r) => r.passed)).toBe(true);
  });

  it('names each tensor out of tolerance, on one side only, unknown or mis-shaped', () => {
    const rows = compare([
      ['model.proj.weight', host([1, 2], [4, 6.5])],
      ['model.scale', host([], [0.25])], // we reach no 'scale': compared with 0
      ['model.nothing', host([1], [1])],
      ['model.proj.bias', host([2], [2, 2])],
    ]);
    const byName = new Map(rows.map((r) => [r.name, r]));
    expect(byName.get('a/model.proj.weight')).toMatchObject({ passed: false, maxAbsDiff: 0.5, shape: [1, 2] });
    expect(byName.get('a/model.scale')).toMatchObject({ passed: false, maxAbsDiff: 0.25, note: 'ours: no gradient (zero)' });
    expect(byName.get('a/model.nothing')!.note).toMatch(/only in the reference: the model has no trainable parameter 'nothing'/);
    expect(byName.get('a/model.proj.bias')!.note).toBe('the parameter is [1]');
    const summary = byName.get('a gradients')!;
    expect(summary).toMatchObject({ passed: false, maxAbsDiff: 0.5 });
    expect(summary.note).toBe('2 tensors; worst a/model.proj.weight; 1 with no gradient of ours (zero); 4 listed below');
  });

  it('compares a gradient only we have with zero: a small one passes and is counted, a large one fails', () => {
    const small = compare([['model.proj.weight', host([1, 2], [4, 6])]], new Map([...ours, ['proj.bias', { shape: [1], data: [5e-8] }]]));
    expect(small.every((r) => r.passed)).toBe(true);
    expect(small.find((r) => r.name === 'a gradients')!.note).toBe(
      '2 tensors; worst a/model.proj.bias; 1 with no gradient in the reference (zero)',
    );
    const large = compare([['model.proj.weight', host([1, 2], [4, 6])]]);
    expect(large.find((r) => r.name === 'a/model.proj.bias')).toMatchObject({
      passed: false,
      maxAbsDiff: 2,
      note: 'only ours: the reference has no gradient (zero)',
    });
  });

  it('a NaN gradient fails', () => {
    const rows = compare(
      [['model.proj.weight', host([1, 2], [4, 6])]],
      new Map([...ours, ['proj.weight', { shape: [1, 2], data: [4, Number.NaN] }]]),
    );
    expect(rows.find((r) => r.name === 'a/model.proj.weight')).toMatchObject({ passed: false, maxAbsDiff: Infinity });
  });
});

describe('checkGradients', () => {
  const replay: GradientReplay<Toy> = {
    losses: ['sum', 'scaled'],
    keyMap: { fromOfficial, toOfficial },
    load: async () => new Toy(),
    loss(toy, name) {
      const x = X();
      const y = tf.sum(toy.proj.forward(x));
      return (name === 'sum' ? y : tf.mul(y, toy.scale)) as tf.Scalar;
    },
  };

  it('replays each loss on a fresh model and names rows by official keys; a loss it does not compute fails', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'vl-grads-')), 'grads.safetensors');
    await writeSafetensorsFile(
      path,
      new Map([
        ['sum/model.proj.weight', host([1, 2], [4, 6])],
        ['sum/model.proj.bias', host([1], [2])],
        // d/dθ of 3·sum: 3× the above; d/dscale = sum = -1. The bias is off by 0.1.
        ['scaled/model.proj.weight', host([1, 2], [12, 18])],
        ['scaled/model.proj.bias', host([1], [6.1])],
        ['scaled/model.scale', host([], [-1])],
        ['other/model.scale', host([], [0])],
      ]),
    );
    writeFileSync(path.replace(/\.safetensors$/, '.json'), JSON.stringify({ losses: { sum: -1, scaled: -3 }, tolerance_max_abs: 1e-5 }));
    const reference = await readReferenceGradients(path);
    expect(reference.values).toEqual({ sum: -1, scaled: -3 });
    expect(reference.tolerance).toBe(1e-5);
    const before = tf.memory().numTensors;
    const rows = await checkGradients(replay, reference, reference.tolerance!);
    expect(tf.memory().numTensors).toBe(before);
    const report = { checks: rows, passed: rows.every((r) => r.passed) };
    const text = formatParityReport(report);
    // The losses in file order (safetensors sorts its keys).
    expect(rows.map((r) => [r.name, r.passed])).toEqual([
      ['other gradients', false],
      ['scaled loss', true],
      ['scaled gradients', false],
      ['scaled/model.proj.bias', false],
      ['sum loss', true],
      ['sum gradients', true],
    ]);
    expect(rows[3]!.maxAbsDiff).toBeCloseTo(0.1, 5);
    expect(rows[2]!.note).toBe('3 tensors; worst scaled/model.proj.bias; 1 listed below');
    expect(text).toMatch(/^other gradients .* FAIL \(not computed: this model replays sum, scaled\)$/m);
    expect(text).toContain('3 output(s) out of tolerance');
  });

  it('names our parameters through the key map (toOfficial mapped back entry by entry)', () => {
    const toy = new Toy();
    expect(officialNames(toy, { fromOfficial, toOfficial })).toEqual(
      new Map([
        ['proj.weight', 'model.proj.weight'],
        ['proj.bias', 'model.proj.bias'],
        ['scale', 'model.scale'],
      ]),
    );
    toy.dispose();
  });

  it("adds a tied parameter's gradient onto its partner before comparing (the reference holds one tensor)", async () => {
    // Both `proj.weight` [1, 2] and a second [1, 2] parameter reach the loss; the reference ties them into one.
    class Tied extends Toy {
      readonly head = this.registerParameter('head', tf.tensor2d([[2, 0]]));
    }
    const tiedReplay: GradientReplay<Tied> = {
      losses: ['sum'],
      keyMap: { fromOfficial },
      load: async () => new Tied(),
      // sum(x·Wᵀ + b) + sum(x·headᵀ): d/dW = d/dhead = column sums of x = [4, 6].
      loss: (m) => tf.add(tf.sum(m.proj.forward(X())), tf.sum(tf.matMul(X(), m.head, false, true))) as tf.Scalar,
      tied: { head: 'proj.weight' },
    };
    const reference = {
      losses: new Map([
        [
          'sum',
          new Map([
            ['model.proj.weight', host([1, 2], [8, 12])],
            ['model.proj.bias', host([1], [2])],
          ]),
        ],
      ]),
      values: {},
      source: 'test',
    };
    const rows = await checkGradients(tiedReplay, reference, 1e-6);
    expect(rows.map((r) => [r.name, r.passed])).toEqual([['sum gradients', true]]);
    expect(rows[0]!.note).toBe('2 tensors; worst sum/model.proj.weight');
    // Without the tie, `proj.weight` is half the reference and `head` has no counterpart.
    const untied = await checkGradients({ ...tiedReplay, tied: undefined }, reference, 1e-6);
    expect(untied.map((r) => r.name)).toEqual(['sum gradients', 'sum/model.proj.weight', 'sum/head']);
    // A tie between parameters of different shapes is a usage error.
    const grads = new Map([['head', { shape: [1, 2], data: [1, 2] }]]);
    expect(() =>
      mergeTiedGradients(
        grads,
        new Map([
          ['head', [1, 2]],
          ['proj.bias', [1]],
        ]),
        { head: 'proj.bias' },
      ),
    ).toThrow(/cannot tie 'head'/);
  });

  it('a missing gradients file is a usage error', async () => {
    await expect(readReferenceGradients('/nonexistent/grads.safetensors')).rejects.toThrow(/no such gradients file/);
  });
});
