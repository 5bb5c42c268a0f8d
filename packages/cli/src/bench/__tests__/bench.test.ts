// The bench in quick mode: every engine and case reports a timing, the fixed wasm kernels beat the
// stock ones on the block, the markdown has its tables, and the runtime and memory are left as found.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { initRuntime, runtimeInfo } from '@vl/core';
import { runBench } from '../bench.js';
import { blockForward, blockForwardFlops, createBlockParams, disposeBlockParams } from '../block.js';
import { benchReportToMarkdown } from '../markdown.js';

describe('runBench (quick)', () => {
  it('times every case on cpu, stock wasm and core wasm, and renders markdown', async () => {
    await initRuntime({ backend: 'cpu' });
    const tensorsBefore = tf.memory().numTensors;
    const report = await runBench({ quick: true, peak: false });

    expect(report.mode).toBe('quick');
    expect(report.matmul.length).toBeGreaterThanOrEqual(6);
    // wasm-accel runs too where @vl/accel loads; the three engines below are always there.
    const core = (engines: string[]) => engines.filter((e) => e !== 'wasm-accel');
    for (const m of report.matmul) {
      expect(core(m.timings.map((t) => t.engine))).toEqual(['cpu', 'wasm-stock', 'wasm']);
      for (const t of m.timings) {
        expect(t.bestMs).toBeGreaterThan(0);
        expect(t.gflops).toBeGreaterThan(0);
      }
      expect(m.speedup).not.toBeNull();
    }
    expect(core(report.block.forward.map((t) => t.engine))).toEqual(['cpu', 'wasm-stock', 'wasm']);
    expect(report.block.forward.find((t) => t.engine === 'wasm')?.threads).toBe(1);
    // Speed itself is the full run's business (timings in a test run on a shared machine are noise);
    // here the ratios just have to be there.
    expect(report.block.forwardBackwardSpeedup).toBeGreaterThan(0);
    expect(report.target.achieved).toBe(report.block.forwardBackwardSpeedup);
    expect(report.peak).toBeNull();

    const md = benchReportToMarkdown(report);
    expect(md).toContain('| case | GFLOP | tfjs cpu | wasm (stock) | wasm (core kernels) |');
    expect(md).toContain('## Transformer block');
    expect(md).toMatch(/Target: .* at least 5×/);

    // The bench switches backends and kernels; it must hand back the runtime and memory it found.
    expect(runtimeInfo()?.backend).toBe('cpu');
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });

  it('the benchmarked block is a real transformer block: shape-preserving, finite, counted FLOPs', async () => {
    await initRuntime({ backend: 'wasm' });
    const shape = { hidden: 32, heads: 4, ffn: 64, batch: 2, tokens: 5 };
    const params = createBlockParams(shape, 1);
    const x = tf.randomUniform([2, 5, 32], -1, 1, 'float32', 2);
    const before = tf.memory().numTensors;
    const y = blockForward(x, params, shape);
    expect(y.shape).toEqual([2, 5, 32]);
    expect(Array.from(y.dataSync()).every(Number.isFinite)).toBe(true);
    y.dispose();
    expect(tf.memory().numTensors).toBe(before);
    disposeBlockParams(params);
    x.dispose();
    // 10 tokens: 4 projections of 32×32 and two MLP matmuls of 32×64, plus QKᵀ and P·V.
    expect(blockForwardFlops(shape)).toBe(2 * 10 * (4 * 32 * 32 + 2 * 32 * 64) + 4 * 2 * 5 * 5 * 32);
  });
});
