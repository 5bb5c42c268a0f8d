#!/usr/bin/env node
// How much of each shared part of BLIP tiny each pretraining loss moves at initialisation (docs/training.md,
// "Why ITM did not learn"): the L2 norm of the gradient of ITC, ITM and LM, each on its own, over the vision
// tower, the text encoder's self-attention + FFN + embeddings (which all three share), the cross-attention
// (ITM and, through the shared decoder, LM) and the ITM head; one batch of 32 synthetic scenes at 32 px,
// random ITM negatives, in-batch ITC at temperature 0.07. Writes a JSON file when given one.
// usage: node scripts/itm-grad-share.mjs [OUT.json]
import { writeFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { BertTokenizer, drawScene, initRuntime, planSynthDataset, Rng, synthVocabulary } from '@vl/core';
import { BLIP_ADDED_TOKENS, BLIP_IMAGE_NORM, BlipForPretraining, pretrainConfig } from '../dist/index.js';
await initRuntime({ backend: 'wasm' });
const tok = BertTokenizer.fromVocab([...synthVocabulary(), ...BLIP_ADDED_TOKENS], { addedTokens: BLIP_ADDED_TOKENS });
const S = 32,
  B = 32;
const recs = planSynthDataset({ out: '', images: 64, seed: 0, imageSize: S }).records.slice(0, B);
const plane = S * S;
const pixels = new Float32Array(B * 3 * plane);
recs.forEach((rec, n) => {
  const px = drawScene(rec.scene, S, new Rng(0).fork(`pixels/${rec.id}`));
  for (let i = 0; i < plane; i++)
    for (let c = 0; c < 3; c++)
      pixels[n * 3 * plane + c * plane + i] = (px[i * 3 + c] / 255 - BLIP_IMAGE_NORM.mean[c]) / BLIP_IMAGE_NORM.std[c];
});
const enc = tok.encodeBatch(
  recs.map((r) => r.captions[0]),
  { maxLength: 24, truncation: true, padding: 'max_length' },
);
const batch = {
  pixels,
  imageSize: S,
  inputIds: enc.inputIds,
  attentionMask: enc.attentionMask,
  batchSize: B,
  seqLength: enc.seqLength,
  imageIds: recs.map((_, i) => i),
};
const model = new BlipForPretraining(
  pretrainConfig('tiny', tok, S),
  { momentumDistillation: false, useQueue: false, negatives: 'random' },
  new Rng(0).fork('init'),
  tok.tokenToId('[ENC]'),
);
const params = model.namedParameters().filter(([, p]) => p.trainable);
const rows = [];
const groups = {
  'text self-attn+FFN+emb (shared by ITC, ITM, LM)': (k) => k.startsWith('text_encoder.') && !k.includes('crossattention'),
  'cross-attention (ITM, LM)': (k) => k.includes('crossattention'),
  'vision tower': (k) => k.startsWith('vision_model.'),
  itm_head: (k) => k.startsWith('itm_head'),
};
for (const loss of ['itc', 'itm', 'lm']) {
  const { grads, value } = tf.variableGrads(
    () => {
      const o = model.forward(batch, { rng: new Rng(1), alpha: 0 });
      return o.losses[loss];
    },
    params.map(([, p]) => p),
  );
  const byName = new Map(params.map(([k, p]) => [p.name, k]));
  const sums = {};
  for (const [v, g] of Object.entries(grads)) {
    const k = byName.get(v);
    for (const [gname, f] of Object.entries(groups)) if (f(k)) sums[gname] = (sums[gname] ?? 0) + tf.sum(tf.square(g)).dataSync()[0];
  }
  const norms = Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, Math.sqrt(v)]));
  rows.push({ loss, value: value.dataSync()[0], gradientNorm: norms });
  console.log(
    loss,
    value.dataSync()[0].toFixed(3),
    Object.entries(norms)
      .map(([k, v]) => `${k}: ${v.toExponential(2)}`)
      .join(' | '),
  );
  tf.dispose([value, ...Object.values(grads)]);
}
// How much the [ENC] state varies across captions after each text layer (no image: the part the caption
// contributes to the cross-attention query), against its variance across features (1 after LayerNorm).
const encIds = Int32Array.from(batch.inputIds);
for (let r = 0; r < B; r++) encIds[r * batch.seqLength] = tok.tokenToId('[ENC]');
const encVariance = tf.tidy(() => {
  const out = model.text_encoder.forward({
    inputIds: tf.tensor2d(encIds, [B, batch.seqLength], 'int32'),
    attentionMask: tf.tensor2d(batch.attentionMask, [B, batch.seqLength], 'int32'),
    outputHiddenStates: true,
  });
  return out.hiddenStates.map((h) => {
    const cls = tf.squeeze(tf.slice(h, [0, 0, 0], [-1, 1, -1]), [1]); // [B, D]
    return {
      acrossCaptions: tf.mean(tf.moments(cls, 0).variance).dataSync()[0],
      acrossFeatures: tf.mean(tf.moments(cls, 1).variance).dataSync()[0],
    };
  });
});
encVariance.forEach((v, l) =>
  console.log(
    `[ENC] after ${l} text layers: variance across captions ${v.acrossCaptions.toFixed(4)}, across features ${v.acrossFeatures.toFixed(4)}`,
  ),
);
if (process.argv[2])
  writeFileSync(
    process.argv[2],
    `${JSON.stringify({ command: 'node scripts/itm-grad-share.mjs', batch: B, imageSize: S, rows, encVariance }, null, 2)}\n`,
  );
model.dispose();
