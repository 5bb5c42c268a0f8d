// The wasm heap guard: the training estimate, the refusal with a clear error on wasm only, and
// that tensors already alive count against the heap.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { isVlError } from '../../errors.js';
import { useRuntime } from './parity.js';
import { WASM_HEAP_LIMIT_BYTES, assertFitsWasmHeap, estimateTrainingBytes } from '../memory.js';

const GiB = 1024 ** 3;

describe('estimateTrainingBytes', () => {
  it('counts weights, gradients and AdamW moments as float32, plus activations', () => {
    expect(estimateTrainingBytes(1000, { optimizer: 'adamw' })).toBe(1000 * 4 * 4);
    expect(estimateTrainingBytes(1000, { optimizer: 'sgd' })).toBe(1000 * 4 * 2);
    expect(estimateTrainingBytes(1000, { optimizer: 'none' })).toBe(1000 * 4);
    expect(estimateTrainingBytes(1000, { optimizer: 'none', gradients: true })).toBe(1000 * 4 * 2);
    expect(estimateTrainingBytes(1000, { optimizer: 'adamw', gradients: false, activationBytes: 500 })).toBe(1000 * 4 * 3 + 500);
  });

  it('a base-size model (~224M params) with AdamW and its activations does not fit the wasm heap; inference does', () => {
    // 224M × 16 bytes = 3.34 GiB of weights, gradients and moments before any activation.
    expect(estimateTrainingBytes(224e6, { optimizer: 'adamw', activationBytes: 0.5 * GiB })).toBeGreaterThan(WASM_HEAP_LIMIT_BYTES);
    expect(estimateTrainingBytes(224e6, { optimizer: 'none' })).toBeLessThan(WASM_HEAP_LIMIT_BYTES);
    expect(WASM_HEAP_LIMIT_BYTES / GiB).toBeCloseTo(3.6, 5);
  });

  it('rejects nonsense sizes', () => {
    expect(() => estimateTrainingBytes(-1, { optimizer: 'adamw' })).toThrow(/numParams/);
    expect(() => estimateTrainingBytes(10, { optimizer: 'adamw', activationBytes: Number.NaN })).toThrow(/activationBytes/);
  });
});

describe('assertFitsWasmHeap', () => {
  it('is a no-op on the cpu backend, however large the request', async () => {
    await useRuntime('cpu');
    expect(assertFitsWasmHeap(100 * GiB, 'huge model')).toBeNull();
  });

  it('on wasm, throws WASM_HEAP_LIMIT with the estimate in GiB and what to do', async () => {
    await useRuntime('wasm');
    const bytes = estimateTrainingBytes(224e6, { optimizer: 'adamw', activationBytes: 0.5 * GiB });
    let caught: unknown;
    try {
      assertFitsWasmHeap(bytes, 'blip-base training');
    } catch (err) {
      caught = err;
    }
    expect(isVlError(caught, 'WASM_HEAP_LIMIT')).toBe(true);
    const message = (caught as Error).message;
    expect(message).toContain('blip-base training');
    expect(message).toMatch(/3\.8\d GiB/);
    expect(message).toContain('@tensorflow/tfjs-node');
    expect(message).toMatch(/smaller preset/);
    expect(message).toMatch(/inference only/);
    expect(message).toMatch(/fewer parameters/);
    expect(assertFitsWasmHeap(GiB, 'small model')).toMatchObject({
      requiredBytes: expect.any(Number),
      limitBytes: WASM_HEAP_LIMIT_BYTES,
    });
  });

  it('counts the bytes tfjs already holds', async () => {
    await useRuntime('wasm');
    const inUse = tf.memory().numBytes;
    const justFits = WASM_HEAP_LIMIT_BYTES - inUse - 1024;
    expect(() => assertFitsWasmHeap(justFits, 'just fits')).not.toThrow();
    const held = tf.zeros([1024]); // 4 KiB more alive
    try {
      expect(() => assertFitsWasmHeap(justFits, 'no longer fits')).toThrow(/WASM_HEAP_LIMIT/);
    } finally {
      held.dispose();
    }
  });
});
