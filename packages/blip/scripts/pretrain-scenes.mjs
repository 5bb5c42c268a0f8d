#!/usr/bin/env node
// Trains the embedded `scenes-tiny` captioner and filter that ship inside @vl/blip
// (`blip capfilt --captioner scenes-tiny --filter scenes-tiny`; docs/capfilt.md, docs/training.md).
// Three stages, as BLIP trains its CapFilt models, on clean synthetic scenes only:
//   1. pretraining: ITC + ITM + LM, one `BlipForPretraining` (decoder sharing all but self-attention);
//   2. captioner: the pretrained weights fine-tuned with LM alone (a second clean set of scenes);
//   3. filter: the pretrained weights fine-tuned with ITC + ITM with hard negatives (the same set).
// From-scratch deviations, measured in docs/training.md ("Why ITM did not learn…"): ITM loss weight 4
// and random ITM negatives for the first --random-negatives-steps steps of pretraining, no momentum
// distillation and no queue. Every --eval-every steps the ITM head is scored on held-out scenes
// (seed 1): positives, another scene's caption, one wrong attribute, keyword soup; one JSON line per
// record to --log (itm-report.mjs-style curves). The scenes of `npm run demo` (seed 0) are not used.
// Writes OUT/captioner and OUT/filter (HF layout: config.json, model.safetensors, vocab.txt).
// Needs `npx tsup` in packages/blip first. Run it under `nice` on a shared machine.
// usage: node scripts/pretrain-scenes.mjs [--out models/scenes-tiny] [--log ../../docs/training/scenes-tiny/curves.jsonl]
//   [--pretrain-steps 2000] [--captioner-steps 300] [--filter-steps 600] [--images 4000] [--image-size 32]
//   [--batch 32] [--lr 1e-3] [--itm 4] [--random-negatives-steps 300] [--eval-every 100] [--seed 0] [--backend wasm]
//   [--text-width 32 (the text side's width: BERT encoder with its cross-attention, i.e. the fusion path
//   the ITM head reads, and the decoder; MLP 2× as the preset; the ViT stays at 32)]
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
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
const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const o = {
  out: flag('out', here('../models/scenes-tiny')),
  log: flag('log', here('../../../docs/training/scenes-tiny/curves.jsonl')),
  pretrainSteps: num('pretrain-steps', 2000),
  captionerSteps: num('captioner-steps', 300),
  filterSteps: num('filter-steps', 600),
  images: num('images', 4000),
  imageSize: num('image-size', 32),
  batch: num('batch', 32),
  lr: num('lr', 1e-3),
  itm: num('itm', 4),
  randomNegativesSteps: num('random-negatives-steps', 300),
  evalEvery: num('eval-every', 100),
  evalImages: num('eval-images', 200),
  seed: num('seed', 0),
  textWidth: num('text-width', 32),
  maxLength: 30,
  backend: flag('backend', 'wasm'),
};
await initRuntime({ backend: o.backend });
const t0 = Date.now();
const clock = () => `${((Date.now() - t0) / 1000).toFixed(0)}s`;

// Tokenizer: the synthetic vocabulary plus BLIP's [DEC] / [ENC]; written as vocab.txt beside the weights.
const vocab = [...synthVocabulary(), ...BLIP_ADDED_TOKENS];
const tok = BertTokenizer.fromVocab(vocab, { addedTokens: BLIP_ADDED_TOKENS });
const vocabDir = mkdtempSync(join(tmpdir(), 'scenes-tiny-vocab-'));
writeFileSync(join(vocabDir, 'vocab.txt'), `${vocab.join('\n')}\n`);
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

/** A clean training set: all scenes of `seed`, 5 captions each (one per template). */
function cleanSet(seed, images) {
  const records = planSynthDataset({ out: '', images, seed, imageSize: o.imageSize, captionsPerImage: 5, splits: [1, 0, 0] }).records;
  const texts = [];
  const imageOf = [];
  records.forEach((r, i) => r.captions.forEach((c) => (texts.push(c), imageOf.push(i))));
  return { pixels: render(records, seed), enc: encode(texts), imageOf, n: texts.length, images: records.length };
}
// Pretraining on scenes of seed 100; the captioner and filter fine-tune on a second clean set (seed 101),
// as BLIP pretrains on web pairs and fine-tunes on COCO. Neither is the demo's seed 0 nor the held-out seed 1.
const pretrainSet = cleanSet(100, o.images);
const finetuneSet = cleanSet(101, Math.round(o.images / 2));

// Held-out scenes (seed 1, every caption corrupted): those with both a one-attribute-wrong caption and a
// keyword soup, scored with the clean caption, those two, and another scene's caption.
const held = planSynthDataset({
  out: '',
  images: o.evalImages * 8,
  seed: 1,
  imageSize: o.imageSize,
  captionsPerImage: 3,
  noise: 1,
  splits: [1, 0, 0],
})
  .records.map((r) => {
    const k = r.noise.findIndex((n) => n?.kind === 'wrong_attribute');
    const s = r.noise.findIndex((n) => n?.kind === 'keyword_soup');
    return k < 0 || s < 0 ? null : { rec: r, clean: r.noise[k].clean, wrong: r.captions[k], soup: r.captions[s] };
  })
  .filter(Boolean)
  .slice(0, o.evalImages);
const heldPixels = render(
  held.map((h) => h.rec),
  1,
);
const nHeld = held.length;
const pickOther = new Rng(7);
const evalSets = {
  positive: encode(held.map((h) => h.clean)),
  otherImage: encode(held.map((_, i) => held[(i + 1 + pickOther.int(nHeld - 1)) % nHeld].clean)),
  wrongAttribute: encode(held.map((h) => h.wrong)),
  keywordSoup: encode(held.map((h) => h.soup)),
};

const config = pretrainConfig('tiny', tok, o.imageSize);
// The tiny preset's text side is 32 wide with a 64-wide MLP; --text-width scales both (docs/training.md,
// "A wider fusion path"). Cross-attention still reads the 32-wide image features (encoderHiddenSize).
if (o.textWidth !== config.textConfig.hiddenSize) {
  config.textConfig.hiddenSize = o.textWidth;
  config.textConfig.intermediateSize = 2 * o.textWidth;
}
const encId = tok.tokenToId('[ENC]');
const baseOptions = { momentumDistillation: false, useQueue: false, labelSmoothing: 0.1, queueSize: 4 * o.batch };

/** ITM P(match) on the held-out sets: accuracy at BLIP's 0.5 rule, mean P, AUC against positives. */
function evaluate(model) {
  model.eval();
  const res = {};
  const scores = {};
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
    scores[name] = Float32Array.from(p.dataSync());
    p.dispose();
    const match = name === 'positive';
    let correct = 0;
    let meanP = 0;
    for (const q of scores[name]) {
      if (q >= 0.5 === match) correct++;
      meanP += q / nHeld;
    }
    res[name] = { acc: correct / nHeld, meanP };
  }
  image.dispose();
  model.train();
  for (const k of ['otherImage', 'wrongAttribute', 'keywordSoup']) res[k].auc = auc(scores.positive, scores[k]);
  return res;
}
/** P(a positive scores above a negative), ties counting half. */
function auc(pos, neg) {
  let wins = 0;
  for (const p of pos) for (const q of neg) wins += p > q ? 1 : p === q ? 0.5 : 0;
  return wins / (pos.length * neg.length);
}

mkdirSync(dirname(o.log), { recursive: true });
writeFileSync(o.log, '');
const log = (rec) => appendFileSync(o.log, `${JSON.stringify(rec)}\n`);
log({
  kind: 'config',
  command: `node scripts/pretrain-scenes.mjs ${args.join(' ')}`,
  options: { ...o, out: undefined, log: undefined },
  pretrainPairs: pretrainSet.n,
  finetunePairs: finetuneSet.n,
  heldOut: nHeld,
});

/** One epoch of (image, caption) pairs of `set`, shuffled by (seed, stage, epoch). */
function* batches(set, stage, epoch) {
  const L = set.enc.seqLength;
  const per = 3 * o.imageSize * o.imageSize;
  const order = new Rng(o.seed).fork(`${stage}/epoch-${epoch}`).shuffle(Array.from({ length: set.n }, (_, i) => i));
  for (let s = 0; s + o.batch <= set.n; s += o.batch) {
    const idx = order.slice(s, s + o.batch);
    const pixels = new Float32Array(o.batch * per);
    const inputIds = new Int32Array(o.batch * L);
    const attentionMask = new Int32Array(o.batch * L);
    const imageIds = idx.map((p, k) => {
      const img = set.imageOf[p];
      pixels.set(set.pixels.subarray(img * per, (img + 1) * per), k * per);
      inputIds.set(set.enc.inputIds.subarray(p * L, (p + 1) * L), k * L);
      attentionMask.set(set.enc.attentionMask.subarray(p * L, (p + 1) * L), k * L);
      return img;
    });
    yield { pixels, imageSize: o.imageSize, inputIds, attentionMask, batchSize: o.batch, seqLength: L, imageIds };
  }
}

/** Trains `model` for `steps` on `set` (AdamW, cosine with 20 warmup steps), logging losses and evals. */
async function stage(name, model, set, steps) {
  if (steps <= 0) return;
  const trainer = new Trainer({
    model,
    forward: (batch, ctx) => model.forward(batch, ctx),
    afterStep: () => model.afterStep(),
    stepsPerEpoch: Math.floor(set.n / o.batch),
    optimizer: { lr: o.lr, weightDecay: 0.05 },
    schedule: { kind: 'cosine', lr: o.lr, minLr: o.lr / 100, totalSteps: steps, warmupSteps: 20, warmupInitLr: o.lr / 100 },
    alpha: 0,
    seed: new Rng(o.seed).fork(`trainer/${name}`).seed(),
    onProgress: ({ step, record }) => {
      log({ kind: 'step', stage: name, step, lr: record.lr, losses: record.losses, itmAcc: record.metrics.itmAcc });
      if (name !== 'captioner' && (step % o.evalEvery === 0 || step === steps)) {
        const ev = evaluate(model);
        log({ kind: 'eval', stage: name, step, ...ev });
        const f = (k) => `${ev[k].acc.toFixed(2)}/${ev[k].auc.toFixed(2)}`;
        console.log(
          `[${clock()}] ${name} ${step}/${steps} losses ${Object.entries(record.losses)
            .map(([k, v]) => `${k} ${v.toFixed(3)}`)
            .join(
              ' ',
            )} | kept positives ${ev.positive.acc.toFixed(2)}; removed/AUC other ${f('otherImage')} wrong ${f('wrongAttribute')} soup ${f('keywordSoup')}`,
        );
      } else if (step % o.evalEvery === 0) console.log(`[${clock()}] ${name} ${step}/${steps} lm ${record.losses.lm?.toFixed(3)}`);
    },
  });
  const ts = Date.now();
  await trainer.fit((epoch) => batches(set, name, epoch), { maxSteps: steps, resume: false });
  log({ kind: 'done', stage: name, steps, seconds: (Date.now() - ts) / 1000 });
  trainer.optimizer.dispose();
}

/** A fresh `BlipForPretraining` with `options`, holding `from`'s weights when given. */
function modelWith(options, from) {
  const m = new BlipForPretraining(config, { ...baseOptions, ...options }, new Rng(o.seed).fork('init'), encId ?? null);
  if (from) m.loadStateDict(from.stateDict(), { source: 'pretraining stage' });
  m.tokenizer = tok;
  m.tokenizerDir = vocabDir;
  return m;
}

// 1. Pretraining: ITC + ITM (weight o.itm; random negatives first, then hard) + LM.
const pre = modelWith({
  objectives: { itc: { weight: 1 }, itm: { weight: o.itm }, lm: { weight: 1 } },
  negatives: 'hard',
  randomNegativesSteps: o.randomNegativesSteps,
});
log({ kind: 'eval', stage: 'pretrain', step: 0, ...evaluate(pre) });
await stage('pretrain', pre, pretrainSet, o.pretrainSteps);

// 2. Captioner: LM alone.
const capTrain = modelWith({ objectives: { itc: { enabled: false }, itm: { enabled: false }, lm: { weight: 1 } } }, pre);
await stage('captioner', capTrain, finetuneSet, o.captionerSteps);
const captioner = capTrain.toConditionalGeneration();
rmSync(join(o.out, 'captioner'), { recursive: true, force: true });
await captioner.savePretrained(join(o.out, 'captioner'));
captioner.dispose();
capTrain.dispose();

// 3. Filter: ITC + ITM with hard negatives (mined by ITC similarity, as BLIP's fine-tuning for retrieval).
const filtTrain = modelWith(
  { objectives: { itc: { weight: 1 }, itm: { weight: o.itm }, lm: { enabled: false } }, negatives: 'hard', randomNegativesSteps: 0 },
  pre,
);
pre.dispose();
await stage('filter', filtTrain, finetuneSet, o.filterSteps);
const filter = filtTrain.toRetrieval();
rmSync(join(o.out, 'filter'), { recursive: true, force: true });
await filter.savePretrained(join(o.out, 'filter'));
filter.dispose();
filtTrain.dispose();
rmSync(vocabDir, { recursive: true, force: true });
log({ kind: 'end', seconds: (Date.now() - t0) / 1000 });
console.log(`[${clock()}] wrote ${join(o.out, 'captioner')} and ${join(o.out, 'filter')}`);
