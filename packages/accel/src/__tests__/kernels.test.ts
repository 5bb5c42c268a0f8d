// The native kernels against tfjs's cpu backend: every matmul transpose/batch/broadcast form,
// fused-matmul epilogues, softmax, leading-axis sum, and the fused LayerNorm, GELU and softmax
// custom kernels, forward and gradients, with leak checks. Without the binary (no compiler or
// OpenBLAS at install) the same tests check the unavailable path instead: registration reports
// why, nothing is replaced, and the same functions still match cpu on plain wasm.
import * as tf from '@tensorflow/tfjs';
import { referenceMatMul, seeded, type TensorFn } from '@vl/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAccel } from '../binding.js';
import { splitBroadcast } from '../matmul.js';
import {
  ACCEL_KERNELS,
  accelStatus,
  hasAccelKernel,
  registerAccelKernels,
  unregisterAccelKernels,
  type AccelRegistration,
} from '../index.js';
import { evaluate, expectClose, expectParity } from './helpers.js';

const status = accelStatus();
let registration: AccelRegistration;

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
  registration = registerAccelKernels(tf);
});

afterAll(() => {
  unregisterAccelKernels(tf);
});

describe('loading', () => {
  it('loads the binary, or says clearly why not (VL_ACCEL_REQUIRE=1 makes the binary mandatory)', () => {
    if (process.env.VL_ACCEL_REQUIRE === '1') expect(status.available, status.note).toBe(true);
    expect(status.note.length).toBeGreaterThan(10);
    expect(registration.active).toBe(status.available);
    expect(registration.note).toBe(status.note);
    if (status.available) {
      expect(status.info?.threads).toBeGreaterThanOrEqual(1);
      expect(status.info?.blas).toMatch(/OpenBLAS/);
      expect(registration.replaced).toEqual(expect.arrayContaining(['BatchMatMul', '_FusedMatMul', 'Softmax', 'Sum', 'Identity']));
      expect(registration.added).toEqual(expect.arrayContaining(Object.values(ACCEL_KERNELS)));
    } else {
      expect(status.note).toMatch(/native|binary|build|install|load/);
      expect(registration.replaced).toEqual([]);
      expect(registration.added).toEqual([]);
      for (const name of Object.values(ACCEL_KERNELS)) expect(tf.getKernel(name, 'wasm')).toBeUndefined();
    }
  });
});

/**
 * Without the binary (no compiler or OpenBLAS at install), a native-kernel test checks the
 * unavailable path instead: nothing replaced, and a reason given. (Plain wasm's own numerics are
 * core's to test: its JS kernels fix stock bugs this package does not load.)
 */
function checkedUnavailablePath(): boolean {
  if (status.available) return false;
  expect(registration.active).toBe(false);
  expect(registration.replaced).toEqual([]);
  expect(registration.added).toEqual([]);
  expect(registration.note).toMatch(/native|binary|build|install|load/);
  return true;
}

const FORMS: [boolean, boolean][] = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];
const formName = ([ta, tb]: [boolean, boolean]) => `${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`;

function operands(batchA: number[], batchB: number[], m: number, k: number, n: number, ta: boolean, tb: boolean, seed: number) {
  const a = seeded([...batchA, ...(ta ? [k, m] : [m, k])], seed);
  const b = seeded([...batchB, ...(tb ? [n, k] : [k, n])], seed + 1);
  return { a, b };
}

describe('BatchMatMul', () => {
  it.each(FORMS)('2-D, transposeA=%s transposeB=%s: forward and gradients equal cpu', async (ta, tb) => {
    if (checkedUnavailablePath()) return;
    const { a, b } = operands([], [], 13, 19, 11, ta, tb, 1);
    const { wasm } = await expectParity(`matMul ${formName([ta, tb])}`, (x, y) => tf.matMul(x!, y!, ta, tb), [a, b], [0, 1]);
    expectClose(wasm.value, referenceMatMul(a, b, ta, tb), 'vs float64 reference');
  });

  it.each(FORMS)('large enough to split over threads (row and column blocks), transposeA=%s transposeB=%s', async (ta, tb) => {
    if (checkedUnavailablePath()) return;
    // 2·m·k·n well above the parallel threshold; m ≥ n splits rows, m < n splits columns.
    for (const [m, k, n] of [
      [301, 97, 180],
      [70, 130, 517],
    ] as const) {
      const { a, b } = operands([], [], m, k, n, ta, tb, 7);
      await expectParity(`matMul ${m}x${k}x${n} ${formName([ta, tb])}`, (x, y) => tf.matMul(x!, y!, ta, tb), [a, b], [0, 1]);
    }
  });

  it.each(FORMS)('batched [3,m,k]x[3,k,n] and attention-shaped [2,6,m,k]x[2,6,k,n], transposeA=%s transposeB=%s', async (ta, tb) => {
    if (checkedUnavailablePath()) return;
    const small = operands([3], [3], 9, 7, 10, ta, tb, 2);
    await expectParity(`bmm3 ${formName([ta, tb])}`, (x, y) => tf.matMul(x!, y!, ta, tb), [small.a, small.b], [0, 1]);
    // 12 batches of 40×24×40: enough work to run batches on several threads.
    const heads = operands([2, 6], [2, 6], 40, 24, 40, ta, tb, 3);
    await expectParity(`bmm4 ${formName([ta, tb])}`, (x, y) => tf.matMul(x!, y!, ta, tb), [heads.a, heads.b], [0, 1]);
  });

  // tfjs-core's gradient of a broadcast batched matMul fails on every backend, so forward only.
  it.each([
    ['[1,h,m,k]x[b,h,k,n]', [1, 3], [2, 3]],
    ['[b,h,m,k]x[1,h,k,n]', [2, 3], [1, 3]],
    ['[b,m,k]x[k,n] (rank mismatch, folded into rows)', [4], []],
    ['[m,k]x[b,k,n]', [], [3]],
    ['[b,m,k]x[1,k,n]', [4], [1]],
  ] as [string, number[], number[]][])('broadcast batch %s, all transpose forms', async (_name, batchA, batchB) => {
    if (checkedUnavailablePath()) return;
    for (const form of FORMS) {
      const [ta, tb] = form;
      const { a, b } = operands(batchA, batchB, 5, 6, 7, ta, tb, 4);
      const { wasm } = await expectParity(`broadcast ${formName(form)}`, (x, y) => tf.matMul(x!, y!, ta, tb), [a, b]);
      expectClose(wasm.value, referenceMatMul(a, b, ta, tb), `broadcast ${formName(form)} vs float64 reference`);
    }
  });

  it('mixed broadcast [2,1,m,k]x[1,3,k,n] matches the float64 reference', async () => {
    if (checkedUnavailablePath()) return;
    // tfjs's cpu kernel maps these batches by modulo (wrong), so only the reference judges.
    for (const form of FORMS) {
      const [ta, tb] = form;
      const { a, b } = operands([2, 1], [1, 3], 5, 7, 4, ta, tb, 5);
      const wasm = await evaluate('wasm', (x, y) => tf.matMul(x!, y!, ta, tb), [a, b]);
      expect(wasm.shape).toEqual([2, 3, 5, 4]);
      expectClose(wasm.value, referenceMatMul(a, b, ta, tb), `mixed broadcast ${formName(form)}`);
    }
  });

  it('leading-dim broadcasts run as strided calls: [1,4]×[3,4], [3,1,2]×[1,4,2], [2,1]×[2,3] match the reference', async () => {
    expect(splitBroadcast([3, 4], [1, 4], [3, 4])).toEqual({ outer: 3, inner: 4, aWhole: true, bWhole: true });
    expect(splitBroadcast([2, 3], [2, 1], [1, 3])).toEqual({ outer: 2, inner: 3, aWhole: false, bWhole: true });
    expect(splitBroadcast([3, 4, 2], [3, 1, 2], [1, 4, 2])).toEqual({ outer: 12, inner: 2, aWhole: true, bWhole: true });
    if (checkedUnavailablePath()) return;
    const shapes: [number[], number[], number[]][] = [
      [
        [1, 4],
        [3, 4],
        [3, 4],
      ],
      [
        [3, 1, 2],
        [1, 4, 2],
        [3, 4, 2],
      ],
      [
        [2, 1],
        [2, 3],
        [2, 3],
      ],
    ];
    for (const [ba, bb, out] of shapes) {
      for (const form of FORMS) {
        const [ta, tb] = form;
        const { a, b } = operands(ba, bb, 6, 5, 7, ta, tb, 11);
        const wasm = await evaluate('wasm', (x, y) => tf.matMul(x!, y!, ta, tb), [a, b]);
        expect(wasm.shape).toEqual([...out, 6, 7]);
        expectClose(wasm.value, referenceMatMul(a, b, ta, tb), `broadcast ${ba}×${bb} ${formName(form)}`);
      }
    }
  });

  it('degenerate sizes: m = 1, k = 1, n = 1, an empty inner dimension and an empty output', async () => {
    if (checkedUnavailablePath()) return;
    for (const [m, k, n] of [
      [1, 9, 5],
      [6, 1, 5],
      [6, 9, 1],
      [1, 1, 1],
    ] as const) {
      for (const form of FORMS) {
        const { a, b } = operands([], [], m, k, n, form[0], form[1], 6);
        await expectParity(`degenerate ${m}x${k}x${n} ${formName(form)}`, (x, y) => tf.matMul(x!, y!, form[0], form[1]), [a, b], [0, 1]);
      }
    }
    const empty = await evaluate('wasm', (x, y) => tf.matMul(x!, y!), [seeded([4, 0], 1), seeded([0, 3], 2)]);
    expect(empty.shape).toEqual([4, 3]);
    expect(empty.value).toEqual(new Array(12).fill(0));
    const none = await evaluate('wasm', (x, y) => tf.matMul(x!, y!), [seeded([0, 5], 1), seeded([5, 3], 2)]);
    expect(none.shape).toEqual([0, 3]);
  });

  it('int32 operands go to the kernel registered before: the same outcome as without accel', async () => {
    if (checkedUnavailablePath()) return;
    const run = () => {
      try {
        return tf.tidy(() =>
          Array.from(
            tf.matMul(tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3], 'int32'), tf.tensor2d([1, 0, 2, 1, 0, 3], [3, 2], 'int32')).dataSync(),
          ),
        );
      } catch (err) {
        return (err as Error).message;
      }
    };
    await tf.setBackend('wasm');
    const withAccel = run();
    unregisterAccelKernels(tf);
    const without = run();
    registration = registerAccelKernels(tf);
    expect(withAccel).toEqual(without);
  });

  it('rejects mismatched inner dimensions with tfjs’s message', async () => {
    if (checkedUnavailablePath()) return;
    await tf.setBackend('wasm');
    expect(() => tf.tidy(() => tf.matMul(tf.ones([2, 3]), tf.ones([4, 2])))).toThrow(/inner shapes/);
  });
});

type Activation = 'linear' | 'relu' | 'relu6' | 'elu' | 'sigmoid' | 'leakyrelu' | 'prelu';

describe('_FusedMatMul', () => {
  const fused =
    (activation: Activation, withBias: 'none' | 'row' | 'scalar' | 'full', ta = false, tb = true): TensorFn =>
    (x, w, bias, alpha) =>
      tf.fused.matMul({
        a: x!,
        b: w!,
        transposeA: ta,
        transposeB: tb,
        ...(withBias === 'none' ? {} : { bias: bias! }),
        activation,
        ...(activation === 'prelu' ? { preluActivationWeights: alpha! } : {}),
        ...(activation === 'leakyrelu' ? { leakyreluAlpha: 0.13 } : {}),
      });

  const x = seeded([17, 12], 11);
  const w = seeded([9, 12], 12); // [out, in], used transposed as Linear does
  const rowBias = seeded([9], 13);
  const alphaPerColumn = seeded([9], 14, 0, 0.5);

  it.each(['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu'] as Activation[])(
    'bias [n] + %s: forward and gradients (x, w, bias) equal cpu',
    async (activation) => {
      if (checkedUnavailablePath()) return;
      await expectParity(`fused ${activation}`, fused(activation, 'row'), [x, w, rowBias, alphaPerColumn], [0, 1, 2]);
    },
  );

  it('prelu with a per-column and a scalar alpha', async () => {
    if (checkedUnavailablePath()) return;
    await expectParity('prelu per column', fused('prelu', 'row'), [x, w, rowBias, alphaPerColumn], [0, 1]);
    await expectParity('prelu scalar', fused('prelu', 'none'), [x, w, rowBias, seeded([1], 15, 0, 0.5)], [0, 1]);
  });

  it('scalar bias, no bias, transposed A, a full [m,n] bias and a column bias [m,1]', async () => {
    if (checkedUnavailablePath()) return;
    await expectParity('scalar bias', fused('relu', 'scalar'), [x, w, seeded([1], 16), alphaPerColumn], [0, 1]);
    await expectParity('no bias', fused('linear', 'none'), [x, w, rowBias, alphaPerColumn], [0, 1]);
    await expectParity(
      'transposed A',
      fused('relu', 'row', true, false),
      [seeded([12, 17], 17), seeded([12, 9], 18), rowBias, alphaPerColumn],
      [0, 1, 2],
    );
    await expectParity('full bias', fused('relu', 'full'), [x, w, seeded([17, 9], 19), alphaPerColumn], [0, 1]);
    await expectParity('column bias', fused('elu', 'full'), [x, w, seeded([17, 1], 23), alphaPerColumn], [0, 1]);
  });

  it('batched bias forms: per-batch [b,m,n], shared [m,n], and the row bias with B shared by batches', async () => {
    if (checkedUnavailablePath()) return;
    const xb = seeded([3, 10, 12], 24);
    const wShared = seeded([12, 8], 25);
    const wb = seeded([3, 12, 8], 26);
    await expectParity('per-batch bias', fused('relu', 'full', false, false), [xb, wb, seeded([3, 10, 8], 27), alphaPerColumn], [0, 1]);
    // tfjs-core cannot take the gradient of a B broadcast over batches: x's gradient only.
    await expectParity(
      'shared [m,n] bias, B shared',
      fused('linear', 'full', false, false),
      [xb, wShared, seeded([10, 8], 28), alphaPerColumn],
      [0],
    );
    await expectParity(
      'row bias, B shared (rows folded)',
      fused('sigmoid', 'row', false, false),
      [xb, wShared, seeded([8], 29), alphaPerColumn],
      [0],
    );
  });

  it('batched fused matmul with a row bias (threads over batches)', async () => {
    if (checkedUnavailablePath()) return;
    const xb = seeded([6, 40, 32], 20);
    const wb = seeded([6, 32, 48], 21);
    await expectParity('batched fused', fused('relu', 'row', false, false), [xb, wb, seeded([48], 22), alphaPerColumn], [0, 1]);
  });
});

describe('Softmax and Sum replacements', () => {
  it('softmax over the last axis, small and large (threaded) rows, with its tfjs gradient', async () => {
    if (checkedUnavailablePath()) return;
    await expectParity('softmax small', (x) => tf.softmax(x!), [seeded([3, 7], 30, -4, 4)], [0]);
    await expectParity('softmax large', (x) => tf.softmax(x!), [seeded([2, 4, 60, 61], 31, -8, 8)], [0]);
    await expectParity('softmax 1-D', (x) => tf.softmax(x!), [seeded([11], 32, -3, 3)], [0]);
  });

  it('softmax of extreme logits stays finite and normalised', async () => {
    if (checkedUnavailablePath()) return;
    const logits = { values: new Float32Array([1000, 0, -1000, -1e30, 3, 3, 3, 3]), shape: [2, 4] };
    await expectParity('softmax extremes', (x) => tf.softmax(x!), [logits]);
  });

  it('sum over leading axes (bias gradients) and every other reduction', async () => {
    if (checkedUnavailablePath()) return;
    const x = seeded([4, 5, 6], 33);
    await expectParity('sum axis 0', (t) => tf.sum(t!, 0), [x], [0]);
    await expectParity('sum axes [0,1]', (t) => tf.sum(t!, [1, 0]), [x], [0]);
    await expectParity('sum axis 0 keepDims', (t) => tf.sum(t!, 0, true), [x], [0]);
    await expectParity('sum axis -3', (t) => tf.sum(t!, -3), [x], [0]);
    await expectParity('sum axis 1 (stock)', (t) => tf.sum(t!, 1), [x], [0]);
    await expectParity('sum all (stock)', (t) => tf.sum(t!), [x], [0]);
    await expectParity('sum large (threaded)', (t) => tf.sum(t!, 0), [seeded([900, 64], 34)], [0]);
    const ints = () => tf.tidy(() => Array.from(tf.sum(tf.tensor2d([1, 2, 3, 4], [2, 2], 'int32'), 0).dataSync()));
    await tf.setBackend('wasm');
    expect(ints()).toEqual([4, 6]);
  });
});

describe('Identity (tensors saved for gradients)', () => {
  it('a clone outlives its source, and gradients through saved tensors stay right', async () => {
    if (checkedUnavailablePath()) return;
    await tf.setBackend('wasm');
    const source = tf.tensor1d([1, 2, 3]);
    const copy = tf.clone(source);
    source.dispose();
    expect(Array.from(copy.dataSync())).toEqual([1, 2, 3]);
    copy.dispose();
    const strings = tf.tensor1d(['a', 'b'], 'string');
    const stringCopy = tf.clone(strings);
    expect(stringCopy.arraySync()).toEqual(['a', 'b']);
    tf.dispose([strings, stringCopy]);
    // exp saves its output, mul saves both inputs: every saved tensor goes through Identity.
    await expectParity('saved tensors', (x, y) => tf.mul(tf.exp(x!), tf.square(y!)), [seeded([6, 5], 35), seeded([6, 5], 36)], [0, 1]);
  });
});

/** The composed reference each fused kernel must equal (what core's nn/functional computes). */
function layerNormRef(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, eps: number): tf.Tensor {
  const mean = tf.mean(x, -1, true);
  const centered = tf.sub(x, mean);
  const variance = tf.mean(tf.square(centered), -1, true);
  return tf.add(tf.mul(tf.mul(centered, tf.rsqrt(tf.add(variance, eps))), g), b);
}

function geluRef(x: tf.Tensor, approximate: boolean): tf.Tensor {
  if (!approximate) return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
  const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner)));
}

/** The fused kernel when registered for wasm; otherwise the reference (the unavailable path). */
function viaKernel(name: string, inputs: (xs: tf.Tensor[]) => tf.NamedTensorMap, attrs: tf.NamedAttrMap, reference: TensorFn): TensorFn {
  return (...xs) => (hasAccelKernel(tf, name) ? (tf.engine().runKernel(name, inputs(xs), attrs) as tf.Tensor) : reference(...xs));
}

describe('fused custom kernels', () => {
  it('are registered exactly when the binary is available', async () => {
    await tf.setBackend('wasm');
    for (const name of Object.values(ACCEL_KERNELS)) expect(hasAccelKernel(tf, name), name).toBe(status.available);
    await tf.setBackend('cpu');
    for (const name of Object.values(ACCEL_KERNELS)) expect(hasAccelKernel(tf, name), `${name} on cpu`).toBe(false);
  });

  it.each([
    ['BERT-like rows [3,5,64]', [3, 5, 64], 1e-12],
    ['many rows, threaded partial sums [700,96]', [700, 96], 1e-5],
    ['odd width [4,37]', [4, 37], 1e-6],
  ] as [string, number[], number][])(
    'VlLayerNorm %s: forward and gradients (x, weight, bias) equal the composed cpu version',
    async (_n, shape, eps) => {
      if (checkedUnavailablePath()) return;
      const d = shape[shape.length - 1] as number;
      const ref: TensorFn = (x, g, b) => layerNormRef(x!, g!, b!, eps);
      const f = viaKernel(ACCEL_KERNELS.layerNorm, ([x, g, b]) => ({ x: x!, gamma: g!, beta: b! }), { eps }, ref);
      // x with an offset and scale, so centering matters; weight around 1.
      await expectParity('layerNorm', f, [seeded(shape, 40, -3, 5), seeded([d], 41, 0.5, 1.5), seeded([d], 42)], [0, 1, 2], { cpuFn: ref });
    },
  );

  it.each([false, true])('VlGelu (approximate=%s): forward and gradient equal the composed cpu version', async (approximate) => {
    if (checkedUnavailablePath()) return;
    const ref: TensorFn = (x) => geluRef(x!, approximate);
    const f = viaKernel(ACCEL_KERNELS.gelu, ([x]) => ({ x: x! }), { approximate }, ref);
    await expectParity(`gelu ${approximate}`, f, [seeded([7, 33], 50, -6, 6)], [0], { cpuFn: ref });
    // Large enough to split over threads, with the tails where erf saturates.
    await expectParity(`gelu ${approximate} large`, f, [seeded([300, 200], 51, -10, 10)], [0], { cpuFn: ref });
  });

  it('VlSoftmax: forward and gradient equal tf.softmax on cpu', async () => {
    if (checkedUnavailablePath()) return;
    const ref: TensorFn = (x) => tf.softmax(x!);
    const f = viaKernel(ACCEL_KERNELS.softmax, ([x]) => ({ logits: x! }), {}, ref);
    await expectParity('VlSoftmax', f, [seeded([2, 3, 17, 19], 60, -5, 5)], [0], { cpuFn: ref });
    await expectParity('VlSoftmax large', f, [seeded([4, 12, 50, 50], 61, -5, 5)], [0], { cpuFn: ref });
  });

  it('a transformer-block slice (LN → fused linear+bias → GELU → linear → softmax) trains the same as cpu', async () => {
    if (checkedUnavailablePath()) return;
    const ref: TensorFn = (x, g, b, w1, b1, w2) =>
      tf.softmax(tf.matMul(geluRef(tf.add(tf.matMul(layerNormRef(x!, g!, b!, 1e-6), w1!, false, true), b1!), false), w2!, false, true));
    const ln = viaKernel(
      ACCEL_KERNELS.layerNorm,
      ([x, g, b]) => ({ x: x!, gamma: g!, beta: b! }),
      { eps: 1e-6 },
      (x, g, b) => layerNormRef(x!, g!, b!, 1e-6),
    );
    const gelu = viaKernel(
      ACCEL_KERNELS.gelu,
      ([x]) => ({ x: x! }),
      { approximate: false },
      (x) => geluRef(x!, false),
    );
    const softmax = viaKernel(
      ACCEL_KERNELS.softmax,
      ([x]) => ({ logits: x! }),
      {},
      (x) => tf.softmax(x!),
    );
    const f: TensorFn = (x, g, b, w1, b1, w2) =>
      softmax(tf.matMul(gelu(tf.fused.matMul({ a: ln(x!, g!, b!), b: w1!, transposeB: true, bias: b1! })), w2!, false, true));
    const inputs = [
      seeded([24, 32], 70, -2, 2),
      seeded([32], 71, 0.5, 1.5),
      seeded([32], 72),
      seeded([64, 32], 73),
      seeded([64], 74),
      seeded([16, 64], 75),
    ];
    await expectParity('block slice', f, inputs, [0, 1, 2, 3, 4, 5], { cpuFn: ref, rtol: 2e-4 });
  });

  it('reject wrong weight sizes and non-float inputs with a message', async () => {
    await tf.setBackend('wasm');
    if (!status.available) {
      expect(tf.getKernel(ACCEL_KERNELS.layerNorm, 'wasm')).toBeUndefined();
      return;
    }
    expect(() =>
      tf.tidy(() =>
        tf.engine().runKernel(ACCEL_KERNELS.layerNorm, { x: tf.ones([2, 4]), gamma: tf.ones([3]), beta: tf.ones([4]) }, { eps: 1e-5 }),
      ),
    ).toThrow(/weight and bias need 4 values/);
    expect(() => tf.tidy(() => tf.engine().runKernel(ACCEL_KERNELS.gelu, { x: tf.ones([2], 'int32') }, {}))).toThrow(/float32/);
  });
});

describe('native binding safety', () => {
  it('checks every offset against the heap: a bad call throws a RangeError, never touches memory', () => {
    const loaded = loadAccel();
    if (!loaded.available) {
      expect(loaded.note.length).toBeGreaterThan(10);
      return;
    }
    const heap = new ArrayBuffer(1024);
    const native = loaded.binding;
    // C = A·B with A at byte 0 (4×4), B at 64, C at 2048: C is outside the 1 KiB heap.
    const gemm = new Float64Array([0, 0, 4, 4, 4, 1, 0, 0, 64, 0, 2048, 0, -1, 0, 0, 0, -1, 0, 0, 0]);
    expect(() => native.gemm(heap, gemm)).toThrow(RangeError);
    gemm[10] = 130; // misaligned
    expect(() => native.gemm(heap, gemm)).toThrow(RangeError);
    gemm[10] = 128;
    const f = new Float32Array(heap);
    f.fill(1, 0, 32);
    native.gemm(heap, gemm);
    expect(Array.from(f.subarray(32, 48))).toEqual(new Array(16).fill(4));
    expect(() => native.geluFwd(heap, new Float64Array([1000, 0, 0, 0]))).toThrow(RangeError);
    expect(() => native.softmaxFwd(heap, new Float64Array([2]))).toThrow(RangeError);
    expect(() => native.gemm(heap, new Float32Array(20) as unknown as Float64Array)).toThrow(TypeError);
    expect(() => native.gemm(heap, new Float64Array(18))).toThrow(/expected 20/);
    expect(() => native.layerNormFwd(new Uint8Array(8) as unknown as ArrayBuffer, new Float64Array(9))).toThrow(TypeError);
  });
});

describe('unregistering', () => {
  it('puts back exactly the kernels that were registered before, and registering again is idempotent', async () => {
    const before = tf.getKernel('BatchMatMul', 'wasm');
    const again = registerAccelKernels(tf);
    expect(again.active).toBe(status.available);
    expect(again.replaced).toEqual(registration.replaced);
    unregisterAccelKernels(tf);
    const stock = tf.getKernel('BatchMatMul', 'wasm');
    if (status.available) expect(stock).not.toBe(before);
    for (const name of Object.values(ACCEL_KERNELS)) expect(tf.getKernel(name, 'wasm')).toBeUndefined();
    // Plain wasm still computes the same as cpu.
    const { a, b } = operands([2], [2], 5, 4, 3, false, true, 80);
    await expectParity('stock after unregister', (x, y) => tf.matMul(x!, y!, false, true), [a, b], [0, 1]);
    registration = registerAccelKernels(tf);
    expect(registration.active).toBe(status.available);
  });
});
