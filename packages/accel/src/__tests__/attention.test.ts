// VlAttention against the composed tf ops on tfjs's cpu backend: packed [B, T, 3D] qkv and separate
// q/k/v views, head-split (cached) keys, key/value rows shared by several query rows, every mask
// broadcast form and a per-head bias; and the binding's bounds checks. Without the binary, the
// kernel is not registered (and core keeps its composed path).
import * as tf from '@tensorflow/tfjs';
import { type HostArray, seeded } from '@vl/testing';
import { describe, expect, it } from 'vitest';
import { loadAccel } from '../binding.js';
import { ACCEL_KERNELS, accelStatus } from '../index.js';
import type { AttentionView } from '../attention.js';
import { expectClose, useAccelKernelsOnWasm } from './helpers.js';

const status = accelStatus();

useAccelKernelsOnWasm();

const t = (h: HostArray) => tf.tensor(h.values, h.shape);

/** The composed reference on cpu: split heads, scale·QKᵀ + mask, softmax, ·V, merge heads. */
function reference(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, heads: number, mask: tf.Tensor | null, rows: number[] | null): tf.Tensor {
  return tf.tidy(() => {
    const split = (x: tf.Tensor) => {
      const [b, time, d] = x.shape as [number, number, number];
      return tf.transpose(tf.reshape(x, [b, time, heads, d / heads]), [0, 2, 1, 3]);
    };
    let kh = split(k);
    let vh = split(v);
    if (rows) {
      kh = tf.gather(kh, rows);
      vh = tf.gather(vh, rows);
    }
    const qh = split(q);
    const dh = qh.shape[3] as number;
    let s = tf.mul(tf.matMul(qh, kh, false, true), 1 / Math.sqrt(dh));
    if (mask) s = tf.add(s, mask);
    const o = tf.matMul(tf.softmax(s), vh);
    const [b, , tq] = o.shape as [number, number, number, number];
    return tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [b, tq, heads * dh]);
  });
}

interface Case {
  b: number;
  s: number;
  tq: number;
  tk: number;
  heads: number;
  dh: number;
  rows: number[] | null;
  mask: number[] | null;
  /** The mask has one row per key/value batch (per image), read through kvRows. */
  maskByKv?: boolean;
}

async function check(c: Case, packedQkv: boolean, splitKv: boolean) {
  const d = c.heads * c.dh;
  const qh = seeded([c.b, c.tq, d], 1);
  const kh = seeded([c.s, c.tk, d], 2);
  const vh = seeded([c.s, c.tk, d], 3);
  const mh = c.mask ? seeded(c.mask, 4, -3, 1) : null;
  await tf.setBackend('cpu');
  const refMask = mh ? (c.maskByKv && c.rows ? tf.gather(t(mh), c.rows) : t(mh)) : null;
  const want = reference(t(qh), t(kh), t(vh), c.heads, refMask, c.rows);
  const wantValues = Array.from(await want.data());
  want.dispose();
  await tf.setBackend('wasm');
  const before = tf.memory().numTensors;
  const got = tf.tidy(() => {
    const q = t(qh);
    const k = t(kh);
    const v = t(vh);
    const view = (x: tf.Tensor, offset: number, width: number): AttentionView => [offset, (x.shape[1] as number) * width, c.dh, width];
    let inputs: Record<string, tf.Tensor>;
    let views: [AttentionView, AttentionView, AttentionView];
    if (packedQkv) {
      // One [B, T, 3D] tensor, as a fused qkv projection leaves it (self-attention: s = b, tq = tk).
      const qkv = tf.concat([q, k, v], 2);
      inputs = { q: qkv, k: qkv, v: qkv };
      views = [view(qkv, 0, 3 * d), view(qkv, d, 3 * d), view(qkv, 2 * d, 3 * d)];
    } else if (splitKv) {
      const split = (x: tf.Tensor) => tf.transpose(tf.reshape(x, [c.s, c.tk, c.heads, c.dh]), [0, 2, 1, 3]);
      const ks = split(k);
      const vs = split(v);
      const sv: AttentionView = [0, c.heads * c.tk * c.dh, c.tk * c.dh, c.dh];
      inputs = { q, k: ks, v: vs };
      views = [view(q, 0, d), sv, sv];
    } else {
      inputs = { q, k, v };
      views = [view(q, 0, d), view(k, 0, d), view(v, 0, d)];
    }
    if (mh) inputs.mask = t(mh);
    if (c.rows) inputs.kvRows = tf.tensor1d(c.rows, 'int32');
    const attrs = {
      heads: c.heads,
      headDim: c.dh,
      scale: 1 / Math.sqrt(c.dh),
      queryBatch: c.b,
      queryLength: c.tq,
      keyLength: c.tk,
      kvBatch: c.s,
      qView: views[0],
      kView: views[1],
      vView: views[2],
      maskByKvRow: c.maskByKv ?? false,
    };
    return tf.engine().runKernel(ACCEL_KERNELS.attention, inputs as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
  });
  expect(got.shape).toEqual([c.b, c.tq, d]);
  expectClose(Array.from(await got.data()), wantValues, 'attention output', 1e-5);
  got.dispose();
  expect(tf.memory().numTensors).toBe(before);
}

describe('VlAttention', () => {
  it('is registered exactly when the binary is available', () => {
    expect(tf.getKernel(ACCEL_KERNELS.attention, 'wasm') !== undefined).toBe(status.available);
  });

  const self: Case = { b: 3, s: 3, tq: 9, tk: 9, heads: 4, dh: 8, rows: null, mask: null };
  const cases: [string, Case, boolean, boolean][] = [
    ['self-attention from packed qkv', self, true, false],
    ['packed qkv, padding mask [B,1,1,T]', { ...self, mask: [3, 1, 1, 9] }, true, false],
    ['packed qkv, per-head bias [1,H,T,T] (relative positions)', { ...self, mask: [1, 4, 9, 9] }, true, false],
    ['separate q/k/v, full mask [B,H,T,T]', { ...self, mask: [3, 4, 9, 9] }, false, false],
    [
      'cross-attention, rows grouped per image',
      { b: 4, s: 2, tq: 5, tk: 11, heads: 2, dh: 16, rows: [0, 0, 1, 1], mask: [2, 1, 1, 11] },
      false,
      false,
    ],
    [
      'cross-attention, one padding row per image read through the rows',
      { b: 4, s: 2, tq: 5, tk: 11, heads: 2, dh: 16, rows: [0, 0, 1, 1], mask: [2, 1, 1, 11], maskByKv: true },
      false,
      false,
    ],
    [
      'one decoding step on head-split (cached) keys, beams remapped',
      { b: 6, s: 2, tq: 1, tk: 13, heads: 3, dh: 8, rows: [1, 0, 0, 1, 1, 0], mask: null },
      false,
      true,
    ],
    // Head size 64 takes the blocked AVX-512 kernel where the CPU has AVX-512 (6-row blocks, 64-key tiles, then
    // 16-key panels, the last one partial): rows and keys not multiples of either, every view and mask form.
    [
      'head size 64: separate q/k/v, full mask, 13 queries × 150 keys',
      { b: 2, s: 2, tq: 13, tk: 150, heads: 2, dh: 64, rows: null, mask: [2, 2, 13, 150] },
      false,
      false,
    ],
    [
      'head size 64: cross-attention, padding row per image through the rows',
      { b: 4, s: 2, tq: 7, tk: 37, heads: 2, dh: 64, rows: [0, 0, 1, 1], mask: [2, 1, 1, 37], maskByKv: true },
      false,
      false,
    ],
    [
      'head size 64: head-split (cached) keys, 8 queries × 70 keys',
      { b: 2, s: 2, tq: 8, tk: 70, heads: 2, dh: 64, rows: null, mask: null },
      false,
      true,
    ],
    [
      'head size 64: fewer queries than a block (5)',
      { b: 2, s: 2, tq: 5, tk: 20, heads: 1, dh: 64, rows: null, mask: [2, 1, 5, 20] },
      false,
      false,
    ],
    [
      'head size 64: packed qkv, no mask (softmax inside the kernel), 97 tokens',
      { b: 2, s: 2, tq: 97, tk: 97, heads: 3, dh: 64, rows: null, mask: null },
      true,
      false,
    ],
    [
      'a big case that runs on the thread pool',
      { b: 2, s: 2, tq: 97, tk: 97, heads: 12, dh: 64, rows: null, mask: [2, 1, 1, 97] },
      true,
      false,
    ],
  ];
  for (const [name, c, packed, split] of cases) {
    it(name, async () => {
      if (!status.available) {
        expect(tf.getKernel(ACCEL_KERNELS.attention, 'wasm')).toBeUndefined();
        return;
      }
      // the mask of a case with kv rows is per key/value batch: expand it to the query batch
      const mask = c.rows && c.mask && !c.maskByKv ? [c.b, ...c.mask.slice(1)] : c.mask;
      await check({ ...c, mask }, packed, split);
    });
  }

  it('the binding refuses views and row indices outside the heap or the key/value batch', () => {
    const loaded = loadAccel();
    if (!loaded.available) return;
    const heap = new ArrayBuffer(4096);
    // 1 batch, 1 head, 2×2 keys of size 4: q at 0, k at 64, v at 128, out at 192.
    const p = new Float64Array([1, 1, 2, 2, 4, 1, 0, 8, 4, 4, 64, 8, 4, 4, 128, 8, 4, 4, 192, 8, 4, 4, -1, -1, 0, 0, 0, 0, 0.5, 0]);
    loaded.binding.attention(heap, p);
    const bad = Float64Array.from(p);
    bad[18] = 4096 - 8; // output runs past the heap
    expect(() => loaded.binding.attention(heap, bad)).toThrow(RangeError);
    const rows = Float64Array.from(p);
    new Int32Array(heap, 1024, 1)[0] = 3; // row 3 of a 1-batch key/value tensor
    rows[22] = 1024;
    expect(() => loaded.binding.attention(heap, rows)).toThrow(/outside the key\/value batch/);
    expect(() => loaded.binding.attention(heap, new Float64Array(29))).toThrow(/expected 30/);
  });
});
