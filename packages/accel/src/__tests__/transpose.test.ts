// The native Transpose against a hand-written reference on the raw 32-bit patterns (bit equality:
// a transpose only moves elements) and tfjs's cpu backend: random shapes and permutations of rank
// 1–6 with size-1 dims, float32 and int32, -0 / ±Infinity / NaN, empty tensors, sizes that reach the
// thread pool in both of the kernel's cases, the shapes CapFilt runs; that the native path (not the
// fallback) ran, that bool and very high ranks fall back; leak checks; the binding's checks.
// Without the binary, Transpose stays the kernel registered before.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAccel } from '../binding.js';
import { accelStatus, registerAccelKernels, unregisterAccelKernels } from '../index.js';
import { simplifyTranspose, transposeKernel } from '../transpose.js';

const status = accelStatus();
let stock: tf.KernelConfig | undefined;

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
  stock = tf.getKernel('Transpose', 'wasm');
  registerAccelKernels(tf);
});

afterAll(() => {
  unregisterAccelKernels(tf);
});

/** A small LCG, so cases are the same on every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

/** Output dim i = input dim perm[i], on raw 32-bit words: an odometer over the output's index. */
function referenceTranspose(x: Uint32Array, shape: number[], perm: number[]): Uint32Array {
  const rank = shape.length;
  const inStride = new Array<number>(rank).fill(1);
  for (let d = rank - 2; d >= 0; d--) inStride[d] = (inStride[d + 1] as number) * (shape[d + 1] as number);
  const outShape = perm.map((d) => shape[d] as number);
  const step = perm.map((d) => inStride[d] as number); // input stride of each output dim
  const out = new Uint32Array(x.length);
  const index = new Array<number>(rank).fill(0);
  let src = 0;
  for (let o = 0; o < out.length; o++) {
    out[o] = x[src] as number;
    for (let i = rank - 1; i >= 0; i--) {
      index[i] = (index[i] as number) + 1;
      src += step[i] as number;
      if ((index[i] as number) < (outShape[i] as number)) break;
      src -= (outShape[i] as number) * (step[i] as number);
      index[i] = 0;
    }
  }
  return out;
}

/** Values with the special cases a copy must keep bit for bit. */
function values(size: number, dtype: 'float32' | 'int32', seed: number): Float32Array | Int32Array {
  const next = rng(seed);
  if (dtype === 'int32') return Int32Array.from({ length: size }, () => Math.floor((next() - 0.5) * 2 ** 32));
  const special = [-0, Infinity, -Infinity, NaN, 1e-40];
  return Float32Array.from({ length: size }, (_, i) => (i % 17 === 5 ? (special[i % 5] as number) : next() * 200 - 100));
}

const bits = (a: Float32Array | Int32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length);

/** Bit equality, reporting the first differing element (toEqual on 100k-element arrays takes seconds). */
function expectBits(actual: Uint32Array, expected: Uint32Array, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  const i = actual.findIndex((v, j) => v !== expected[j]);
  expect(i === -1 ? null : { index: i, actual: actual[i], expected: expected[i] }, what).toBeNull();
}

/**
 * tf.transpose on wasm (the registered kernel) and on cpu, both compared with the reference; no tensor
 * left behind. Above 2^18 elements cpu is skipped (its per-element index arithmetic takes seconds): the
 * reference is checked against it on every smaller case.
 */
async function check(shape: number[], perm: number[], dtype: 'float32' | 'int32', seed = 1): Promise<void> {
  const size = shape.reduce((a, b) => a * b, 1);
  const data = values(size, dtype, seed);
  const want = referenceTranspose(bits(data), shape, perm);
  const what = `${dtype} [${shape.join(',')}] perm [${perm.join(',')}]`;
  const outShape = perm.map((d) => shape[d] as number);
  // Nothing but plain values leaves the tidy: it walks a returned typed array element by element.
  const run = () => {
    let result: { shape: number[]; data: Float32Array | Int32Array } | undefined;
    tf.tidy(() => {
      const y = tf.transpose(tf.tensor(data, shape, dtype), perm);
      result = { shape: y.shape, data: y.dataSync() as Float32Array | Int32Array };
    });
    return result as { shape: number[]; data: Float32Array | Int32Array };
  };
  await tf.setBackend('cpu');
  const cpu = size <= 2 ** 18 ? run() : null;
  await tf.setBackend('wasm');
  const before = tf.memory().numTensors;
  const got = run();
  expect(tf.memory().numTensors, `${what}: tensor leak`).toBe(before);
  expect(got.shape, what).toEqual(outShape);
  expectBits(bits(got.data), want, `${what}: wasm vs reference`);
  if (cpu) {
    expect(cpu.shape, what).toEqual(outShape);
    expectBits(bits(cpu.data), want, `${what}: cpu vs reference`);
  }
}

function shuffled(n: number, next: () => number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [p[i], p[j]] = [p[j] as number, p[i] as number];
  }
  return p;
}

describe('simplifyTranspose', () => {
  it('drops size-1 dims and merges dims that stay adjacent (hand-worked cases)', () => {
    // The ViT patch embedding: nothing stays adjacent, nothing merges.
    expect(simplifyTranspose([8, 3, 24, 16, 24, 16], [0, 2, 4, 1, 3, 5])).toEqual({
      shape: [8, 3, 24, 16, 24, 16],
      perm: [0, 2, 4, 1, 3, 5],
    });
    // Head split [B, T, H, dh] → [B, H, T, dh].
    expect(simplifyTranspose([8, 30, 12, 64], [0, 2, 1, 3])).toEqual({ shape: [8, 30, 12, 64], perm: [0, 2, 1, 3] });
    // (0,1) and (2,3) move together: a 2-D transpose of [2·3, 4·5].
    expect(simplifyTranspose([2, 3, 4, 5], [2, 3, 0, 1])).toEqual({ shape: [6, 20], perm: [1, 0] });
    // One-token decoding: [B, 1, H, dh] → [B, H, 1, dh] moves nothing.
    expect(simplifyTranspose([8, 1, 12, 64], [0, 2, 1, 3])).toEqual({ shape: [6144], perm: [0] });
    // Size-1 dims dropped, then [2, 5·7] → [5·7, 2].
    expect(simplifyTranspose([1, 2, 1, 5, 7], [3, 4, 0, 2, 1])).toEqual({ shape: [2, 35], perm: [1, 0] });
    expect(simplifyTranspose([1, 1], [1, 0])).toEqual({ shape: [], perm: [] });
    expect(simplifyTranspose([], [])).toEqual({ shape: [], perm: [] });
    expect(simplifyTranspose([4, 0, 3], [2, 0, 1])).toEqual({ shape: [0, 3], perm: [1, 0] });
  });
});

describe('native Transpose', () => {
  it('replaces the registered Transpose when the binary loads, and leaves it alone otherwise', () => {
    const now = tf.getKernel('Transpose', 'wasm');
    if (status.available) expect(now?.kernelFunc).not.toBe(stock?.kernelFunc);
    else expect(now?.kernelFunc).toBe(stock?.kernelFunc);
  });

  it('matches the reference bit for bit: 160 random shapes and perms of rank 1–6 with size-1 dims, float32 and int32', async () => {
    const next = rng(7);
    for (let c = 0; c < 160; c++) {
      const rank = 1 + (c % 6);
      const shape = Array.from({ length: rank }, () => (next() < 0.25 ? 1 : 1 + Math.floor(next() * (rank <= 3 ? 19 : 6))));
      await check(shape, shuffled(rank, next), c % 3 === 2 ? 'int32' : 'float32', c + 1);
    }
  });

  it('matches on sizes that run on the thread pool (≥ 2^20 elements; both kernel cases) and on tile edges', async () => {
    await check([3, 517, 683], [0, 2, 1], 'float32'); // tiles, edges not multiples of 8 or 64
    await check([1031, 1029], [1, 0], 'int32'); // one 2-D transpose split into tiles
    await check([530001, 2], [1, 0], 'float32'); // long, narrow
    await check([3, 3, 16, 16, 32, 16], [0, 2, 4, 1, 3, 5], 'float32'); // contiguous runs of 16, rank 6
    await check([5, 37, 9, 41], [3, 1, 0, 2], 'float32'); // tiles with outer dims, one thread
    await check([6, 97, 12, 13], [0, 2, 1, 3], 'int32'); // head split, runs of 13, one thread
  });

  it('handles the shapes CapFilt runs, and empty tensors', async () => {
    await check([2, 3, 4, 16, 4, 16], [0, 2, 4, 1, 3, 5], 'float32'); // patch embedding, small image
    await check([8, 30, 12, 64], [0, 2, 1, 3], 'float32'); // head split
    await check([8, 12, 30, 64], [0, 2, 1, 3], 'float32'); // head merge
    await check([8, 1, 12, 64], [0, 2, 1, 3], 'float32'); // one-token decoding: shared, not copied
    await check([0, 3], [1, 0], 'float32');
    await check([2, 0, 3], [2, 1, 0], 'int32');
    await check([4, 0, 1, 5], [3, 0, 2, 1], 'float32');
  });

  it('runs the native kernel for float32 and int32 and the previous kernel for bool and ranks above 8', async () => {
    if (!status.available) return;
    await tf.setBackend('wasm');
    const binding = loadAccel() as { binding: { transpose(heap: ArrayBuffer, params: Float64Array): void } };
    const registered = tf.getKernel('Transpose', 'wasm') as tf.KernelConfig;
    const counts = { native: 0, previous: 0 };
    const previous: tf.KernelConfig = {
      ...(stock as tf.KernelConfig),
      kernelFunc: (args) => {
        counts.previous++;
        return (stock as tf.KernelConfig).kernelFunc(args);
      },
    };
    const native = {
      transpose: (heap: ArrayBuffer, params: Float64Array) => {
        counts.native++;
        binding.binding.transpose(heap, params);
      },
    };
    tf.unregisterKernel('Transpose', 'wasm');
    tf.registerKernel({ kernelName: 'Transpose', backendName: 'wasm', kernelFunc: transposeKernel(native, previous) });
    try {
      const before = tf.memory().numTensors;
      tf.tidy(() => {
        tf.transpose(tf.ones([2, 3, 4]), [2, 0, 1]).dataSync();
        tf.transpose(tf.ones([2, 3], 'int32')).dataSync();
        tf.transpose(tf.ones([2, 1, 3]), [1, 0, 2]).dataSync(); // moves nothing: no call at all
      });
      expect(counts).toEqual({ native: 2, previous: 0 });
      const mask = tf.tensor([true, false, false, true, true, false], [2, 3], 'bool');
      const t = tf.transpose(mask);
      expect(Array.from(t.dataSync())).toEqual([1, 1, 0, 1, 0, 0]);
      tf.dispose([mask, t]);
      expect(counts).toEqual({ native: 2, previous: 1 });
      // Rank 9 with nothing to merge (alternating dims) is past the native kernel's limit.
      const shape = [2, 2, 2, 2, 2, 2, 2, 2, 2];
      const perm = [8, 7, 6, 5, 4, 3, 2, 1, 0];
      const data = values(512, 'float32', 3) as Float32Array;
      const input = tf.tensor(data, shape);
      const transposed = tf.transpose(input, perm);
      const y = transposed.dataSync() as Float32Array;
      tf.dispose([input, transposed]);
      expectBits(bits(y), referenceTranspose(bits(data), shape, perm), 'rank 9');
      expect(counts).toEqual({ native: 2, previous: 2 });
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      tf.unregisterKernel('Transpose', 'wasm');
      tf.registerKernel(registered);
    }
  });

  it('the binding refuses bad ranks, non-permutations and buffers outside the heap', () => {
    const loaded = loadAccel();
    if (!loaded.available) return;
    const heap = new ArrayBuffer(1024);
    // [2, 3] at byte 0 → [3, 2] at byte 64.
    const p = new Float64Array(19);
    p.set([2, 0, 64]);
    p.set([2, 3], 3);
    p.set([1, 0], 11);
    new Float32Array(heap, 0, 6).set([1, 2, 3, 4, 5, 6]);
    loaded.binding.transpose(heap, p);
    expect(Array.from(new Float32Array(heap, 64, 6))).toEqual([1, 4, 2, 5, 3, 6]);
    const with_ = (i: number, v: number) => Float64Array.from(p, (x, j) => (j === i ? v : x));
    expect(() => loaded.binding.transpose(heap, with_(0, 9))).toThrow(/rank must be 1\.\.8/);
    expect(() => loaded.binding.transpose(heap, with_(12, 1))).toThrow(/permutation/);
    expect(() => loaded.binding.transpose(heap, with_(12, 2))).toThrow(/permutation/);
    expect(() => loaded.binding.transpose(heap, with_(2, 1024 - 16))).toThrow(/transpose y/);
    expect(() => loaded.binding.transpose(heap, with_(1, 2))).toThrow(/transpose x/); // misaligned
    expect(() => loaded.binding.transpose(heap, with_(3, 1000))).toThrow(RangeError);
    expect(() => loaded.binding.transpose(heap, new Float64Array(18))).toThrow(/expected 19/);
  });
});
