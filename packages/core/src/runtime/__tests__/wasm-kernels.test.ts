// Core's wasm kernels against the cpu backend: forward values and gradients of every matmul form,
// fused matmul epilogues, embedding, convolution, softmax, layer norm and GELU; leak checks;
// restoring the stock kernels; the fallbacks filling the kernels wasm lacks.
import * as tf from '@tensorflow/tfjs-core';
import { type HostArray, referenceMatMul, seeded } from '@vl/testing';
import { describe, expect, it } from 'vitest';
import { gelu, geluTanh, layerNorm } from '../../nn/functional.js';
import { NO_CPU_FALLBACK } from '../kernels/cpu-fallback.js';
import { installWasmKernels, isStockWasmKernel } from '../wasm-kernels.js';
import { evaluate, expectClose, expectParity, useRuntime } from './parity.js';

// Captured before any initRuntime call, while only the wasm package's own kernels are registered.
const stockBatchMatMul = tf.getKernel(tf.BatchMatMul, 'wasm');
const stockFusedMatMul = tf.getKernel(tf._FusedMatMul, 'wasm');

/** Operand shapes for a·b given the logical [m,k]·[k,n] and the transpose flags. */
function operands(batchA: number[], batchB: number[], m: number, k: number, n: number, ta: boolean, tb: boolean, seed: number) {
  const a = seeded([...batchA, ...(ta ? [k, m] : [m, k])], seed);
  const b = seeded([...batchB, ...(tb ? [n, k] : [k, n])], seed + 1);
  return { a, b };
}

const FORMS: [boolean, boolean][] = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];
const formName = ([ta, tb]: [boolean, boolean]) => `${ta ? 'T' : 'N'}${tb ? 'T' : 'N'}`;

describe('wasm BatchMatMul replacement', () => {
  it.each(FORMS)('2-D matMul, transposeA=%s transposeB=%s: forward and gradients equal cpu', async (ta, tb) => {
    // Odd sizes so no dimension lines up with XNNPACK's tiles.
    const { a, b } = operands([], [], 13, 19, 11, ta, tb, 1);
    const { wasm } = await expectParity(`matMul ${formName([ta, tb])}`, (x, y) => tf.matMul(x!, y!, ta, tb), [a, b], [0, 1]);
    expectClose(wasm.value, referenceMatMul(a, b, ta, tb), 'vs float64 reference');
  });

  it.each(FORMS)('3-D batched matMul [3,m,k]x[3,k,n], transposeA=%s transposeB=%s', async (ta, tb) => {
    const { a, b } = operands([3], [3], 9, 7, 10, ta, tb, 2);
    const { wasm } = await expectParity(`bmm3 ${formName([ta, tb])}`, (x, y) => tf.matMul(x!, y!, ta, tb), [a, b], [0, 1]);
    expectClose(wasm.value, referenceMatMul(a, b, ta, tb), 'vs float64 reference');
  });

  it.each(FORMS)('4-D batched matMul [2,3,m,k]x[2,3,k,n] (attention heads), transposeA=%s transposeB=%s', async (ta, tb) => {
    const { a, b } = operands([2, 3], [2, 3], 6, 8, 5, ta, tb, 3);
    await expectParity(`bmm4 ${formName([ta, tb])}`, (x, y) => tf.matMul(x!, y!, ta, tb), [a, b], [0, 1]);
  });

  // Gradients of broadcast batched matMul fail inside tfjs-core on every backend (the gradient keeps
  // the broadcast batch shape), so these check forward values, against cpu and a float64 reference.
  it.each([
    ['[1,h,m,k]x[b,h,k,n]', [1, 3], [2, 3]],
    ['[b,h,m,k]x[1,h,k,n]', [2, 3], [1, 3]],
    ['[b,m,k]x[k,n] (rank mismatch)', [4], []],
    ['[m,k]x[b,k,n]', [], [3]],
  ] as [string, number[], number[]][])('broadcast batch %s, all transpose forms', async (_name, batchA, batchB) => {
    for (const form of FORMS) {
      const [ta, tb] = form;
      const { a, b } = operands(batchA, batchB, 5, 6, 7, ta, tb, 4);
      const { wasm } = await expectParity(`broadcast ${formName(form)}`, (x, y) => tf.matMul(x!, y!, ta, tb), [a, b]);
      expectClose(wasm.value, referenceMatMul(a, b, ta, tb), `broadcast ${formName(form)} vs float64 reference`);
    }
  });

  it('mixed broadcast [2,1,m,k]x[1,3,k,n] matches the float64 reference', async () => {
    // tfjs's cpu kernel gets this one wrong (it maps batches by modulo), so only the reference judges.
    for (const form of FORMS) {
      const [ta, tb] = form;
      const { a, b } = operands([2, 1], [1, 3], 5, 7, 4, ta, tb, 5);
      const wasm = await evaluate('wasm', (x, y) => tf.matMul(x!, y!, ta, tb), [a, b]);
      expect(wasm.shape).toEqual([2, 3, 5, 4]);
      expectClose(wasm.value, referenceMatMul(a, b, ta, tb), `mixed broadcast ${formName(form)}`);
    }
  });

  it('degenerate sizes: m = 1, k = 1, n = 1 and an empty inner dimension', async () => {
    for (const [m, k, n] of [
      [1, 9, 5],
      [6, 1, 5],
      [6, 9, 1],
    ] as const) {
      for (const form of FORMS) {
        const [ta, tb] = form;
        const { a, b } = operands([2], [2], m, k, n, ta, tb, 6);
        await expectParity(`m${m} k${k} n${n} ${formName(form)}`, (x, y) => tf.matMul(x!, y!, ta, tb), [a, b], [0, 1]);
      }
    }
    const empty = await evaluate('wasm', (x, y) => tf.matMul(x!, y!), [seeded([3, 0], 1), seeded([0, 4], 2)]);
    expect(empty.value).toEqual(new Array(12).fill(0));
  });

  it('few rows against a large right operand (decoding): the swapped form, every transpose form', async () => {
    // m ≪ k·n/(k+n): computed as (Bᵀ·Aᵀ)ᵀ, with and without the final transpose (m = 1).
    for (const m of [1, 3]) {
      for (const form of FORMS) {
        const [ta, tb] = form;
        for (const [batchA, batchB] of [
          [[], []],
          [[2], [2]],
          [[2], []],
          [[], [3]],
        ] as [number[], number[]][]) {
          const { a, b } = operands(batchA, batchB, m, 40, 30, ta, tb, 60);
          const { wasm } = await expectParity(
            `m=${m} ${formName(form)} [${batchA}]x[${batchB}]`,
            (x, y) => tf.matMul(x!, y!, ta, tb),
            [a, b],
            batchA.length === batchB.length ? [0, 1] : [],
          );
          expectClose(wasm.value, referenceMatMul(a, b, ta, tb), `m=${m} ${formName(form)} vs float64 reference`);
        }
        const { a, b } = operands([], [], m, 40, 30, ta, tb, 61);
        await expectParity(
          `fused m=${m} ${formName(form)}`,
          (x, y, c) => tf.fused.matMul({ a: x!, b: y!, transposeA: ta, transposeB: tb, bias: c, activation: 'relu' }),
          [a, b, seeded([30], 62)],
        );
      }
    }
  });

  it('one tensor read as the right operand in several shapes (XNNPACK caches packed weights by id)', async () => {
    const v = seeded([1, 6], 63);
    const x = seeded([4, 6], 64);
    const y = seeded([3, 1], 65);
    const z = seeded([2, 3], 66);
    const wasm = await evaluate(
      'wasm',
      (vv, xx, yy, zz) => {
        const asColumn = tf.matMul(xx!, vv!, false, true); // v read as [6, 1]
        const asRow = tf.matMul(yy!, vv!); // v read as [1, 6]
        const reshaped = tf.matMul(zz!, tf.reshape(vv!, [3, 2])); // same data, read as [3, 2]
        const again = tf.matMul(yy!, vv!); // [1, 6] again, after the other readings
        return tf.concat([asColumn.flatten(), asRow.flatten(), reshaped.flatten(), again.flatten()]);
      },
      [v, x, y, z],
    );
    const expected = [
      ...referenceMatMul(x, v, false, true),
      ...referenceMatMul(y, v, false, false),
      ...referenceMatMul(z, { values: v.values, shape: [3, 2] }, false, false),
      ...referenceMatMul(y, v, false, false),
    ];
    expectClose(wasm.value, expected, 'reinterpreted right operand');
  });

  it('linear layers (x·Wᵀ + b over flattened tokens) and their weight gradients', async () => {
    const x = seeded([2, 5, 12], 7);
    const w = seeded([8, 12], 8);
    const bias = seeded([8], 9);
    const linear = (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
      tf.reshape(tf.add(tf.matMul(tf.reshape(xx, [-1, 12]), ww, false, true), bb), [2, 5, 8]);
    await expectParity('linear', (a, b, c) => linear(a!, b!, c!), [x, w, bias], [0, 1, 2]);
  });
});

describe('wasm _FusedMatMul replacement', () => {
  const activations = ['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu', 'prelu'] as const;

  it.each(activations)('tf.fused.matMul with bias [n] and %s, every transpose form, 2-D and batched', async (activation) => {
    for (const form of FORMS) {
      const [ta, tb] = form;
      for (const batch of [[], [3]]) {
        const { a, b } = operands(batch, batch, 7, 9, 6, ta, tb, 10);
        const bias = seeded([6], 12);
        const alpha = seeded([6], 13, 0.05, 0.3);
        await expectParity(
          `fused ${activation} ${formName(form)} batch[${batch}]`,
          (x, y, c, p) =>
            tf.fused.matMul({
              a: x!,
              b: y!,
              transposeA: ta,
              transposeB: tb,
              bias: c,
              activation,
              preluActivationWeights: activation === 'prelu' ? p : undefined,
              leakyreluAlpha: 0.15,
            }),
          [a, b, bias, alpha],
        );
      }
    }
  });

  it('bias and prelu weights of other broadcastable shapes ([1], [m,n], per-row alpha)', async () => {
    const { a, b } = operands([], [], 5, 7, 4, false, true, 14);
    const cases: [string, HostArray, HostArray, 'relu6' | 'prelu' | 'elu'][] = [
      ['bias [1]', seeded([1], 15), seeded([4], 16), 'relu6'],
      ['bias [m,n]', seeded([5, 4], 15), seeded([4], 16), 'elu'],
      ['prelu alpha [m,1]', seeded([4], 15), seeded([5, 1], 16, 0.05, 0.3), 'prelu'],
      ['prelu alpha [1]', seeded([4], 15), seeded([1], 16, 0.05, 0.3), 'prelu'],
    ];
    for (const [name, bias, alpha, activation] of cases) {
      await expectParity(
        `fused ${name}`,
        (x, y, c, p) =>
          tf.fused.matMul({
            a: x!,
            b: y!,
            transposeB: true,
            bias: c,
            activation,
            preluActivationWeights: activation === 'prelu' ? p : undefined,
          }),
        [a, b, bias, alpha],
      );
    }
  });

  it('gradients through tf.fused.matMul with bias (a, b and bias), linear and relu', async () => {
    for (const activation of ['linear', 'relu'] as const) {
      for (const form of FORMS) {
        const [ta, tb] = form;
        const { a, b } = operands([], [], 6, 8, 5, ta, tb, 17);
        await expectParity(
          `fused grad ${activation} ${formName(form)}`,
          (x, y, c) => tf.fused.matMul({ a: x!, b: y!, transposeA: ta, transposeB: tb, bias: c, activation }),
          [a, b, seeded([5], 18)],
          [0, 1, 2],
        );
      }
    }
  });
});

describe('training kernels on wasm', () => {
  it('gather (embedding lookup) and its gradient, UnsortedSegmentSum, with repeated ids', async () => {
    const table = seeded([11, 6], 20);
    const ids = seeded([2, 5], 21);
    const idValues = [3, 0, 3, 10, 7, 7, 7, 1, 0, 3];
    await expectParity('embedding', (t, i) => tf.gather(t!, i!), [table, ids], [0], { intInputs: { 1: idValues } });
  });

  it('unsortedSegmentSum drops out-of-range segment ids, float32 and int32', async () => {
    const x = seeded([6, 3], 22);
    const segments = [0, 4, 2, -1, 2, 9];
    await expectParity('segment sum', (v, s) => tf.unsortedSegmentSum(v!, s as tf.Tensor1D, 5), [x, seeded([6], 1)], [], {
      intInputs: { 1: segments },
    });
    await expectParity(
      'segment sum int32',
      (v, s) => tf.cast(tf.unsortedSegmentSum(tf.cast(tf.mul(v!, 10), 'int32'), s as tf.Tensor1D, 5), 'float32'),
      [x, seeded([6], 1)],
      [],
      {
        intInputs: { 1: segments },
      },
    );
  });

  it('conv2d as a ViT patch embedding (stride = kernel): forward, input and filter gradients', async () => {
    await expectParity(
      'patch embed',
      (x, f) => tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, 4, 'valid'),
      [seeded([2, 12, 8, 3], 23), seeded([4, 4, 3, 7], 24)],
      [0, 1],
    );
  });

  it('general conv2d (3x3, stride 1 and 2, same and valid padding, many channels)', async () => {
    const cases: [number, 'same' | 'valid', number[], number[]][] = [
      [1, 'same', [2, 7, 6, 3], [3, 3, 3, 4]],
      [2, 'same', [1, 9, 9, 5], [3, 3, 5, 6]],
      [2, 'valid', [2, 8, 7, 20], [3, 2, 20, 3]],
    ];
    for (const [stride, pad, xShape, fShape] of cases) {
      await expectParity(
        `conv2d s${stride} ${pad}`,
        (x, f) => tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, stride, pad),
        [seeded(xShape, 25), seeded(fShape, 26)],
        [0, 1],
      );
    }
  });

  const filterGrad =
    (filterShape: number[], stride: number, dataFormat: 'NHWC' | 'NCHW') => (x: tf.Tensor | undefined, dy: tf.Tensor | undefined) =>
      tf.engine().runKernel(tf.Conv2DBackpropFilter, { x: x!, dy: dy! }, {
        strides: [stride, stride],
        pad: 'same',
        dataFormat,
        dimRoundingMode: undefined,
        filterShape,
      } as unknown as tf.NamedAttrMap) as tf.Tensor;

  it('Conv2DBackpropFilter with NCHW data, called as a kernel (tf.conv2d takes NHWC only)', async () => {
    await expectParity('Conv2DBackpropFilter NCHW', filterGrad([3, 3, 3, 4], 2, 'NCHW'), [
      seeded([2, 3, 7, 6], 70),
      seeded([2, 4, 4, 3], 71),
    ]);
  });

  it('Conv2DBackpropFilter over several im2col chunks equals the sum over the chunks', async () => {
    // 5×5×64 patches over 32×32 outputs: 1.6M im2col floats per image, so 11 images take two
    // 16M-float chunks; the gradient is a sum over images, so it must equal 10 images + 1 image.
    const x = seeded([11, 32, 32, 64], 72);
    const dy = seeded([11, 32, 32, 2], 73);
    const part = (h: HostArray, from: number, to: number): HostArray => {
      const per = h.values.length / (h.shape[0] as number);
      return { values: h.values.slice(from * per, to * per), shape: [to - from, ...h.shape.slice(1)] };
    };
    const grad = filterGrad([5, 5, 64, 2], 1, 'NHWC');
    const whole = await evaluate('wasm', grad, [x, dy]);
    const first = await evaluate('wasm', grad, [part(x, 0, 10), part(dy, 0, 10)]);
    const last = await evaluate('wasm', grad, [part(x, 10, 11), part(dy, 10, 11)]);
    expectClose(
      whole.value,
      first.value.map((v, i) => v + (last.value[i] as number)),
      'chunked filter gradient',
    );
  });

  it('depthwise conv2d gradients (cpu-copy fallbacks)', async () => {
    await expectParity(
      'depthwise',
      (x, f) => tf.depthwiseConv2d(x as tf.Tensor4D, f as tf.Tensor4D, 1, 'same'),
      [seeded([1, 6, 5, 3], 27), seeded([3, 3, 3, 2], 28)],
      [0, 1],
    );
  });

  it('cpu-copy fallbacks with list and string inputs: Ragged* and StaticRegexReplace', async () => {
    const run = () =>
      tf.tidy(() => {
        const range = tf.raggedRange(tf.tensor1d([0, 5], 'int32'), tf.tensor1d([3, 7], 'int32'), tf.tensor1d([1, 1], 'int32'));
        const gathered = tf.raggedGather([tf.tensor1d([0, 2, 5], 'int32')], tf.tensor1d([1, 2, 3, 4, 5]), tf.tensor1d([1, 0], 'int32'), 1);
        const dense = tf.raggedTensorToTensor(
          [2, 3],
          tf.tensor1d([1, 2, 3]),
          tf.scalar(0),
          [tf.tensor1d([0, 2, 3], 'int32')],
          ['ROW_SPLITS'],
        );
        const text = tf.string.staticRegexReplace(tf.tensor1d(['abcb', 'bb'], 'string'), 'b', 'x');
        return {
          numbers: (
            [range.rtNestedSplits, range.rtDenseValues, ...gathered.outputNestedSplits, gathered.outputDenseValues, dense] as tf.Tensor[]
          ).map((t) => Array.from(t.dataSync())),
          text: text.arraySync(),
        };
      });
    await useRuntime('cpu');
    const expected = run();
    await useRuntime('wasm');
    const before = tf.memory();
    expect(run()).toEqual(expected);
    expect(tf.memory().numTensors).toBe(before.numTensors);
    expect(tf.memory().numDataBuffers).toBe(before.numDataBuffers);
  });

  it('softmax and logSoftmax over the last axis', async () => {
    const x = seeded([3, 4, 9], 29, -3, 3);
    await expectParity('softmax', (v) => tf.softmax(v!), [x], [0]);
    await expectParity('logSoftmax', (v) => tf.logSoftmax(v!), [x], [0]);
  });

  it('layerNorm (nn/functional) with weight and bias', async () => {
    await expectParity(
      'layerNorm',
      (x, w, b) => layerNorm(x!, w!, b!, 1e-6),
      [seeded([2, 5, 16], 30, -2, 2), seeded([16], 31, 0.5, 1.5), seeded([16], 32)],
      [0, 1, 2],
    );
  });

  it('gelu and geluTanh (nn/functional)', async () => {
    const x = seeded([4, 33], 33, -4, 4);
    await expectParity('gelu', (v) => gelu(v!), [x], [0]);
    await expectParity('geluTanh', (v) => geluTanh(v!), [x], [0]);
  });

  it('an attention head: softmax(QKᵀ/√d)·V with mask, forward and gradients', async () => {
    const attention = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) => {
      const scores = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(8)); // [B, H, T, T]
      const causal = Array.from({ length: 36 }, (_, i) => (i % 6 <= Math.floor(i / 6) ? 1 : 0));
      const mask = tf.tensor2d(causal, [6, 6]);
      const masked = tf.add(scores, tf.mul(tf.sub(1, mask), -1e9));
      return tf.matMul(tf.softmax(masked), v); // [B, H, T, Dh]
    };
    await expectParity(
      'attention',
      (q, k, v) => attention(q!, k!, v!),
      [seeded([2, 3, 6, 8], 34), seeded([2, 3, 6, 8], 35), seeded([2, 3, 6, 8], 36)],
      [0, 1, 2],
    );
  });
});

describe('kernel registration', () => {
  it('installWasmKernels(false) puts back the exact stock kernel configs; true replaces them again', async () => {
    expect(stockBatchMatMul?.setupFunc, 'captured config is the wasm package’s own').toBeDefined();
    await useRuntime('wasm');
    const fast = installWasmKernels(true);
    expect(fast.enabled).toBe(true);
    expect(fast.replaced).toEqual(expect.arrayContaining([tf.BatchMatMul, tf._FusedMatMul, tf.MaxPoolGrad]));
    expect(tf.getKernel(tf.BatchMatMul, 'wasm')).not.toBe(stockBatchMatMul);
    expect(isStockWasmKernel(tf.BatchMatMul)).toBe(false);

    const restored = installWasmKernels(false);
    expect(restored).toMatchObject({ enabled: false, replaced: [] });
    expect(tf.getKernel(tf.BatchMatMul, 'wasm')).toBe(stockBatchMatMul);
    expect(tf.getKernel(tf._FusedMatMul, 'wasm')).toBe(stockFusedMatMul);
    expect(isStockWasmKernel(tf._FusedMatMul)).toBe(true);
    // Fallbacks only fill gaps, so they stay either way.
    expect(restored.fallbacks).toEqual(fast.fallbacks);
    expect(tf.getKernel(tf.UnsortedSegmentSum, 'wasm')).toBeDefined();

    // The stock kernel still computes (its setup ran when the backend started).
    const { a, b } = operands([], [], 4, 5, 3, false, false, 40);
    const stockRun = await evaluate('wasm', (x, y) => tf.matMul(x!, y!), [a, b], [], { wasmKernels: false });
    expectClose(stockRun.value, referenceMatMul(a, b, false, false), 'stock NN');
    const info = await useRuntime('wasm', true);
    expect(info.kernels.enabled).toBe(true);
    expect(isStockWasmKernel(tf.BatchMatMul)).toBe(false);
  });

  it('fallbacks cover every kernel the cpu backend has and wasm lacks, except complex and drawing', async () => {
    const info = await useRuntime('wasm');
    expect(info.kernels.fallbacks).toEqual(
      expect.arrayContaining([tf.UnsortedSegmentSum, tf.Conv2DBackpropFilter, tf.DepthwiseConv2dNativeBackpropFilter, tf.Einsum]),
    );
    const onWasm = new Set(tf.getKernelsForBackend('wasm').map((k) => k.kernelName));
    const gaps = tf
      .getKernelsForBackend('cpu')
      .map((k) => k.kernelName)
      .filter((name) => !onWasm.has(name));
    expect(
      gaps.every((name) => NO_CPU_FALLBACK.has(name)),
      `gaps left: ${gaps.join(', ')}`,
    ).toBe(true);
  });

  it('a second forward of the fast kernels allocates nothing that survives (no heap growth in steady state)', async () => {
    await useRuntime('wasm');
    const a = tf.tensor(seeded([2, 3, 20, 16], 41).values, [2, 3, 20, 16]);
    const b = tf.tensor(seeded([2, 3, 24, 16], 42).values, [2, 3, 24, 16]);
    const run = () => tf.tidy(() => tf.sum(tf.matMul(a, b, false, true)).dataSync()[0]);
    const first = run();
    const buffers = tf.memory().numDataBuffers;
    const bytes = tf.memory().numBytes;
    expect(run()).toBe(first);
    expect(tf.memory().numDataBuffers).toBe(buffers);
    expect(tf.memory().numBytes).toBe(bytes);
    tf.dispose([a, b]);
  });
});
