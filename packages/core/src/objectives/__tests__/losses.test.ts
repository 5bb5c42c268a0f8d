// Loss values against hand computation (CE, ITC, ITM, MLM, LM, MIM), finite-difference gradients
// for ITC and LM, the loss-combining helper, and leak checks.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { isVlError } from '../../errors.js';
import { initRuntime } from '../../runtime/backend.js';
import { clampTemperature, initTemperature, itcAccuracy, itcLoss } from '../itc.js';
import { itmLoss } from '../itm.js';
import { lmLabels, lmLoss } from '../lm.js';
import { combineLosses, crossEntropy, IGNORE_INDEX, softCrossEntropy } from '../losses.js';
import { mimLabels, mimLoss } from '../mim.js';
import { mlmLoss } from '../mlm.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

const num = (t: tf.Tensor) => t.dataSync()[0]!;

/** −log softmax(row)[y] in float64. */
function nll(row: number[], y: number): number {
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
  return lse - row[y]!;
}
function logSoftmax(row: number[]): number[] {
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
  return row.map((v) => v - lse);
}

/** Central finite differences of a scalar function of one tensor, compared with tf.grad. */
function checkGradient(f: (x: tf.Tensor) => tf.Scalar, x0: number[], shape: number[], h = 1e-2, tol = 3e-3) {
  const analytic = tf.tidy(() => tf.grad(f)(tf.tensor(x0, shape)).dataSync());
  for (let i = 0; i < x0.length; i++) {
    const plus = [...x0];
    const minus = [...x0];
    plus[i]! += h;
    minus[i]! -= h;
    const fp = tf.tidy(() => num(f(tf.tensor(plus, shape))));
    const fm = tf.tidy(() => num(f(tf.tensor(minus, shape))));
    const numeric = (fp - fm) / (2 * h);
    expect(Math.abs(analytic[i]! - numeric)).toBeLessThan(tol * Math.max(1, Math.abs(numeric)));
  }
}

describe('crossEntropy', () => {
  it('matches −log softmax, skips -100 rows in the mean, and returns 0 when all are ignored', () => {
    const rows = [
      [1, 2, 0.5],
      [0, 0, 3],
      [-1, 4, 2],
    ];
    const logits = tf.tensor2d(rows);
    const expected = (nll(rows[0]!, 1) + nll(rows[2]!, 0)) / 2;
    expect(num(crossEntropy(logits, [1, IGNORE_INDEX, 0]))).toBeCloseTo(expected, 5);
    expect(num(crossEntropy(logits, [1, IGNORE_INDEX, 0], { reduction: 'sum' }))).toBeCloseTo(2 * expected, 5);
    const none = crossEntropy(logits, [1, IGNORE_INDEX, 0], { reduction: 'none' }).dataSync();
    expect(none[0]).toBeCloseTo(nll(rows[0]!, 1), 5);
    expect(none[1]).toBe(0);
    expect(num(crossEntropy(logits, [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]))).toBe(0);
  });

  it('rejects labels outside the vocabulary', () => {
    expect(() => crossEntropy(tf.zeros([1, 3]), [3])).toThrow(/outside \[0, 3\)/);
  });

  it('softCrossEntropy is −Σ target·log p', () => {
    const row = [0.2, -1, 1.5];
    const t = [0.5, 0.25, 0.25];
    const lp = logSoftmax(row);
    expect(num(softCrossEntropy(tf.tensor2d([row]), tf.tensor2d([t])))).toBeCloseTo(-lp.reduce((s, v, i) => s + v * t[i]!, 0), 5);
  });
});

describe('ITC', () => {
  it('identical orthonormal image and text features: loss = log(1 + (B−1)·e^{−1/τ})', () => {
    const feat = tf.eye(3);
    const out = itcLoss({ imageFeat: feat, textFeat: feat, temp: 0.1 });
    const expected = Math.log(1 + 2 * Math.exp(-10));
    expect(num(out.loss)).toBeCloseTo(expected, 6);
    expect(num(out.lossI2t)).toBeCloseTo(num(out.lossT2i), 7);
    expect(out.simI2t.arraySync()).toEqual([
      [10, 0, 0],
      [0, 10, 0],
      [0, 0, 10],
    ]);
  });

  it('identical non-orthogonal features: hand-computed InfoNCE in both directions', () => {
    const f = [
      [0.6, 0.8],
      [1, 0],
      [0, 1],
    ];
    const temp = 0.5;
    const sim = f.map((a) => f.map((b) => (a[0]! * b[0]! + a[1]! * b[1]!) / temp));
    const expected = sim.reduce((s, row, i) => s + nll(row, i), 0) / 3; // symmetric: both directions equal
    const out = itcLoss({ imageFeat: tf.tensor2d(f), textFeat: tf.tensor2d(f), temp: tf.scalar(temp) });
    expect(num(out.loss)).toBeCloseTo(expected, 5);
  });

  it('several captions of one image are positives of each other (image ids)', () => {
    const img = [
      [1, 0],
      [1, 0],
      [0, 1],
    ]; // pairs 0 and 1 show the same image
    const txt = [
      [0.8, 0.6],
      [0.6, 0.8],
      [0, 1],
    ];
    const temp = 0.2;
    const dot = (a: number[], b: number[]) => (a[0]! * b[0]! + a[1]! * b[1]!) / temp;
    const ids = [7, 7, 9];
    const targetRow = (i: number): number[] => {
      const pos: number[] = ids.map((id) => (id === ids[i] ? 1 : 0));
      const total = pos.reduce((s, x) => s + x, 0);
      return pos.map((v) => v / total);
    };
    let i2t = 0;
    let t2i = 0;
    for (let i = 0; i < 3; i++) {
      const t = targetRow(i);
      i2t -= logSoftmax(txt.map((tt) => dot(img[i]!, tt))).reduce((s, v, j) => s + v * t[j]!, 0);
      t2i -= logSoftmax(img.map((ii) => dot(txt[i]!, ii))).reduce((s, v, j) => s + v * t[j]!, 0);
    }
    const out = itcLoss({ imageFeat: tf.tensor2d(img), textFeat: tf.tensor2d(txt), temp, imageIds: ids });
    expect(num(out.lossI2t)).toBeCloseTo(i2t / 3, 5);
    expect(num(out.lossT2i)).toBeCloseTo(t2i / 3, 5);
    expect((out.targets.arraySync() as number[][])[0]).toEqual([0.5, 0.5, 0]);
  });

  it('queue columns widen the candidates as negatives; soft targets mix by alpha', () => {
    const img = [
      [1, 0],
      [0, 1],
    ];
    const queue = [
      [0.6, -1],
      [0.8, 0],
    ]; // [D, Q]: two queued unit vectors (0.6,0.8) and (−1,0)
    const all = [
      [1, 0, 0.6, -1],
      [0, 1, 0.8, 0],
    ];
    const soft = [
      [0.7, 0.1, 0.1, 0.1],
      [0.1, 0.7, 0.2, 0],
    ];
    const temp = 0.5;
    const alpha = 0.4;
    let loss = 0;
    for (let i = 0; i < 2; i++) {
      const row = [0, 1, 2, 3].map((j) => (img[i]![0]! * all[0]![j]! + img[i]![1]! * all[1]![j]!) / temp);
      const hard = [0, 1, 2, 3].map((j) => (j === i ? 1 : 0));
      const target = hard.map((h, j) => alpha * soft[i]![j]! + (1 - alpha) * h);
      loss -= logSoftmax(row).reduce((s, v, j) => s + v * target[j]!, 0);
    }
    const feat = tf.tensor2d(img);
    const bank = tf.concat([tf.transpose(feat), tf.tensor2d(queue)], 1);
    const out = itcLoss({
      imageFeat: feat,
      textFeat: feat,
      temp,
      imageFeatAll: bank,
      textFeatAll: bank,
      softTargets: { i2t: tf.tensor2d(soft), t2i: tf.tensor2d(soft) },
      alpha,
    });
    expect(out.simI2t.shape).toEqual([2, 4]);
    expect(num(out.lossI2t)).toBeCloseTo(loss / 2, 5);
    expect(num(out.loss)).toBeCloseTo(loss / 2, 5);
  });

  it('in-batch retrieval accuracy counts a row as right when its best candidate is any positive', () => {
    const sim = tf.tensor2d([
      [1, 5, 0],
      [0, 1, 3],
      [2, 0, 1],
    ]);
    const out = itcLoss({ imageFeat: tf.eye(3), textFeat: tf.eye(3), temp: 1, imageIds: [4, 4, 6] });
    // Row 0's best is column 1, a caption of the same image; row 1's best is column 2 (wrong); row 2's is column 0 (wrong).
    expect(itcAccuracy(sim, out.targets)).toBeCloseTo(1 / 3, 6);
  });

  it('temperature starts at 0.07 and clamps to [0.001, 0.5] in place', () => {
    const temp = tf.variable(initTemperature());
    expect(temp.dataSync()[0]).toBeCloseTo(0.07, 7);
    temp.assign(tf.scalar(1e-5));
    clampTemperature(temp);
    expect(temp.dataSync()[0]).toBeCloseTo(0.001, 7);
    temp.assign(tf.scalar(3));
    clampTemperature(temp);
    expect(temp.dataSync()[0]).toBeCloseTo(0.5, 7);
    temp.dispose();
  });

  it('gradients match finite differences (features and temperature)', () => {
    const txt = tf.tensor2d([
      [0.3, -0.2, 0.5],
      [0.1, 0.4, -0.3],
      [-0.5, 0.2, 0.1],
    ]);
    const img0 = [0.2, 0.1, -0.4, 0.5, -0.3, 0.2, 0.1, 0.6, 0.3];
    checkGradient((x) => itcLoss({ imageFeat: x, textFeat: txt, temp: 0.3, imageIds: [1, 1, 2] }).loss, img0, [3, 3]);
    checkGradient((t) => itcLoss({ imageFeat: tf.tensor2d(img0, [3, 3]), textFeat: txt, temp: tf.reshape(t, []) }).loss, [0.3], [1], 1e-3);
  });
});

describe('ITM, MLM, MIM losses', () => {
  it('ITM: cross-entropy of the binary head by hand, and accuracy', () => {
    const rows = [
      [0.1, 2],
      [1.5, -0.5],
      [0.3, 0.6],
    ];
    const labels = new Int32Array([1, 0, 0]);
    const { loss, accuracy } = itmLoss(tf.tensor2d(rows), labels);
    expect(num(loss)).toBeCloseTo((nll(rows[0]!, 1) + nll(rows[1]!, 0) + nll(rows[2]!, 0)) / 3, 6);
    expect(accuracy).toBeCloseTo(2 / 3, 10);
  });

  it('MLM: only labelled positions count; -100 positions have no effect', () => {
    const logits = tf.tensor3d([
      [
        [1, 0, 0, 2],
        [0.5, 0.5, 3, 0],
      ],
      [
        [9, 9, 9, -9],
        [0, 1, 0, 0],
      ],
    ]);
    const labels = [3, IGNORE_INDEX, IGNORE_INDEX, 1];
    const expected = (nll([1, 0, 0, 2], 3) + nll([0, 1, 0, 0], 1)) / 2;
    expect(num(mlmLoss(logits, labels))).toBeCloseTo(expected, 6);
    expect(num(mlmLoss(logits, tf.tensor2d([3, IGNORE_INDEX, IGNORE_INDEX, 1], [2, 2], 'int32')))).toBeCloseTo(expected, 6);
  });

  it('MIM: labels keep the visual token only where masked; loss over those', () => {
    const labels = mimLabels(tf.tensor2d([[2, 0, 1]], [1, 3], 'int32'), [1, 0, 1]);
    expect([...labels]).toEqual([2, IGNORE_INDEX, 1]);
    const rows = [
      [0, 1, 2],
      [5, 5, 5],
      [1, 1, 0],
    ];
    expect(num(mimLoss(tf.tensor3d([rows]), labels))).toBeCloseTo((nll(rows[0]!, 2) + nll(rows[2]!, 1)) / 2, 6);
  });
});

describe('LM', () => {
  it('label smoothing matches the closed form (1−ε)·nll + ε·mean(−log p)', () => {
    const eps = 0.1;
    const rowA = [2, 0, -1, 0.5];
    const rowB = [0, 0, 0, 0];
    // [B=1, T=3]: position 0 predicts label 1 (id 2), position 1 predicts label 2 (id 0); position 2 predicts nothing.
    const logits = tf.tensor3d([[rowA, rowB, [9, 9, 9, 9]]]);
    const smooth = (row: number[], y: number) => (1 - eps) * nll(row, y) + (eps * logSoftmax(row).reduce((s, v) => s - v, 0)) / row.length;
    const expected = (smooth(rowA, 2) + smooth(rowB, 0)) / 2;
    expect(num(lmLoss(logits, [5, 2, 0], { labelSmoothing: eps }))).toBeCloseTo(expected, 6);
    // Uniform logits: log V whatever ε is.
    expect(smooth(rowB, 0)).toBeCloseTo(Math.log(4), 12);
    expect(num(lmLoss(tf.zeros([2, 3, 4]), [0, 1, 2, 0, 3, 3]))).toBeCloseTo(Math.log(4), 6);
  });

  it('ignores prompt and padding positions; per-sequence sums', () => {
    const labels = lmLabels([101, 7, 8, 9, 0, 101, 5, 0, 0, 0], [2, 5], { padTokenId: 0, promptLength: 2 });
    expect([...labels]).toEqual([-100, -100, 8, 9, -100, -100, -100, -100, -100, -100]);
    const logitsData = Array.from({ length: 2 * 5 * 10 }, (_, i) => Math.sin(i * 1.7));
    const logits = tf.tensor3d(logitsData, [2, 5, 10]);
    const row = (b: number, t: number) => logitsData.slice((b * 5 + t) * 10, (b * 5 + t + 1) * 10);
    const plain = (nll(row(0, 1), 8) + nll(row(0, 2), 9)) / 2;
    expect(num(lmLoss(logits, labels, { labelSmoothing: 0 }))).toBeCloseTo(plain, 5);
    const perSeq = lmLoss(logits, labels, { labelSmoothing: 0, reduction: 'sequence' }).dataSync();
    expect(perSeq[0]).toBeCloseTo(2 * plain, 5);
    expect(perSeq[1]).toBe(0);
  });

  it('gradient wrt logits matches finite differences (with smoothing)', () => {
    const x0 = Array.from({ length: 2 * 3 * 4 }, (_, i) => Math.cos(i * 0.9));
    checkGradient((x) => lmLoss(x, [1, 2, 3, 0, IGNORE_INDEX, 1], { labelSmoothing: 0.1 }) as tf.Scalar, x0, [2, 3, 4]);
  });
});

describe('combineLosses', () => {
  it('weights enabled objectives, drops disabled or zero-weight ones, and refuses an empty set', () => {
    const out = combineLosses(
      { itc: tf.scalar(2), itm: tf.scalar(3), mlm: tf.scalar(5), lm: undefined },
      { itm: { weight: 0.5 }, mlm: { enabled: false } },
      { acc: 1 },
    );
    expect(num(out.loss)).toBeCloseTo(2 + 1.5, 6);
    expect(Object.keys(out.losses)).toEqual(['itc', 'itm']);
    expect(num(out.losses.itm!)).toBe(3);
    expect(out.metrics).toEqual({ acc: 1 });
    try {
      combineLosses({ itc: tf.scalar(1) }, { itc: { weight: 0 } });
      expect.unreachable();
    } catch (err) {
      expect(isVlError(err, 'CONFIG_INVALID')).toBe(true);
    }
  });
});

describe('no tensor leaks', () => {
  it('losses leave only their outputs behind', () => {
    const run = () => {
      const feat = tf.tensor2d([
        [1, 0],
        [0, 1],
        [0.6, 0.8],
      ]);
      const itc = itcLoss({ imageFeat: feat, textFeat: feat, temp: 0.1, imageIds: [1, 2, 2] });
      const ones3 = tf.ones([2, 3, 5]);
      const ones2 = tf.ones([3, 5]);
      const head = tf.ones([3, 2]);
      const lm = lmLoss(ones3, [1, 2, 3, 0, IGNORE_INDEX, 4]);
      const mlm = mlmLoss(ones3, [1, IGNORE_INDEX, 3, 0, IGNORE_INDEX, 4]);
      const ce = crossEntropy(ones2, [1, IGNORE_INDEX, 2], { reduction: 'none', labelSmoothing: 0.1 });
      const itm = itmLoss(head, new Int32Array([1, 0, 0]));
      const outs = [
        feat,
        ones3,
        ones2,
        head,
        itc.loss,
        itc.lossI2t,
        itc.lossT2i,
        itc.simI2t,
        itc.simT2i,
        itc.targets,
        lm,
        mlm,
        ce,
        itm.loss,
      ];
      tf.dispose(outs);
    };
    run();
    const before = tf.memory().numTensors;
    run();
    expect(tf.memory().numTensors).toBe(before);
  });
});
