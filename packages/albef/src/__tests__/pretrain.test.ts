// ALBEF pretraining forward on the tiny preset: shapes, that every ablation switch changes the
// computation (objectives on/off and weights, hard vs random negatives, distillation, queue),
// gradients reach the online model and never the twins, no leaks, and retrieval re-ranking.
import * as tf from '@tensorflow/tfjs-core';
import { initRuntime, itmPairs, Rng } from '@vl/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { albefConfig, ALBEF_BASE, validateAlbefConfig } from '../config.js';
import { Albef, type AlbefBatch, type AlbefPretrainOptions, reinitAlbef } from '../model.js';
import { albefRetrievalScores, itcRetrievalMetrics, OUTSIDE_TOP_K, retrievalMetrics, topK, type RetrievalScores } from '../retrieval.js';

beforeAll(async () => {
  await initRuntime({ backend: 'cpu' });
});

const B = 6;
const T = 8;

function batch(seed: number, b = B): AlbefBatch & { pixels: tf.Tensor4D } {
  const rng = new Rng(seed);
  const px = new Float32Array(b * 3 * 32 * 32).map(() => rng.normal());
  const ids = new Int32Array(b * T);
  const mask = new Int32Array(b * T);
  for (let r = 0; r < b; r++) {
    const len = 5 + (r % 3);
    for (let j = 0; j < len; j++) {
      ids[r * T + j] = j === 0 ? 2 : j === len - 1 ? 3 : 5 + rng.int(90);
      mask[r * T + j] = 1;
    }
  }
  return { pixels: tf.tensor4d(px, [b, 3, 32, 32]), inputIds: ids, attentionMask: mask, seqLength: T };
}

function run(options: AlbefPretrainOptions, seed = 1, replayFrom?: Albef['forward'] extends (...a: never[]) => infer R ? R : never) {
  const model = new Albef(albefConfig('tiny'), new Rng(7), options);
  model.eval();
  const data = batch(seed);
  const out = model.forward(data, { rng: new Rng(seed), alpha: 0.4 }, replayFrom?.draws ?? {});
  const losses = Object.fromEntries(Object.entries(out.losses).map(([k, v]) => [k, v.dataSync()[0]!]));
  const total = out.loss.dataSync()[0]!;
  const ptr = model.queue ? model.queue.pointer : -1;
  tf.dispose([out.loss, ...Object.values(out.losses), data.pixels]);
  model.dispose();
  return { losses, total, draws: out.draws, metrics: out.metrics, ptr, result: out };
}

describe('ALBEF config', () => {
  it('presets validate and base matches the paper', () => {
    expect(ALBEF_BASE.bertConfig.fusionLayer).toBe(6);
    expect(ALBEF_BASE.albefConfig.embedDim).toBe(256);
    expect(ALBEF_BASE.albefConfig.queueSize).toBe(65536);
    expect(validateAlbefConfig(JSON.parse(JSON.stringify(ALBEF_BASE)))).toEqual(ALBEF_BASE);
    expect(() => albefConfig('tiny', { bertConfig: { fusionLayer: 9 } })).toThrow(/fusionLayer/);
    expect(() => albefConfig('tiny', { bertConfig: { encoderWidth: 48 } })).toThrow(/encoderWidth/);
  });
});

describe('ALBEF pretraining forward (tiny)', () => {
  it('computes ITC, ITM and MLM with the expected shapes and advances the queue', () => {
    const model = new Albef(albefConfig('tiny'), new Rng(0));
    model.eval();
    const data = batch(3);
    const img = model.encodeImage(data.pixels);
    expect(img.shape).toEqual([B, 17, 32]);
    const ids = tf.tensor2d(data.inputIds, [B, T], 'int32');
    const mask = tf.tensor2d(data.attentionMask, [B, T], 'int32');
    const txt = model.encodeText(ids, mask);
    expect(txt.shape).toEqual([B, T, 32]);
    expect(model.imageFeat(img).shape).toEqual([B, 16]);
    expect(model.mlmLogits(ids, mask, img).shape).toEqual([B, T, 99]);
    expect(model.candidates(model.textFeat(txt), 'text_queue', true).shape).toEqual([16, B + 8]);
    const out = model.forward(data, { rng: new Rng(1) });
    expect(Object.keys(out.losses).sort()).toEqual(['itc', 'itm', 'mlm']);
    expect(model.queue!.pointer).toBe(B % 8);
    for (const v of Object.values(out.losses)) expect(Number.isFinite(v.dataSync()[0]!)).toBe(true);
    tf.dispose([img, ids, mask, txt, data.pixels]);
    model.dispose();
  });

  it('host pixels and a pixel tensor give the same losses', () => {
    const model = new Albef(albefConfig('tiny'), new Rng(7));
    model.eval();
    const data = batch(2);
    const host = { data: data.pixels.dataSync() as Float32Array, shape: data.pixels.shape as [number, number, number, number] };
    const a = model.forward(data, { rng: new Rng(1) });
    const b = model.forward({ ...data, pixels: host }, { rng: new Rng(1) }, a.draws);
    expect(b.losses.mlm!.dataSync()[0]).toBeCloseTo(a.losses.mlm!.dataSync()[0]!, 5);
    expect(b.losses.itm!.dataSync()[0]).toBeCloseTo(a.losses.itm!.dataSync()[0]!, 5);
    tf.dispose([a.loss, b.loss, ...Object.values(a.losses), ...Object.values(b.losses), data.pixels]);
    model.dispose();
  });

  it('each objective switch removes its loss and weights scale the total', () => {
    const all = run({});
    for (const name of ['itc', 'itm', 'mlm']) {
      const off = run({ objectives: { [name]: { enabled: false } } }, 1, all.result);
      expect(Object.keys(off.losses)).not.toContain(name);
      expect(off.total).not.toBeCloseTo(all.total, 4);
    }
    const weighted = run({ objectives: { itc: { weight: 2 }, itm: { weight: 0.5 } } }, 1, all.result);
    const l = weighted.losses;
    expect(weighted.total).toBeCloseTo(2 * l.itc! + 0.5 * l.itm! + l.mlm!, 4);
    expect(l.itc).toBeCloseTo(all.losses.itc!, 5);
  });

  it('the ITM weight scales the ITM term exactly: total = itc + w·itm + mlm, with itm the hand-computed cross-entropy', () => {
    const model = new Albef(albefConfig('tiny'), new Rng(7), { objectives: { itm: { weight: 4 } } });
    model.eval();
    const data = batch(2);
    const out = model.forward(data, { rng: new Rng(3), alpha: 0 });
    const scalar = (t: tf.Tensor | undefined): number => t!.dataSync()[0]!;
    const [itc, itm, mlm, total] = [scalar(out.losses.itc), scalar(out.losses.itm), scalar(out.losses.mlm), scalar(out.loss)];
    // ITM by hand: the head's logits for the recorded pairs (B positives, then the 2B drawn negatives),
    // cross-entropy log(e^a + e^b) − logit[label], averaged over the 3B pairs.
    const pairs = itmPairs(out.draws.negatives!);
    const logits = tf.tidy(() => {
      const ids = tf.tensor2d(data.inputIds, [B, T], 'int32');
      const mask = tf.tensor2d(data.attentionMask, [B, T], 'int32');
      return model.itmLogitsForPairs(model.encodeText(ids, mask), mask, model.encodeImage(data.pixels), pairs).dataSync();
    });
    let ce = 0;
    for (let r = 0; r < 3 * B; r++) {
      const [a, b] = [logits[2 * r]!, logits[2 * r + 1]!];
      ce += Math.log(Math.exp(a) + Math.exp(b)) - (pairs.labels[r] ? b : a);
    }
    expect(itm).toBeCloseTo(ce / (3 * B), 5);
    expect(total).toBeCloseTo(itc + 4 * itm + mlm, 5);
    // Weight 1 on the same weights and draws: the ITM loss itself is unchanged and enters the total once.
    // (ITC differs: the first call advanced the queue.)
    model.options = {};
    const one = model.forward(data, { rng: new Rng(3), alpha: 0 }, out.draws);
    const [itc1, itm1, mlm1, total1] = [scalar(one.losses.itc), scalar(one.losses.itm), scalar(one.losses.mlm), scalar(one.loss)];
    expect(itm1).toBeCloseTo(itm, 6);
    expect(total1).toBeCloseTo(itc1 + itm1 + mlm1, 5);
    tf.dispose([out.loss, one.loss, ...Object.values(out.losses), ...Object.values(one.losses), data.pixels]);
    model.dispose();
  });

  it('randomNegativesSteps: the sampler draws random ITM negatives before that step and mines them from it on', () => {
    const opts = (o: AlbefPretrainOptions) => new Albef(albefConfig('tiny'), new Rng(7), o);
    const warm = opts({ negatives: 'hard', randomNegativesSteps: 2 });
    expect([0, 1, 2, 9].map((s) => warm.negativesAt(s))).toEqual(['random', 'random', 'hard', 'hard']);
    expect(opts({}).negativesAt(0)).toBe('hard'); // default: the paper, mining from step 0
    expect(opts({ negatives: 'random', randomNegativesSteps: 2 }).negativesAt(9)).toBe('random');
    expect(() => opts({ randomNegativesSteps: -1 }).negativesAt(0)).toThrow(/randomNegativesSteps/);
    warm.dispose();
    // Same init, batch and generator: the warm model's draws are the random model's before step 2 and the
    // hard model's from step 2 on (hard and random differ on this batch, so the check has teeth).
    const draws = (o: AlbefPretrainOptions, step?: number) => {
      const model = opts(o);
      model.eval();
      const data = batch(2);
      const out = model.forward(data, { rng: new Rng(1), alpha: 0, step });
      const d = out.draws.negatives!;
      const picked = {
        drawn: `${Array.from(d.imageForText).join()}|${Array.from(d.textForImage).join()}`,
        hard: out.metrics.itmHardNegatives,
      };
      tf.dispose([out.loss, ...Object.values(out.losses), data.pixels]);
      model.dispose();
      return picked;
    };
    const hard = draws({ negatives: 'hard' }, 1);
    const random = draws({ negatives: 'random' }, 1);
    expect(hard.drawn).not.toBe(random.drawn);
    expect([hard.hard, random.hard]).toEqual([1, 0]);
    const warmOptions: AlbefPretrainOptions = { negatives: 'hard', randomNegativesSteps: 2 };
    expect(draws(warmOptions, 0)).toEqual(random);
    expect(draws(warmOptions, 1)).toEqual(random);
    expect(draws(warmOptions, 2)).toEqual(hard);
    expect(draws(warmOptions)).toEqual(hard); // no step given (a bare forward): mining
  });

  it('without ITC and ITM the text-only and momentum ITC passes are skipped (no queue update)', () => {
    const mlmOnly = run({ objectives: { itc: { enabled: false }, itm: { enabled: false } } });
    expect(mlmOnly.ptr).toBe(0);
    expect(mlmOnly.draws.negatives).toBeUndefined();
  });

  it('hard and random negatives draw differently and change only ITM; hard mining computes similarities even without ITC', () => {
    let differ = 0;
    for (let seed = 1; seed <= 4; seed++) {
      const hard = run({ negatives: 'hard' }, seed);
      const random = run({ negatives: 'random' }, seed);
      const h = Array.from(hard.draws.negatives!.imageForText).join();
      const r = Array.from(random.draws.negatives!.imageForText).join();
      if (h !== r) differ++;
      expect(random.losses.itc).toBeCloseTo(hard.losses.itc!, 5); // only ITM changes
    }
    expect(differ).toBeGreaterThan(0);
    // Hard mining with no ITC loss still needs (and computes) the similarities; random does not.
    const randomNoItc = run({ negatives: 'random', objectives: { itc: { enabled: false } } });
    expect(randomNoItc.ptr).toBe(0);
    const hardNoItc = run({ negatives: 'hard', objectives: { itc: { enabled: false } } });
    expect(hardNoItc.ptr).toBe(B % 8);
  });

  it('distillation changes ITC and MLM (soft targets), not ITM', () => {
    const on = run({ distill: true });
    const off = run({ distill: false }, 1, on.result);
    expect(off.metrics.alpha).toBe(0);
    expect(on.metrics.alpha).toBe(0.4);
    expect(off.losses.itc).not.toBeCloseTo(on.losses.itc!, 5);
    expect(off.losses.mlm).not.toBeCloseTo(on.losses.mlm!, 5);
    expect(off.losses.itm).toBeCloseTo(on.losses.itm!, 5);
  });

  it('the queue adds candidates: off, or a different size, changes ITC', () => {
    const withQueue = run({});
    const noQueue = run({ useQueue: false }, 1, withQueue.result);
    expect(noQueue.losses.itc).not.toBeCloseTo(withQueue.losses.itc!, 5);
    expect(noQueue.ptr).toBe(0);
    const big = new Albef(albefConfig('tiny', { albefConfig: { queueSize: 32 } }), new Rng(7));
    const none = new Albef(albefConfig('tiny', { albefConfig: { queueSize: 0 } }), new Rng(7));
    expect(big.stateDict().get('queue.image_queue')!.shape).toEqual([16, 32]);
    expect(none.queue).toBeNull();
    expect([...none.stateDict().keys()].some((k) => k.startsWith('queue.'))).toBe(false);
    big.dispose();
    none.dispose();
  });

  it('gradients reach online weights and temp, never the frozen twins; no leaks across steps', () => {
    const model = new Albef(albefConfig('tiny'), new Rng(0));
    const data = batch(5);
    const step = (seed: number) => {
      const { value, grads } = tf.variableGrads(() => model.forward(data, { rng: new Rng(seed) }).loss);
      const names = new Map(model.namedParameters().map(([n, p]) => [p.name, n]));
      const got = Object.keys(grads).map((id) => names.get(id) ?? id);
      tf.dispose([value, ...Object.values(grads)]);
      model.afterStep();
      return got;
    };
    const first = step(1);
    expect(first.some((n) => n.startsWith('visual_encoder.'))).toBe(true);
    expect(first).toContain('temp');
    expect(first).toContain('itm_head.weight');
    expect(first.some((n) => n.includes('_m.'))).toBe(false);
    const before = tf.memory().numTensors;
    step(2);
    expect(tf.memory().numTensors).toBe(before);
    data.pixels.dispose();
    model.dispose();
  });
});

describe('reinitAlbef', () => {
  it('re-draws matrices at the given std, resets norms and biases, keeps temp, and copies into the twins', () => {
    const model = new Albef(albefConfig('tiny'), new Rng(0));
    reinitAlbef(model, 0.2, new Rng(1));
    const sd = model.stateDict();
    const w = sd.get('text_encoder.bert.encoder.layer.0.attention.self.query.weight')!.dataSync();
    const std = Math.sqrt(Array.from(w).reduce((a, v) => a + v * v, 0) / w.length);
    expect(std).toBeGreaterThan(0.15);
    expect(std).toBeLessThan(0.2);
    expect(Math.max(...Array.from(w).map(Math.abs))).toBeLessThanOrEqual(0.4 + 1e-6);
    expect(Array.from(sd.get('visual_encoder.blocks.0.norm1.weight')!.dataSync()).every((v) => v === 1)).toBe(true);
    expect(Array.from(sd.get('text_encoder.bert.embeddings.LayerNorm.bias')!.dataSync()).every((v) => v === 0)).toBe(true);
    expect(Array.from(sd.get('itm_head.bias')!.dataSync()).every((v) => v === 0)).toBe(true);
    expect(sd.get('temp')!.dataSync()[0]).toBeCloseTo(0.07, 6);
    for (const [k, t] of sd) {
      if (!k.includes('_m.')) continue;
      const online = sd.get(k.replace(/^(\w+)_m\./, '$1.'))!;
      expect(Array.from(t.dataSync()), k).toEqual(Array.from(online.dataSync()));
    }
    model.dispose();
  });
});

describe('ALBEF retrieval (ITC top-k re-ranked by ITM)', () => {
  it('k = 0 is ITC only; with k the top-k get the ITM logit of class 1 and the rest -100', () => {
    const model = new Albef(albefConfig('tiny'), new Rng(0));
    const data = batch(9, 5);
    const texts = { inputIds: data.inputIds, attentionMask: data.attentionMask, seqLength: T };
    const plain = albefRetrievalScores(model, data.pixels, texts, { k: 0 });
    expect(plain.i2t).toEqual(plain.itc);
    const k = 2;
    const before = tf.memory().numTensors;
    const s = albefRetrievalScores(model, data.pixels, texts, { k, batchSize: 2, pairBatchSize: 3 });
    expect(tf.memory().numTensors).toBe(before);
    expect(s.itc).toEqual(plain.itc);
    const n = 5;
    for (let i = 0; i < n; i++) {
      const top = new Set(topK(s.itc.subarray(i * n, (i + 1) * n), k));
      for (let t = 0; t < n; t++) {
        if (!top.has(t)) expect(s.i2t[i * n + t]).toBe(OUTSIDE_TOP_K);
      }
    }
    // One re-ranked entry against a direct fusion pass.
    const i = 3;
    const t = topK(s.itc.subarray(i * n, (i + 1) * n), 1)[0]!;
    model.eval();
    const direct = tf.tidy(() => {
      const img = model.encodeImage(tf.slice(data.pixels, [i, 0, 0, 0], [1, -1, -1, -1]));
      const ids = tf.tensor2d(data.inputIds.subarray(t * T, (t + 1) * T), [1, T], 'int32');
      const mask = tf.tensor2d(data.attentionMask.subarray(t * T, (t + 1) * T), [1, T], 'int32');
      return model.itmLogits(model.fuse(model.encodeText(ids, mask), mask, img)).dataSync()[1]!;
    });
    expect(s.i2t[i * n + t]).toBeCloseTo(direct, 4);
    // Each column of t2i has exactly k re-scored images.
    for (let tt = 0; tt < n; tt++) {
      let scored = 0;
      for (let ii = 0; ii < n; ii++) if (s.t2i[ii * n + tt] !== OUTSIDE_TOP_K) scored++;
      expect(scored).toBe(k);
    }
    data.pixels.dispose();
    model.dispose();
  });

  it('re-ranking fixes an ITC ranking within the top-k, and cannot reach past it', () => {
    // 3 images, 3 texts, text t belongs to image t. ITC ranks the right text second for each
    // image; ITM (inside the top-2) ranks it first.
    const itc = Float32Array.from([0.5, 0.9, 0.1, 0.1, 0.5, 0.9, 0.9, 0.1, 0.5]);
    const itm = Float32Array.from([3, 1, OUTSIDE_TOP_K, OUTSIDE_TOP_K, 3, 1, 1, OUTSIDE_TOP_K, 3]);
    const scores: RetrievalScores = { numImages: 3, numTexts: 3, itc, i2t: itm, t2i: itm, k: 2 };
    expect(itcRetrievalMetrics(scores, [0, 1, 2]).imageToText.recall[1]).toBe(0);
    const r = retrievalMetrics(scores, [0, 1, 2]);
    expect(r.imageToText.recall[1]).toBe(100);
    expect(r.textToImage.recall[1]).toBe(100);
    // The right text outside the top-k stays at -100 whatever ITM would say.
    const outside = Float32Array.from([OUTSIDE_TOP_K, 3, 1, 1, OUTSIDE_TOP_K, 3, 3, 1, OUTSIDE_TOP_K]);
    expect(retrievalMetrics({ ...scores, i2t: outside, t2i: outside }, [0, 1, 2]).imageToText.recall[1]).toBe(0);
  });
});
