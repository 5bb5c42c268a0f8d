// initRuntime: preference order by what is installed, VL_BACKEND override, clear errors.
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, describe, expect, it } from 'vitest';
import { isVlError } from '../../errors.js';
import { initRuntime, runtimeInfo } from '../backend.js';

const saved = process.env.VL_BACKEND;
afterEach(() => {
  if (saved === undefined) delete process.env.VL_BACKEND;
  else process.env.VL_BACKEND = saved;
});

describe('initRuntime', () => {
  it('picks the best installed backend and says why (the native packages are absent here)', async () => {
    delete process.env.VL_BACKEND;
    const info = await initRuntime({ backend: 'auto' });
    expect(info.candidates.map((c) => c.choice)).toEqual(['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu']);
    const natives = info.candidates.slice(0, 2);
    // Whatever is installed, the choice is the first available candidate in preference order.
    const firstAvailable = info.candidates.find((c) => c.available)!;
    expect(info.choice).toBe(firstAvailable.choice);
    if (!natives.some((c) => c.available)) {
      expect(info.choice).toBe('wasm');
      expect(tf.getBackend()).toBe('wasm');
      expect(info.reason).toMatch(/tfjs-node-gpu is not installed \(optional\)/);
      expect(info.kernels.enabled).toBe(true);
      expect(info.kernels.replaced).toContain('BatchMatMul');
      expect(info.kernels.fallbacks).toContain('UnsortedSegmentSum');
    }
    expect(runtimeInfo()).toBe(info);
  });

  it('VL_BACKEND overrides the choice; an explicit option overrides VL_BACKEND', async () => {
    process.env.VL_BACKEND = 'cpu';
    const info = await initRuntime();
    expect(info.choice).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(info.reason).toContain('requested by VL_BACKEND');
    const forced = await initRuntime({ backend: 'wasm' });
    expect(forced.choice).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
  });

  it('rejects an unknown backend name with a typed error naming the source', async () => {
    process.env.VL_BACKEND = 'tpu';
    await expect(initRuntime()).rejects.toSatisfy(
      (e: unknown) => isVlError(e, 'BACKEND_UNAVAILABLE') && /VL_BACKEND/.test((e as Error).message) && /tpu/.test((e as Error).message),
    );
  });

  it('forcing a native backend that is not installed fails with what to do', async () => {
    const info = await initRuntime({ backend: 'auto' });
    if (info.candidates[1]!.available) return; // tfjs-node installed: nothing to check here
    await expect(initRuntime({ backend: 'tfjs-node' })).rejects.toSatisfy(
      (e: unknown) =>
        isVlError(e, 'BACKEND_UNAVAILABLE') && /not installed/.test((e as Error).message) && /VL_BACKEND=wasm/.test((e as Error).message),
    );
  });
});

describe('webgl', () => {
  it('is chosen only on request and, under Node, refused with a typed error', async () => {
    const auto = await initRuntime({ backend: 'auto' });
    expect(auto.candidates.map((c) => c.choice)).not.toContain('webgl');
    await expect(initRuntime({ backend: 'webgl' })).rejects.toSatisfy(
      (e: unknown) => isVlError(e, 'BACKEND_UNAVAILABLE') && /webgl needs a browser/.test((e as Error).message),
    );
  });
});

describe('ensureRuntime', () => {
  it('keeps the backend the application chose', async () => {
    const { ensureRuntime } = await import('../backend.js');
    await initRuntime({ backend: 'cpu' });
    const info = await ensureRuntime();
    expect(info.choice).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
  });
});
