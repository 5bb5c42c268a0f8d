// Checking a checkpoint loader: a model's state dict as raw bits, what loadStateDict was handed and whether the
// parameters kept their memory, and damaged copies of a model.safetensors for the error paths.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { isDeferredHostTensor, isVlError, Module } from '@vl/core';
import { expect, vi } from 'vitest';

/** Every tensor of the state dict as raw bits (float32 NaN payloads and -0 included). */
export function stateBits(m: Module): Map<string, number[]> {
  return new Map(
    [...m.stateDict()].map(([k, t]) => {
      const d = t.dataSync();
      return [k, d instanceof Float32Array ? [...new Uint32Array(d.buffer, d.byteOffset, d.length)] : [...d]];
    }),
  );
}

export interface LoadWatch<M extends Module> {
  model: M;
  /** Values handed to loadStateDict still in their file (deferred, read straight into memory). */
  deferred: number;
  /** Parameters whose data kept its id through loadStateDict (written in place). */
  inPlace: number;
  /** Parameters of every module loadStateDict was called on. */
  parameters: number;
}

/**
 * Runs `load`, watching its loadStateDict: how many values came still in their file (deferred, read straight into
 * memory), and how many parameters kept their memory (on wasm host data is written in place; elsewhere assign
 * gives each parameter new data).
 */
export async function watchLoad<M extends Module>(load: () => Promise<M>): Promise<LoadWatch<M>> {
  const seen = { deferred: 0, inPlace: 0, parameters: 0 };
  const original = Module.prototype.loadStateDict;
  const spy = vi.spyOn(Module.prototype, 'loadStateDict').mockImplementation(function (this: Module, ...args) {
    const [dict] = args;
    seen.deferred += [...(dict instanceof Map ? dict.values() : Object.values(dict))].filter(isDeferredHostTensor).length;
    const ids = this.namedParameters().map(([, p]) => p.dataId);
    const report = original.apply(this, args);
    const after = this.namedParameters().map(([, p]) => p.dataId);
    seen.parameters += ids.length;
    seen.inPlace += ids.filter((id, i) => id === after[i]).length;
    return report;
  });
  try {
    return { model: await load(), ...seen };
  } finally {
    spy.mockRestore();
  }
}

/**
 * Copies of the checkpoint folder `src` (its config.json) under `dest`, each with a damaged model.safetensors:
 * `truncated` (the last 100 bytes cut) and `corrupt` (a header length past the end of the file).
 */
export function writeDamagedSafetensors(src: string, dest: string): { label: 'truncated' | 'corrupt'; dir: string; file: string }[] {
  const bytes = readFileSync(join(src, 'model.safetensors'));
  const corrupt = Buffer.from(bytes);
  corrupt.writeUInt32LE(0xffffff, 0); // a header length past the end of the file
  return (
    [
      ['truncated', bytes.subarray(0, bytes.length - 100)],
      ['corrupt', corrupt],
    ] as const
  ).map(([label, content]) => {
    const dir = join(dest, label);
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(src, 'config.json'), join(dir, 'config.json'));
    const file = join(dir, 'model.safetensors');
    writeFileSync(file, content);
    return { label, dir, file };
  });
}

/**
 * A fast loader (`load`) against the path it replaced (`previous`) and the same checkpoint as a PyTorch pickle
 * (`pth`): every parameter arrived still in its file and (on wasm) was written in place, the load made only the
 * model's own tensors, all three hold the same bits, and nothing is left after they are disposed.
 */
export async function expectFastLoadMatches(
  paths: { load: () => Promise<Module>; previous: () => Promise<Module>; pth: () => Promise<Module> },
  backend: string,
): Promise<void> {
  const before = tf.memory().numTensors;
  const { model: fast, deferred, inPlace, parameters } = await watchLoad(paths.load);
  expect(deferred).toBe(parameters);
  expect(inPlace).toBe(backend === 'wasm' ? parameters : 0);
  const owned = tf.memory().numTensors - before;
  const previous = await paths.previous();
  const pth = await paths.pth();
  // The load made only the model's own tensors (the same count as the previous path's model).
  expect(tf.memory().numTensors - before).toBe(3 * owned);
  const bits = stateBits(fast);
  expect(bits.size).toBeGreaterThan(50);
  expect(bits).toEqual(stateBits(previous));
  expect(bits).toEqual(stateBits(pth));
  for (const m of [fast, previous, pth]) m.dispose();
  expect(tf.memory().numTensors).toBe(before);
}

/** `load` of each damaged copy of `src` (writeDamagedSafetensors) fails with SAFETENSORS_INVALID naming the file, and
 * leaves no tensor behind. */
export async function expectDamagedSafetensorsRejected(load: (dir: string) => Promise<unknown>, src: string, dest: string): Promise<void> {
  for (const { dir, file } of writeDamagedSafetensors(src, dest)) {
    const before = tf.memory().numTensors;
    const error = await load(dir).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isVlError(error) && error.code === 'SAFETENSORS_INVALID' && error.subject === file, String(error)).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
  }
}
