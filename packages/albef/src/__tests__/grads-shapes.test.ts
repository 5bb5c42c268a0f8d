// Gradients at another seed and shape than the reference fixture's: a tiny ALBEF initialised from
// seed 7, three pairs of six tokens with one padded row, the queue in use. No reference exists here,
// so the pretraining forward's gradients (ITC, ITM, MLM, one at a time, as `verify --grads` takes
// them) are checked against central differences of the same forward, for the largest element of
// every fifth parameter each loss reaches. Float32 differences agree to about 1% (curvature and
// rounding), which catches a missing term, a wrong factor or a sign, not a 1e-6 error: the fixture
// tests do that. `temp` is left out of ITC: ALBEF's soft targets depend on it but are constants of
// the loss (computed under no_grad), so its gradient is by design not the derivative of the whole function.
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { centralDifference, initRuntime, parameterGradients, Rng, type StateValue } from '@vl/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { readAlbefConfig } from '../checkpoint.js';
import { Albef, type AlbefBatch, type AlbefDraws } from '../model.js';

const DIR = fileURLToPath(new URL('../../../../fixtures/albef-official/albef-seed0/', import.meta.url));

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

function batchOf(rng: Rng, b: number, t: number, image: number): AlbefBatch {
  const ids = new Int32Array(b * t);
  const mask = new Int32Array(b * t);
  for (let r = 0; r < b; r++) {
    const len = r === b - 1 ? t - 2 : t;
    for (let c = 0; c < t; c++) {
      const k = r * t + c;
      mask[k] = c < len ? 1 : 0;
      // [CLS] words [SEP] [PAD]…: pad 0, cls 2, sep 3, words from 5.
      ids[k] = c >= len ? 0 : c === 0 ? 2 : c === len - 1 ? 3 : 5 + Math.floor(rng.uniform() * 90);
    }
  }
  const pixels = new Float32Array(b * 3 * image * image).map(() => rng.normal());
  return { pixels: { data: pixels, shape: [b, 3, image, image] }, inputIds: ids, attentionMask: mask, seqLength: t };
}

describe('ALBEF gradients at another seed and shape (central differences)', () => {
  it('ITC, ITM and MLM agree with central differences of the same forward', async () => {
    const config = await readAlbefConfig(DIR);
    const model = new Albef(config, new Rng(7));
    model.eval();
    const batch = batchOf(new Rng(11), 3, 6, config.visionConfig.imgSize);
    // The forward enqueues; every evaluation starts from the same queue.
    const queue = new Map<string, StateValue>(
      [...model.queue!.stateDict()].map(([k, t]) => [
        k,
        { shape: [...t.shape], dtype: t.dtype === 'int32' ? 'int32' : 'float32', data: t.dataSync().slice() as Float32Array | Int32Array },
      ]),
    );
    const first = model.forward(batch, { rng: new Rng(3), alpha: 0.4 });
    const draws: AlbefDraws = first.draws;
    tf.dispose([first.loss, ...Object.values(first.losses)]);
    model.queue!.loadStateDict(queue);
    const forward = (on: string) => {
      model.options = { objectives: { itc: { enabled: on === 'itc' }, itm: { enabled: on === 'itm' }, mlm: { enabled: on === 'mlm' } } };
      return model.forward(batch, { rng: new Rng(3), alpha: 0.4 }, draws);
    };
    const value = (on: string) => {
      const r = forward(on);
      const v = r.loss.dataSync()[0]!;
      tf.dispose([r.loss, ...Object.values(r.losses)]);
      model.queue!.loadStateDict(queue);
      return v;
    };
    const params = new Map(model.namedParameters());
    const before = tf.memory().numTensors;
    let checked = 0;
    for (const [on, eps] of [
      ['itc', 3e-3],
      ['itm', 1e-2],
      ['mlm', 1e-2],
    ] as const) {
      const { grads } = parameterGradients(model, () => forward(on).loss);
      model.queue!.loadStateDict(queue);
      const names = [...grads.keys()].filter((n, i) => i % 5 === 0 && !(on === 'itc' && n === 'temp'));
      for (const name of names) {
        const g = grads.get(name)!.data;
        let at = 0;
        for (let j = 1; j < g.length; j++) if (Math.abs(g[j]!) > Math.abs(g[at]!)) at = j;
        if (Math.abs(g[at]!) < 1e-3) continue; // below the differences' rounding noise
        const fd = centralDifference(params.get(name)!, at, () => value(on), eps);
        expect(Math.abs(fd - g[at]!), `${on} ${name}[${at}]: autograd ${g[at]}, difference ${fd}`).toBeLessThanOrEqual(
          1e-2 * Math.abs(g[at]!) + 1e-4,
        );
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(30);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });
});
