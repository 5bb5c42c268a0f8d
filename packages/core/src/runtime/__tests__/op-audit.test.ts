// The kernel audit kept as a regression test: forward and backward of the ops a transformer VLM
// trains with, on wasm (core kernels and fallbacks installed) against cpu. Ops whose gradient
// tfjs-core itself lacks (TopK, StridedSlice, ScatterNd, GatherNd) are checked forward only.
import * as tf from '@tensorflow/tfjs-core';
import { type HostArray, seeded, type TensorFn } from '@vl/testing';
import { describe, it } from 'vitest';
import { expectParity } from './parity.js';

interface AuditCase {
  name: string;
  inputs: HostArray[];
  f: TensorFn;
  /** Inputs to differentiate; empty for forward-only ops. */
  grad: number[];
}

const x3 = (seed: number, lo = -1, hi = 1) => seeded([2, 3, 4], seed, lo, hi);
const positive = (seed: number) => seeded([2, 3, 4], seed, 0.2, 2);

const CASES: AuditCase[] = [
  { name: 'erf', inputs: [x3(1)], f: (a) => tf.erf(a!), grad: [0] },
  { name: 'tanh', inputs: [x3(2)], f: (a) => tf.tanh(a!), grad: [0] },
  { name: 'sigmoid', inputs: [x3(3)], f: (a) => tf.sigmoid(a!), grad: [0] },
  {
    name: 'relu family',
    inputs: [x3(4)],
    f: (a) => tf.add(tf.add(tf.relu(a!), tf.elu(a!)), tf.add(tf.leakyRelu(a!, 0.1), tf.selu(a!))),
    grad: [0],
  },
  { name: 'prelu', inputs: [x3(5), seeded([4], 6, 0.05, 0.3)], f: (a, p) => tf.prelu(a!, p!), grad: [0, 1] },
  { name: 'softplus', inputs: [x3(7)], f: (a) => tf.softplus(a!), grad: [0] },
  {
    name: 'dropout via randomUniform and where',
    inputs: [x3(8)],
    f: (a) => tf.where(tf.greater(tf.randomUniform(a!.shape, 0, 1, 'float32', 7), 0.1), tf.div(a!, 0.9), tf.zerosLike(a!)),
    grad: [0],
  },
  { name: 'tf.dropout (seeded)', inputs: [x3(9)], f: (a) => tf.dropout(a!, 0.25, undefined, 11), grad: [0] },
  {
    name: 'oneHot cross-entropy',
    inputs: [seeded([5, 7], 10, -2, 2)],
    f: (l) => tf.neg(tf.sum(tf.mul(tf.oneHot(tf.tensor1d([1, 0, 6, 3, 3], 'int32'), 7), tf.logSoftmax(l!)), -1)),
    grad: [0],
  },
  { name: 'topk values', inputs: [x3(11)], f: (a) => tf.topk(a!, 2).values, grad: [] },
  { name: 'topk indices', inputs: [x3(12)], f: (a) => tf.cast(tf.topk(a!, 3).indices, 'float32'), grad: [] },
  { name: 'cumsum (last axis)', inputs: [x3(13)], f: (a) => tf.cumsum(a!, 2), grad: [0] },
  // tfjs-core's Cumsum gradient gets the shape wrong off the last axis (on every backend).
  { name: 'cumsum exclusive reverse (axis 1)', inputs: [x3(14)], f: (a) => tf.cumsum(a!, 1, true, true), grad: [] },
  { name: 'argMax', inputs: [x3(15)], f: (a) => tf.cast(tf.argMax(a!, -1), 'float32'), grad: [] },
  { name: 'clipByValue', inputs: [x3(16)], f: (a) => tf.clipByValue(a!, -0.5, 0.5), grad: [0] },
  {
    name: 'maximum/minimum',
    inputs: [x3(17), x3(18)],
    f: (a, b) => tf.add(tf.maximum(a!, b!), tf.mul(tf.minimum(a!, b!), 2)),
    grad: [0, 1],
  },
  {
    name: 'mean/sum/max/min reductions',
    inputs: [x3(19)],
    f: (a) =>
      tf.add(
        tf.add(tf.mean(a!, 1), tf.sum(a!, 1)),
        tf.add(tf.max(a!, 1), tf.min(a!, -1, true).reshape([2, 3]).slice([0, 0], [2, 3]).mean(1, true)),
      ),
    grad: [0],
  },
  { name: 'prod', inputs: [positive(20)], f: (a) => tf.prod(a!, 2), grad: [0] },
  {
    name: 'concat + slice',
    inputs: [x3(21), x3(22)],
    f: (a, b) => tf.slice(tf.concat([a!, b!], 1), [0, 1, 1], [2, 4, 2]),
    grad: [0, 1],
  },
  { name: 'stridedSlice', inputs: [x3(23)], f: (a) => tf.stridedSlice(a!, [0, 0, 0], [2, 3, 4], [1, 2, 2]), grad: [] },
  {
    name: 'pad',
    inputs: [x3(24)],
    f: (a) =>
      tf.pad(
        a!,
        [
          [0, 0],
          [1, 1],
          [2, 0],
        ],
        0.5,
      ),
    grad: [0],
  },
  {
    name: 'mirrorPad',
    inputs: [x3(25)],
    f: (a) =>
      tf.mirrorPad(
        a!,
        [
          [0, 0],
          [1, 1],
          [1, 0],
        ],
        'reflect',
      ),
    grad: [0],
  },
  { name: 'tile', inputs: [x3(26)], f: (a) => tf.tile(a!, [1, 2, 3]), grad: [0] },
  { name: 'transpose', inputs: [x3(27)], f: (a) => tf.transpose(a!, [2, 0, 1]), grad: [0] },
  {
    name: 'stack/unstack/split',
    inputs: [x3(28), x3(29)],
    f: (a, b) => tf.add(tf.unstack(tf.stack([a!, b!], 1), 1)[1]!, tf.tile(tf.split(a!, 2, 2)[1]!, [1, 1, 2])),
    grad: [0, 1],
  },
  {
    name: 'reverse/broadcastTo',
    inputs: [x3(30), seeded([1, 4], 31)],
    f: (a, b) => tf.add(tf.reverse(a!, 1), tf.broadcastTo(b!, [2, 3, 4])),
    grad: [0, 1],
  },
  { name: 'squaredDifference', inputs: [x3(32), x3(33)], f: (a, b) => tf.squaredDifference(a!, b!), grad: [0, 1] },
  {
    name: 'rsqrt/sqrt/exp/log/reciprocal',
    inputs: [positive(34)],
    f: (a) => tf.add(tf.add(tf.rsqrt(a!), tf.sqrt(a!)), tf.add(tf.add(tf.exp(a!), tf.log(a!)), tf.reciprocal(a!))),
    grad: [0],
  },
  { name: 'pow', inputs: [positive(35), x3(36)], f: (a, b) => tf.add(tf.pow(a!, b!), tf.pow(b!, 3)), grad: [0, 1] },
  { name: 'logSumExp', inputs: [x3(37, -3, 3)], f: (a) => tf.logSumExp(a!, -1), grad: [0] },
  { name: 'l2 normalise', inputs: [x3(38)], f: (a) => tf.div(a!, tf.norm(a!, 'euclidean', -1, true)), grad: [0] },
  {
    name: 'scatterND',
    inputs: [seeded([3, 4], 39)],
    f: (u) => tf.scatterND(tf.tensor2d([[0], [2], [5]], [3, 1], 'int32'), u!, [6, 4]),
    grad: [],
  },
  {
    name: 'gatherND',
    inputs: [x3(40)],
    f: (a) =>
      tf.gatherND(
        a!,
        tf.tensor2d(
          [
            [0, 1],
            [1, 2],
          ],
          [2, 2],
          'int32',
        ),
      ),
    grad: [],
  },
  {
    name: 'einsum (cpu-copy fallback)',
    inputs: [seeded([3, 4], 41), seeded([4, 5], 42)],
    f: (a, b) => tf.einsum('ij,jk->ik', a!, b!),
    grad: [],
  },
  {
    name: 'avgPool/maxPool',
    inputs: [seeded([1, 4, 6, 2], 43)],
    f: (a) => tf.add(tf.avgPool(a as tf.Tensor4D, 2, 2, 'valid'), tf.maxPool(a as tf.Tensor4D, 2, 2, 'valid')),
    grad: [0],
  },
  // All-negative windows: the stock wasm kernels start their max at the smallest positive float.
  {
    name: 'maxPool gradient, negative windows',
    inputs: [seeded([1, 4, 4, 2], 53, -2, -0.1)],
    f: (a) => tf.maxPool(a as tf.Tensor4D, 3, 1, 'same'),
    grad: [0],
  },
  {
    name: 'maxPool3d, negative windows',
    inputs: [seeded([1, 2, 4, 4, 2], 54, -2, -0.1)],
    f: (a) => tf.maxPool3d(a as tf.Tensor5D, 2, 2, 'valid'),
    grad: [0],
  },
  {
    name: 'maxPoolWithArgmax, negative windows',
    inputs: [seeded([1, 4, 4, 2], 55, -2, -0.1)],
    f: (a) => {
      const pooled = tf.maxPoolWithArgmax(a as tf.Tensor4D, 2, 2, 'valid');
      return tf.concat([pooled.result as tf.Tensor, tf.cast(pooled.indexes as tf.Tensor, 'float32')], -1);
    },
    grad: [],
  },
  {
    name: 'dilation2d, negative values',
    inputs: [seeded([1, 4, 4, 2], 56, -2, -0.1), seeded([2, 2, 2], 57, -1, -0.1)],
    f: (a, b) => tf.dilation2d(a as tf.Tensor4D, b as tf.Tensor3D, 1, 'valid'),
    grad: [0, 1],
  },
  // Square images: tfjs's cpu ResizeBilinearGrad swaps height and width otherwise.
  {
    name: 'resizeBilinear',
    inputs: [seeded([1, 4, 4, 2], 44)],
    f: (a) => tf.image.resizeBilinear(a as tf.Tensor4D, [6, 6]),
    grad: [0],
  },
  // isNaN/isFinite have no gradient in tfjs-core, so the mask is built outside the differentiated path.
  {
    name: 'isNaN/isFinite masks',
    inputs: [x3(45)],
    f: (a) => tf.cast(tf.logicalOr(tf.isNaN(a!), tf.logicalNot(tf.isFinite(a!))), 'float32'),
    grad: [],
  },
  {
    name: 'abs/neg/square/sign',
    inputs: [x3(46)],
    f: (a) => tf.add(tf.add(tf.abs(a!), tf.neg(tf.square(a!))), tf.mul(a!, tf.sign(a!))),
    grad: [0],
  },
  {
    name: 'sin/cos/atan2',
    inputs: [x3(47), x3(48)],
    f: (a, b) => tf.add(tf.add(tf.sin(a!), tf.cos(b!)), tf.atan2(a!, tf.add(b!, 2))),
    grad: [0, 1],
  },
  {
    name: 'range/linspace/fill',
    inputs: [x3(49)],
    f: (a) => tf.mul(tf.mul(a!, tf.range(0, 4)), tf.add(tf.linspace(0, 1, 4), tf.fill([4], 0.5))),
    grad: [0],
  },
  {
    name: 'mean squared error loss',
    inputs: [x3(50), x3(51)],
    f: (a, b) => tf.losses.meanSquaredError(b!, a!),
    grad: [0],
  },
  {
    name: 'softmax cross-entropy loss',
    inputs: [seeded([4, 6], 52, -2, 2)],
    f: (l) => tf.losses.softmaxCrossEntropy(tf.oneHot(tf.tensor1d([1, 2, 3, 5], 'int32'), 6), l!),
    grad: [0],
  },
];

describe('op audit: cpu vs wasm, forward and backward', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    await expectParity(c.name, c.f, c.inputs, c.grad);
  });
});
