// Gradients at another seed and shape than the reference fixtures': tiny BLIP captioning and retrieval
// models initialised from seed 5, three pairs of six tokens with one padded row. No reference exists
// here, so the gradients of the losses `verify --grads` replays (LM, ITM, ITC) are checked against
// central differences of the same loss, for the largest element of every fourth parameter each loss
// reaches. Float32 differences agree to about 1% (curvature and rounding): this catches a missing term,
// a wrong factor or a sign; the fixture tests check the 1e-6 level.
import * as tf from '@tensorflow/tfjs-core';
import { centralDifference, initRuntime, parameterGradients, Rng } from '@vl/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { readBlipConfig } from '../checkpoint.js';
import { BlipForConditionalGeneration, BlipForImageTextRetrieval } from '../modeling.js';
import { type BlipGradientModel, type BlipLossBatch, blipReferenceLoss } from '../verify-grads.js';
import { CAPTIONING, RETRIEVAL } from './helpers.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

/** [first] words [SEP=3] [PAD=0]…, the last row two tokens shorter. */
function batchOf(rng: Rng, b: number, t: number, image: number, first: number): BlipLossBatch {
  const ids = new Int32Array(b * t);
  const mask = new Int32Array(b * t);
  for (let r = 0; r < b; r++) {
    const len = r === b - 1 ? t - 2 : t;
    for (let c = 0; c < t; c++) {
      const k = r * t + c;
      mask[k] = c < len ? 1 : 0;
      ids[k] = c >= len ? 0 : c === 0 ? first : c === len - 1 ? 3 : 5 + Math.floor(rng.uniform() * 90);
    }
  }
  return {
    pixelValues: tf.tensor4d(
      new Float32Array(b * 3 * image * image).map(() => rng.normal()),
      [b, 3, image, image],
    ),
    inputIds: tf.tensor2d(ids, [b, t], 'int32'),
    attentionMask: tf.tensor2d(mask, [b, t], 'int32'),
  };
}

function checkAgainstDifferences(model: BlipGradientModel, name: string, batch: BlipLossBatch, eps: number): number {
  const params = new Map(model.namedParameters());
  const value = () => tf.tidy(() => blipReferenceLoss(model, name, batch).dataSync()[0]!);
  const { grads } = parameterGradients(model, () => blipReferenceLoss(model, name, batch));
  let checked = 0;
  for (const [param, g] of [...grads].filter((_, i) => i % 4 === 0)) {
    let at = 0;
    for (let j = 1; j < g.data.length; j++) if (Math.abs(g.data[j]!) > Math.abs(g.data[at]!)) at = j;
    const exact = g.data[at]!;
    if (Math.abs(exact) < 1e-3) continue; // below the differences' rounding noise
    const fd = centralDifference(params.get(param)!, at, value, eps);
    expect(Math.abs(fd - exact), `${name} ${param}[${at}]: autograd ${exact}, difference ${fd}`).toBeLessThanOrEqual(
      1e-2 * Math.abs(exact) + 1e-4,
    );
    checked++;
  }
  return checked;
}

describe('BLIP gradients at another seed and shape (central differences)', () => {
  it('LM on BlipForConditionalGeneration, ITM and ITC on BlipForImageTextRetrieval', async () => {
    const before = tf.memory().numTensors;
    const captioner = new BlipForConditionalGeneration(await readBlipConfig(CAPTIONING), new Rng(5)).eval();
    const retrieval = new BlipForImageTextRetrieval(await readBlipConfig(RETRIEVAL), new Rng(5)).eval();
    const image = captioner.config.visionConfig.imageSize;
    const rng = new Rng(13);
    const captions = batchOf(rng, 3, 6, image, captioner.config.textConfig.bosTokenId);
    const pairs = batchOf(rng, 3, 6, image, 4);
    const checked = [
      checkAgainstDifferences(captioner, 'lm', captions, 1e-2),
      checkAgainstDifferences(retrieval, 'itm', pairs, 1e-2),
      checkAgainstDifferences(retrieval, 'itc', pairs, 3e-3),
    ];
    for (const n of checked) expect(n).toBeGreaterThan(5);
    tf.dispose([...Object.values(captions), ...Object.values(pairs)]);
    captioner.dispose();
    retrieval.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
