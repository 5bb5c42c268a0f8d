// MomentumContrastive and drawItmPairs against hand-computed values: EMA, queue wrap-around with
// image ids, soft ITC targets, accuracy, negatives that are never positives, and no tensor leaks.
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { isVlError } from '../../errors.js';
import { firstToken } from '../../encoders/heads.js';
import { Linear } from '../../nn/layers.js';
import { Module } from '../../nn/module.js';
import { itcLoss } from '../../objectives/itc.js';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { drawItmPairs, MomentumContrastive, NO_IMAGE_ID } from '../momentum-contrastive.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

/** A model with one online projection and its twin, registered under reference-style names. */
class Toy extends Module {
  readonly proj: Linear;
  readonly proj_m: Linear;
  readonly block: MomentumContrastive;
  constructor(queue?: { size: number; dim: number; imageIds?: boolean }) {
    super();
    const rng = new Rng(3);
    this.proj = this.registerModule('proj', new Linear(2, 2, rng));
    this.proj_m = this.registerModule('proj_m', new Linear(2, 2, rng));
    this.block = new MomentumContrastive({ pairs: [[this.proj, this.proj_m]], momentum: 0.9, queue: queue && { ...queue, rng } });
    if (this.block.queue) this.registerModule('queue', this.block.queue);
  }
}

const host = (t: tf.Tensor): number[] => Array.from(t.dataSync());

/** Row-wise softmax on the host. */
function softmax(row: number[]): number[] {
  const m = Math.max(...row);
  const e = row.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

describe('MomentumContrastive', () => {
  it('copies the online weights into the frozen twin, then steps twin ← 0.9·twin + 0.1·online', () => {
    const toy = new Toy();
    expect(host(toy.proj_m.weight)).toEqual(host(toy.proj.weight));
    expect(toy.proj_m.weight.trainable).toBe(false);
    const twin = host(toy.proj_m.weight);
    toy.proj.weight.assign(
      tf.tensor2d([
        [1, 2],
        [3, 4],
      ]),
    );
    toy.block.update();
    const want = twin.map((w, i) => 0.9 * w + 0.1 * [1, 2, 3, 4][i]!);
    host(toy.proj_m.weight).forEach((w, i) => expect(w).toBeCloseTo(want[i]!, 6));
    toy.block.copyParams();
    expect(host(toy.proj_m.weight)).toEqual([1, 2, 3, 4]);
    toy.dispose();
  });

  it('keeps the reference buffer names, and the queue wraps around with its image ids', () => {
    const toy = new Toy({ size: 5, dim: 2, imageIds: true });
    expect([...toy.stateDict().keys()].filter((k) => k.startsWith('queue.')).sort()).toEqual([
      'queue.idx_queue',
      'queue.image_queue',
      'queue.queue_ptr',
      'queue.text_queue',
    ]);
    expect(host(toy.block.queue!.get('idx_queue'))).toEqual([-100, -100, -100, -100, -100]);
    const feats = (base: number) =>
      tf.tensor2d([
        [base, base + 0.5],
        [base + 1, base + 1.5],
        [base + 2, base + 2.5],
      ]);
    const [i1, t1, i2, t2] = [feats(10), feats(20), feats(30), feats(40)];
    toy.block.enqueue(i1, t1, [7, 8, 9]);
    expect(toy.block.queue!.pointer).toBe(3);
    toy.block.enqueue(i2, t2); // no ids: NO_IMAGE_ID
    expect(toy.block.queue!.pointer).toBe(1);
    // Columns: slot 0 ← 3rd item of batch 2 (wrapped), slots 1-2 ← batch 1 items 1-2, slots 3-4 ← batch 2 items 0-1.
    expect(host(toy.block.queue!.get('image_queue'))).toEqual([32, 11, 12, 30, 31, 32.5, 11.5, 12.5, 30.5, 31.5]);
    expect(host(toy.block.queue!.get('text_queue')).slice(0, 5)).toEqual([42, 21, 22, 40, 41]);
    expect(host(toy.block.queue!.get('idx_queue'))).toEqual([NO_IMAGE_ID, 8, 9, NO_IMAGE_ID, NO_IMAGE_ID]);
    tf.dispose([i1, t1, i2, t2]);
    toy.dispose();
  });

  it('ITC: candidates are the twins then the queue, and alpha mixes in softmax(twin similarities / temp)', () => {
    const toy = new Toy({ size: 2, dim: 2 });
    const q = toy.block.queue!;
    const [qi, qt] = [
      tf.tensor2d([
        [0.6, 0.8],
        [0, 1],
      ]),
      tf.tensor2d([
        [0, 1],
        [1, 0],
      ]),
    ];
    q.enqueue({ image_queue: qi, text_queue: qt });
    const imageFeat = tf.tensor2d([
      [1, 0],
      [0, 1],
    ]);
    const textFeat = tf.tensor2d([
      [0.8, 0.6],
      [0.6, 0.8],
    ]);
    const imageFeatM = tf.tensor2d([
      [1, 0],
      [0.6, 0.8],
    ]);
    const textFeatM = tf.tensor2d([
      [0.8, 0.6],
      [0, 1],
    ]);
    const temp = 0.5;
    const alpha = 0.4;
    const out = toy.block.itc({ imageFeat, textFeat, imageFeatM, textFeatM, temp, alpha });
    // Text candidates (columns): textFeatM rows, then the queued texts (0,1) and (1,0).
    const textCols = [
      [0.8, 0.6],
      [0, 1],
      [0, 1],
      [1, 0],
    ];
    const imageCols = [
      [1, 0],
      [0.6, 0.8],
      [0.6, 0.8],
      [0, 1],
    ];
    const dot = (a: number[], b: number[]) => a[0]! * b[0]! + a[1]! * b[1]!;
    const rows = (feat: number[][], cols: number[][]) => feat.map((f) => cols.map((c) => dot(f, c) / temp));
    const simI2t = rows(
      [
        [1, 0],
        [0, 1],
      ],
      textCols,
    );
    const simT2i = rows(
      [
        [0.8, 0.6],
        [0.6, 0.8],
      ],
      imageCols,
    );
    host(out.simI2t).forEach((x, i) => expect(x).toBeCloseTo(simI2t.flat()[i]!, 5));
    const softI2t = rows(
      [
        [1, 0],
        [0.6, 0.8],
      ],
      textCols,
    ).map(softmax);
    const softT2i = rows(
      [
        [0.8, 0.6],
        [0, 1],
      ],
      imageCols,
    ).map(softmax);
    const hard = [
      [1, 0, 0, 0],
      [0, 1, 0, 0],
    ];
    const loss = (sim: number[][], soft: number[][]) =>
      sim
        .map((row, r) => {
          const logp = softmax(row).map(Math.log);
          return -row.reduce((acc, _, j) => acc + logp[j]! * (alpha * soft[r]![j]! + (1 - alpha) * hard[r]![j]!), 0);
        })
        .reduce((a, b) => a + b, 0) / sim.length;
    const want = (loss(simI2t, softI2t) + loss(simT2i, softT2i)) / 2;
    expect(out.loss.dataSync()[0]).toBeCloseTo(want, 5);
    const best = simI2t.map((row) => row.indexOf(Math.max(...row)));
    expect(out.accuracy).toBe(best.filter((j, r) => j === r).length / 2);
    // alpha 0 is plain ITC with hard targets over the same candidates.
    const plain = toy.block.itc({ imageFeat, textFeat, imageFeatM, textFeatM, temp, alpha: 0 });
    const cand = (m: tf.Tensor, k: 'image' | 'text') => toy.block.candidates(m, k);
    const [ia, ta] = [cand(imageFeatM, 'image'), cand(textFeatM, 'text')];
    const ref = itcLoss({ imageFeat, textFeat, temp, imageFeatAll: ia, textFeatAll: ta });
    expect(plain.loss.dataSync()[0]).toBeCloseTo(ref.loss.dataSync()[0]!, 6);
    // Without the queue only the B twin columns are candidates.
    const noQueue = toy.block.itc({ imageFeat, textFeat, imageFeatM, textFeatM, temp, alpha, useQueue: false });
    expect(noQueue.simI2t.shape).toEqual([2, 2]);
    const outputs = [out, plain, ref, noQueue].flatMap((o) => [o.loss, o.lossI2t, o.lossT2i, o.simI2t, o.simT2i, o.targets]);
    tf.dispose([qi, qt, imageFeat, textFeat, imageFeatM, textFeatM, ia, ta, ...outputs]);
    toy.dispose();
  });

  it('with an id queue, queued items of a batch image are ITC positives', () => {
    const toy = new Toy({ size: 2, dim: 2, imageIds: true });
    const f = tf.tensor2d([
      [1, 0],
      [0, 1],
    ]);
    toy.block.enqueue(f, f, [5, 6]);
    const out = toy.block.itc({ imageFeat: f, textFeat: f, imageFeatM: f, textFeatM: f, temp: 1, alpha: 0, imageIds: [6, 7] });
    // Columns: batch ids 6, 7, then the queue's 5, 6 → row 0 (id 6) has positives at columns 0 and 3.
    expect(host(out.targets)).toEqual([0.5, 0, 0, 0.5, 0, 1, 0, 0]);
    tf.dispose([f, out.loss, out.lossI2t, out.lossT2i, out.simI2t, out.simT2i, out.targets]);
    toy.dispose();
  });

  it('leaks no tensors across itc, enqueue, update and pair draws', () => {
    const toy = new Toy({ size: 4, dim: 2, imageIds: true });
    const step = () => {
      const feats = tf.tidy(() =>
        tf.div(
          tf.tensor2d([
            [1, 2],
            [3, 1],
            [2, 2],
          ]),
          3,
        ),
      );
      const out = toy.block.itc({
        imageFeat: feats,
        textFeat: feats,
        imageFeatM: feats,
        textFeatM: feats,
        temp: 0.1,
        alpha: 0.4,
        imageIds: [0, 1, 2],
      });
      drawItmPairs({ simI2t: out.simI2t, simT2i: out.simT2i, batchSize: 3, rng: new Rng(1), strategy: 'hard' });
      drawItmPairs({ batchSize: 3, rng: new Rng(1), strategy: 'random' });
      toy.block.enqueue(feats, feats, [0, 1, 2]);
      toy.block.update();
      tf.dispose([feats, out.loss, out.lossI2t, out.lossT2i, out.simI2t, out.simT2i, out.targets]);
    };
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) step();
    expect(tf.memory().numTensors).toBe(before);
    toy.dispose();
  });
});

describe('drawItmPairs', () => {
  it('never draws a positive (same image id), hard or random, and lays out positives then negatives', () => {
    const ids = [0, 0, 1, 2, 2, 3];
    const b = ids.length;
    const sim = tf.tidy(() => tf.mul(tf.randomNormal([b, b + 2], 0, 1, 'float32', 7), 5)); // queue columns are ignored
    for (const strategy of ['hard', 'random'] as const) {
      for (let seed = 0; seed < 30; seed++) {
        const { negatives, pairs } = drawItmPairs({ simI2t: sim, simT2i: sim, batchSize: b, rng: new Rng(seed), imageIds: ids, strategy });
        for (let k = 0; k < b; k++) {
          expect(ids[negatives.imageForText[k]!]).not.toBe(ids[k]);
          expect(ids[negatives.textForImage[k]!]).not.toBe(ids[k]);
        }
        expect(Array.from(pairs.labels)).toEqual([...Array(b).fill(1), ...Array(2 * b).fill(0)]);
        expect(Array.from(pairs.imageIndex.slice(b, 2 * b))).toEqual(Array.from(negatives.imageForText));
        expect(Array.from(pairs.textIndex.slice(2 * b))).toEqual(Array.from(negatives.textForImage));
      }
    }
    sim.dispose();
  });

  it('hard negatives follow the similarities: a dominant candidate is drawn nearly always', () => {
    // Row t prefers column (t + 1) mod 3 by a margin of 20 (e^-20 ≈ 2e-9 for the other).
    const sim = tf.tensor2d([
      [0, 20, 0],
      [0, 0, 20],
      [20, 0, 0],
    ]);
    const { negatives } = drawItmPairs({ simI2t: sim, simT2i: sim, batchSize: 3, rng: new Rng(0), strategy: 'hard' });
    expect(Array.from(negatives.imageForText)).toEqual([1, 2, 0]);
    expect(Array.from(negatives.textForImage)).toEqual([1, 2, 0]);
    sim.dispose();
  });

  it('replays recorded negatives, and refuses hard negatives without similarities', () => {
    const replay = { imageForText: Int32Array.from([1, 0]), textForImage: Int32Array.from([1, 0]) };
    expect(drawItmPairs({ batchSize: 2, rng: new Rng(0), strategy: 'hard', replay }).negatives).toBe(replay);
    try {
      drawItmPairs({ batchSize: 2, rng: new Rng(0), strategy: 'hard' });
      expect.unreachable();
    } catch (e) {
      expect(isVlError(e, 'INVALID_ARGUMENT')).toBe(true);
    }
  });
});

describe('firstToken', () => {
  it('takes row 0 of every sequence', () => {
    const h = tf.tensor3d([
      [
        [1, 2],
        [3, 4],
      ],
      [
        [5, 6],
        [7, 8],
      ],
    ]);
    const cls = firstToken(h);
    expect(cls.shape).toEqual([2, 2]);
    expect(host(cls)).toEqual([1, 2, 5, 6]);
    tf.dispose([h, cls]);
  });
});
