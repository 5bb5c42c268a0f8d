#!/usr/bin/env node
// ITM learning curves for BLIP pretraining on the synthetic scenes (issue 15, docs/training.md):
// trains `BlipForPretraining` (tiny) in memory and logs, per step, the training ITM loss and
// accuracy, and every --eval-every steps the ITM head's accuracy and mean P(match) on held-out
// scenes for three kinds of pair: positives (the image with its own caption), random negatives
// (another scene's caption) and hard negatives (its own caption with one attribute changed: core's
// `wrong_attribute` noise). One JSON line per record to --out. Needs `npx tsup` in packages/blip.
// usage: node scripts/itm-curves.mjs --out FILE.jsonl [--label NAME] [--steps 300] [--image-size 32]
//   [--images 1000] [--batch 32] [--lr 1e-3] [--negatives hard|random] [--itc 1] [--itm 1] [--lm 1]
//   [--random-negatives-steps 0] [--init-std 0.15] [--momentum 0.995 (turns on distillation + queue)] [--seed 0] [--eval-every 25]
//   [--eval-images 200] [--itm-lr-mult 1] [--backend wasm]
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { BertTokenizer, drawScene, initRuntime, planSynthDataset, Rng, synthVocabulary } from '@vl/core';
import { Trainer } from '@vl/core/node';
import { BLIP_ADDED_TOKENS, BLIP_IMAGE_NORM, BlipForPretraining, pretrainConfig } from '../dist/index.js';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const num = (name, fallback) => Number(flag(name, String(fallback)));
const o = {
  label: flag('label', 'run'),
  out: flag('out', 'runs/itm-curves.jsonl'),
  steps: num('steps', 300),
  imageSize: num('image-size', 32),
  images: num('images', 1000),
  captionsPerImage: num('captions', 3),
  batch: num('batch', 32),
  lr: num('lr', 1e-3),
  warmup: num('warmup', 20),
  negatives: flag('negatives', 'hard'),
  randomNegativesSteps: num('random-negatives-steps', 0),
  weights: { itc: num('itc', 1), itm: num('itm', 1), lm: num('lm', 1) },
  initStd: flag('init-std', null),
  momentum: flag('momentum', null),
  seed: num('seed', 0),
  evalEvery: num('eval-every', 25),
  evalImages: num('eval-images', 200),
  maxLength: num('max-length', 24),
  backend: flag('backend', 'wasm'),
};
await initRuntime({ backend: o.backend });

// Tokenizer: the synthetic vocabulary plus BLIP's [DEC] / [ENC].
const tok = BertTokenizer.fromVocab([...synthVocabulary(), ...BLIP_ADDED_TOKENS], { addedTokens: BLIP_ADDED_TOKENS });
const encode = (texts) => tok.encodeBatch(texts, { maxLength: o.maxLength, truncation: true, padding: 'max_length' });

/** CHW pixels normalised as BLIP's processor does, drawn exactly as `vl data synth` draws them. */
function render(records, seed) {
  const s = o.imageSize;
  const plane = s * s;
  const { mean, std } = BLIP_IMAGE_NORM;
  const pixels = new Float32Array(records.length * 3 * plane);
  records.forEach((rec, n) => {
    const px = drawScene(rec.scene, s, new Rng(seed).fork(`pixels/${rec.id}`));
    for (let i = 0; i < plane; i++)
      for (let c = 0; c < 3; c++) pixels[n * 3 * plane + c * plane + i] = (px[i * 3 + c] / 255 - mean[c]) / std[c];
  });
  return pixels;
}

// Training scenes: seed 0, the train split, clean captions.
const train = planSynthDataset({
  out: '',
  images: o.images,
  seed: 0,
  imageSize: o.imageSize,
  captionsPerImage: o.captionsPerImage,
}).records.filter((r) => r.split === 'train');
const trainPixels = render(train, 0);
const trainTexts = [];
const trainImageOf = [];
train.forEach((r, i) => r.captions.forEach((c) => (trainTexts.push(c), trainImageOf.push(i))));
const trainEnc = encode(trainTexts);

// Held-out scenes: another seed, every caption corrupted, so each record carries its clean caption
// and (for about a third of the captions) a one-attribute-wrong version of it.
const heldRecords = planSynthDataset({
  out: '',
  images: o.evalImages * 3,
  seed: 1,
  imageSize: o.imageSize,
  captionsPerImage: 3,
  noise: 1,
  splits: [1, 0, 0],
})
  .records.map((r) => {
    const k = r.noise.findIndex((n) => n?.kind === 'wrong_attribute');
    return k < 0 ? null : { rec: r, clean: r.noise[k].clean, wrong: r.captions[k] };
  })
  .filter(Boolean)
  .slice(0, o.evalImages);
const heldPixels = render(
  heldRecords.map((h) => h.rec),
  1,
);
const nHeld = heldRecords.length;
const pickOther = new Rng(7);
const evalSets = {
  positive: encode(heldRecords.map((h) => h.clean)),
  random: encode(heldRecords.map((_, i) => heldRecords[(i + 1 + pickOther.int(nHeld - 1)) % nHeld].clean)),
  hard: encode(heldRecords.map((h) => h.wrong)),
};

const base = pretrainConfig('tiny', tok, o.imageSize);
const config = o.initStd === null ? base : { ...base, initializerRange: Number(o.initStd) };
const objectives = Object.fromEntries(Object.entries(o.weights).map(([k, w]) => [k, w > 0 ? { weight: w } : { enabled: false }]));
const root = new Rng(o.seed);
const model = new BlipForPretraining(
  config,
  {
    objectives,
    negatives: o.negatives,
    randomNegativesSteps: o.randomNegativesSteps,
    momentumDistillation: o.momentum !== null,
    momentum: o.momentum === null ? 0.995 : Number(o.momentum),
    useQueue: o.momentum !== null,
    queueSize: 4 * o.batch,
    labelSmoothing: 0.1,
  },
  root.fork('init'),
  tok.tokenToId('[ENC]') ?? null,
);

/** One epoch of (image, caption) pairs, shuffled by (seed, epoch). */
function* batches(epoch) {
  const n = trainTexts.length;
  const L = trainEnc.seqLength;
  const per = 3 * o.imageSize * o.imageSize;
  const order = new Rng(o.seed).fork(`epoch-${epoch}`).shuffle(Array.from({ length: n }, (_, i) => i));
  for (let s = 0; s + o.batch <= n; s += o.batch) {
    const idx = order.slice(s, s + o.batch);
    const pixels = new Float32Array(o.batch * per);
    const inputIds = new Int32Array(o.batch * L);
    const attentionMask = new Int32Array(o.batch * L);
    const imageIds = idx.map((p, k) => {
      const img = trainImageOf[p];
      pixels.set(trainPixels.subarray(img * per, (img + 1) * per), k * per);
      inputIds.set(trainEnc.inputIds.subarray(p * L, (p + 1) * L), k * L);
      attentionMask.set(trainEnc.attentionMask.subarray(p * L, (p + 1) * L), k * L);
      return img;
    });
    yield { pixels, imageSize: o.imageSize, inputIds, attentionMask, batchSize: o.batch, seqLength: L, imageIds };
  }
}

/** ITM P(match) of the held-out images with each evaluation set's captions. */
function evaluate() {
  model.eval();
  const result = {};
  const scores = {};
  let lossSum = 0;
  const encId = tok.tokenToId('[ENC]');
  const image = tf.tidy(() => model.vision_model.forward(tf.tensor4d(heldPixels, [nHeld, 3, o.imageSize, o.imageSize])).lastHiddenState);
  for (const [name, enc] of Object.entries(evalSets)) {
    const ids = Int32Array.from(enc.inputIds);
    for (let r = 0; r < nHeld; r++) ids[r * enc.seqLength] = encId;
    const p = tf.tidy(() => {
      const h = model.text_encoder.forward({
        inputIds: tf.tensor2d(ids, [nHeld, enc.seqLength], 'int32'),
        attentionMask: tf.tensor2d(enc.attentionMask, [nHeld, enc.seqLength], 'int32'),
        encoderHiddenStates: image,
      }).lastHiddenState;
      return tf.softmax(model.itm_head.forward(tf.squeeze(tf.slice(h, [0, 0, 0], [-1, 1, -1]), [1]))).slice([0, 1], [-1, 1]);
    });
    const probs = p.dataSync();
    p.dispose();
    scores[name] = Float32Array.from(probs);
    const match = name === 'positive';
    let correct = 0;
    let meanP = 0;
    for (const q of probs) {
      if (q >= 0.5 === match) correct++;
      meanP += q / nHeld;
      lossSum -= Math.log(Math.max(1e-12, match ? q : 1 - q));
    }
    result[name] = { acc: correct / nHeld, meanP };
  }
  image.dispose();
  model.train();
  // Balanced accuracy over the two negative kinds against positives: 0.5 for a constant answer.
  result.balancedRandom = (result.positive.acc + result.random.acc) / 2;
  result.balancedHard = (result.positive.acc + result.hard.acc) / 2;
  result.loss = lossSum / (3 * nHeld);
  // Threshold-free: ROC AUC of P(match), positives against each kind of negative (0.5 = no discrimination).
  result.aucRandom = auc(scores.positive, scores.random);
  result.aucHard = auc(scores.positive, scores.hard);
  return result;
}

/** P(a positive scores above a negative), ties counting half. */
function auc(pos, neg) {
  let wins = 0;
  for (const p of pos) for (const q of neg) wins += p > q ? 1 : p === q ? 0.5 : 0;
  return wins / (pos.length * neg.length);
}

mkdirSync(dirname(o.out), { recursive: true });
writeFileSync(o.out, '');
const log = (rec) => appendFileSync(o.out, `${JSON.stringify({ label: o.label, ...rec })}\n`);
log({
  kind: 'config',
  command: `node scripts/itm-curves.mjs ${args.join(' ')}`,
  options: o,
  trainImages: train.length,
  trainPairs: trainTexts.length,
  heldOut: nHeld,
});
log({ kind: 'eval', step: 0, ...evaluate() });
const stepsPerEpoch = Math.floor(trainTexts.length / o.batch);
const trainer = new Trainer({
  model,
  forward: (batch, ctx) => model.forward(batch, ctx),
  afterStep: () => model.afterStep(),
  stepsPerEpoch,
  optimizer: { lr: o.lr, weightDecay: 0.05 },
  schedule: { kind: 'cosine', lr: o.lr, minLr: o.lr / 100, totalSteps: o.steps, warmupSteps: o.warmup, warmupInitLr: o.lr / 100 },
  alpha: o.momentum === null ? 0 : 0.4,
  seed: root.fork('trainer').seed(),
  onProgress: ({ step, record }) => {
    log({ kind: 'step', step, lr: record.lr, losses: record.losses, itmAcc: record.metrics.itmAcc, itcAcc: record.metrics.itcAcc });
    if (step % o.evalEvery === 0 || step === o.steps) {
      const ev = evaluate();
      log({ kind: 'eval', step, ...ev });
      console.log(
        `${o.label} step ${step} itm ${record.losses.itm?.toFixed(3)} acc pos ${ev.positive.acc.toFixed(2)} rand ${ev.random.acc.toFixed(2)} hard ${ev.hard.acc.toFixed(2)} auc ${ev.aucRandom.toFixed(2)}/${ev.aucHard.toFixed(2)} (p ${ev.positive.meanP.toFixed(2)}/${ev.random.meanP.toFixed(2)}/${ev.hard.meanP.toFixed(2)})`,
      );
    }
  },
});
const t0 = Date.now();
await trainer.fit((epoch) => batches(epoch), { maxSteps: o.steps, resume: false });
log({ kind: 'done', seconds: (Date.now() - t0) / 1000 });
console.log(`${o.label}: ${o.steps} steps in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
trainer.optimizer.dispose();
model.dispose();
