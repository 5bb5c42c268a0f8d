// Building and disposing encoders returns tfjs to its baseline; core metrics run on wasm too.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { initRuntime } from '../../runtime/backend.js';
import { Rng } from '../../runtime/rng.js';
import { itcAccuracy } from '../../objectives/itc.js';
import { BertEmbeddings } from '../text-embeddings.js';

describe('encoder lifecycle', () => {
  it('BertEmbeddings construction leaves no stray tensors behind after dispose', async () => {
    await initRuntime({ backend: 'cpu' });
    const before = tf.memory().numTensors;
    const emb = new BertEmbeddings({ vocabSize: 20, hiddenSize: 8, maxPositionEmbeddings: 16 }, new Rng(0));
    expect(emb.stateDict().get('position_ids')!.shape).toEqual([1, 16]);
    emb.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('itcAccuracy gives the same answer on wasm as on cpu', async () => {
    const sim = [
      [1, 5, 0],
      [0, 1, 3],
      [2, 0, 1],
    ];
    const targets = [
      [0.5, 0.5, 0],
      [0, 1, 0],
      [0, 0, 1],
    ];
    const results: number[] = [];
    for (const backend of ['cpu', 'wasm'] as const) {
      await initRuntime({ backend });
      const [s, t] = [tf.tensor2d(sim), tf.tensor2d(targets)];
      results.push(itcAccuracy(s, t));
      tf.dispose([s, t]);
    }
    expect(results).toEqual([1 / 3, 1 / 3].map((v) => Math.fround(v)));
  });
});
