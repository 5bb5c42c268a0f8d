// reserveWasmHeap: one growth up front, after which that many bytes of tensors fit without growing the heap.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { initRuntime } from '../backend.js';
import { reserveWasmHeap, reserveWasmHeapFor } from '../memory.js';

const heapBytes = (): number => (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.buffer.byteLength;

describe('reserveWasmHeap', () => {
  it('on wasm: 64 MB of tensors allocated after reserving 65 MB do not grow the heap', async () => {
    await initRuntime({ backend: 'wasm', accel: false });
    const before = tf.memory().numTensors;
    const grown = heapBytes();
    reserveWasmHeap(65 << 20);
    const reserved = heapBytes();
    expect(reserved).toBeGreaterThanOrEqual(grown);
    const tensors = Array.from({ length: 16 }, () => tf.fill([1 << 20], 0, 'float32')); // 16 × 4 MB
    expect(heapBytes()).toBe(reserved);
    tf.dispose(tensors);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('reserveWasmHeapFor: the tensors of a checkpoint (40 × 1M floats, more than the heap has free) fit after it without growing the heap', async () => {
    await initRuntime({ backend: 'wasm', accel: false });
    const before = tf.memory().numTensors;
    const checkpoint = new Map(Array.from({ length: 40 }, (_, i) => [`layer${i}.weight`, { shape: [1024, 1024] }]));
    reserveWasmHeapFor(checkpoint);
    const reserved = heapBytes();
    const tensors = Array.from({ length: 40 }, () => tf.fill([1024, 1024], 0, 'float32'));
    expect(heapBytes()).toBe(reserved);
    tf.dispose(tensors);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('is a no-op off wasm and for sizes the heap cannot hold', async () => {
    reserveWasmHeap(8 << 30);
    await initRuntime({ backend: 'cpu' });
    expect(() => reserveWasmHeap(1 << 20)).not.toThrow();
  });
});
