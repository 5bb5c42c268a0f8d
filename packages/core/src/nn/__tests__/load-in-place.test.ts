// loadStateDict's fast path (host data written over a wasm variable's own memory, deferred file data read straight
// into it) against the ordinary one (tf.tensor + assign): same bits on cpu and wasm, no leaked tensors, a
// missing-allowed parameter still zero, casts and int32 buffers as before, no stale cached work, no aliasing.
import { utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isVlError } from '../../errors.js';
import { writeSafetensors, type HostTensor } from '../../io/safetensors.js';
import { readCheckpoint } from '../../node/checkpoint-file.js';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { normal, truncNormal, uniform, withoutWeightInit } from '../init.js';
import { Module, type StateValue } from '../module.js';
import { makeTempDir } from '../../io/__tests__/helpers.js';

class Tiny extends Module {
  readonly weight: tf.Variable;
  constructor(rng: Rng) {
    super();
    this.weight = this.registerParameter('weight', truncNormal([2, 3], rng));
    this.registerParameter('bias', normal([3], rng));
    this.registerParameter('extra', uniform([2], rng, 1)); // a checkpoint may lack it (allowMissing)
    this.registerParameter('scale', normal([3], rng)); // float32, stored as I32 in the file: loaded through a cast
    this.registerBuffer('position_ids', tf.tensor1d([9, 9, 9], 'int32'), { storedDtype: 'I64' });
  }
}

// -0, the smallest subnormal, the largest float, a NaN with a payload: bits a lossy path would change.
const WEIGHT_BITS = Uint32Array.from([0x3fc00000, 0x80000000, 0x00000001, 0x7f7fffff, 0x7fc01234, 0xbf800000]);
const checkpoint: Record<string, HostTensor> = {
  weight: { dtype: 'float32', shape: [2, 3], data: new Float32Array(WEIGHT_BITS.buffer.slice(0)), fileDtype: 'F32' },
  bias: { dtype: 'float32', shape: [3], data: Float32Array.from([0.1, -2.5, 1e-30]), fileDtype: 'F32' },
  scale: { dtype: 'int32', shape: [3], data: Int32Array.from([3, -4, 1 << 24]), fileDtype: 'I32' },
  position_ids: { dtype: 'int32', shape: [3], data: Int32Array.from([0, 1, 2]), fileDtype: 'I64' },
};
const allowMissing = (k: string): boolean => k === 'extra';

/** float32 tensors as bit patterns (NaN payloads included), int32 ones as numbers. */
function bitsOf(t: tf.Tensor): number[] {
  const d = t.dataSync();
  if (t.dtype !== 'float32') return [...d];
  // tfjs-cpu's int32 → float32 cast keeps the Int32Array (the values are exact): compare as floats.
  const f = d instanceof Float32Array ? d : Float32Array.from(d);
  return [...new Uint32Array(f.buffer, f.byteOffset, f.length)];
}

/** What the ordinary path gives: each value made a tensor, cast to the target's dtype. */
function expectedState(): Map<string, number[]> {
  return new Map([
    ['weight', [...WEIGHT_BITS]],
    ['bias', [...new Uint32Array(Float32Array.from([0.1, -2.5, 1e-30]).buffer)]],
    ['extra', [0, 0]], // zeros from withoutWeightInit, untouched
    ['scale', [...new Uint32Array(Float32Array.from([3, -4, 1 << 24]).buffer)]], // cast int32 → float32
    ['position_ids', [0, 1, 2]],
  ]);
}

function stateBits(m: Module): Map<string, number[]> {
  return new Map([...m.stateDict()].map(([k, t]) => [k, bitsOf(t)]));
}

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`loadStateDict on ${backend}`, () => {
    let tmp: { dir: string; cleanup: () => Promise<void> };
    let path: string;
    beforeAll(async () => {
      // accel off: the stock wasm matmul caches XNNPACK-packed weights per tensor id, which the in-place write must drop.
      await initRuntime({ backend, accel: false });
      tmp = await makeTempDir(`load-${backend}`);
      path = join(tmp.dir, 'model.safetensors');
      await writeFile(path, writeSafetensors(checkpoint));
    });
    afterAll(async () => {
      await tmp.cleanup();
    });

    const sources: [string, () => Promise<Map<string, StateValue>>][] = [
      ['host arrays', async () => new Map(Object.entries(checkpoint))],
      ['a file read at once', async () => (await readCheckpoint(path)).tensors],
      ['a file read on use (deferData)', async () => (await readCheckpoint(path, { deferData: true })).tensors],
    ];
    for (const [label, read] of sources) {
      it(`loads ${label} bit-exactly, leaks no tensor, keeps an allowed-missing parameter zero`, async () => {
        const tensors = await read();
        const before = tf.memory().numTensors;
        tf.dispose([tf.fill([2], 7), tf.fill([3], 7)]); // freed memory the placeholders may reuse: they must still be zeros
        const model = withoutWeightInit(() => new Tiny(new Rng(1)));
        const built = tf.memory().numTensors;
        const dataId = model.weight.dataId;
        const report = model.loadStateDict(tensors, { allowMissing });
        // On wasm the weights went into the variable's own memory; elsewhere assign swapped it.
        expect(model.weight.dataId === dataId).toBe(backend === 'wasm');
        expect(report).toEqual({ missing: [], unexpected: [], mismatched: [], loaded: 4 });
        expect(tf.memory().numTensors).toBe(built);
        expect(stateBits(model)).toEqual(expectedState());
        model.dispose();
        expect(tf.memory().numTensors).toBe(before);
      });
    }

    it('a file replaced between reading its header and loading fails as CHECKPOINT_INVALID, and disposes cleanly', async () => {
      const other = join(tmp.dir, 'replaced.safetensors');
      await writeFile(other, writeSafetensors(checkpoint));
      const { tensors } = await readCheckpoint(other, { deferData: true });
      await writeFile(other, writeSafetensors(checkpoint));
      await utimes(other, new Date(), new Date(Date.now() + 5000));
      const before = tf.memory().numTensors;
      const model = withoutWeightInit(() => new Tiny(new Rng(1)));
      let error: unknown;
      try {
        model.loadStateDict(tensors, { allowMissing });
      } catch (err) {
        error = err;
      }
      expect(isVlError(error) && error.code === 'CHECKPOINT_INVALID' && error.subject === other).toBe(true);
      model.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });

    it('leaves variables trainable: a gradient step moves them by lr × gradient', async () => {
      const model = withoutWeightInit(() => new Tiny(new Rng(1)));
      model.loadStateDict((await readCheckpoint(path, { deferData: true })).tensors, { allowMissing });
      const bias = model.stateDict().get('bias') as tf.Variable;
      const x = tf.tensor1d([1, 2, 3]);
      const { grads, value } = tf.variableGrads(() => tf.sum(tf.mul(bias, x)) as tf.Scalar, [bias]);
      const grad = grads[bias.name]!;
      expect([...grad.dataSync()]).toEqual([1, 2, 3]); // d/db Σ b·x = x
      tf.tidy(() => bias.assign(tf.sub(bias, tf.mul(0.5, grad))));
      const f = Math.fround;
      expect([...bias.dataSync()]).toEqual([f(f(0.1) - 0.5), f(-2.5 - 1), f(f(1e-30) - 1.5)]);
      tf.dispose([x, value, ...Object.values(grads)]);
      model.dispose();
    });

    it('a matmul after a second load sees the new weights (no work cached from the old ones)', () => {
      const model = withoutWeightInit(() => new Tiny(new Rng(1)));
      const w1 = Float32Array.from([1, 2, 3, 4, 5, 6]);
      const w2 = Float32Array.from([-1, 0, 2, 0.5, 1, -3]);
      const load = (data: Float32Array) => model.loadStateDict({ weight: { dtype: 'float32', shape: [2, 3], data } }, { strict: false });
      const x = tf.tensor2d([
        [1, -1],
        [2, 0.5],
      ]);
      load(w1);
      const y1 = tf.matMul(x, model.weight);
      load(w2);
      const y2 = tf.matMul(x, model.weight);
      const fresh = tf.tensor2d(w2, [2, 3]);
      const expected = tf.matMul(x, fresh);
      expect([...y1.dataSync()]).toEqual([1 - 4, 2 - 5, 3 - 6, 2 + 2, 4 + 2.5, 6 + 3]);
      expect([...y2.dataSync()]).toEqual([...expected.dataSync()]);
      tf.dispose([x, y1, y2, fresh, expected]);
      model.dispose();
    });

    it('does not write through to a tensor that shares the variable memory (a reshape)', () => {
      const model = withoutWeightInit(() => new Tiny(new Rng(1)));
      model.loadStateDict({ weight: { dtype: 'float32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) } }, { strict: false });
      const flat = model.weight.reshape([6]);
      model.loadStateDict(
        { weight: { dtype: 'float32', shape: [2, 3], data: Float32Array.from([7, 8, 9, 10, 11, 12]) } },
        { strict: false },
      );
      expect([...flat.dataSync()]).toEqual([1, 2, 3, 4, 5, 6]);
      expect([...model.weight.dataSync()]).toEqual([7, 8, 9, 10, 11, 12]);
      flat.dispose();
      model.dispose();
    });
  });
}
