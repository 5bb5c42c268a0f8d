// CoCa's ablation adapter (the model contract's `ablation`, run by `vl ablate`): one variant of CoCa for
// one seed, trained with core's Trainer on the tokenised synthetic scenes and evaluated by contrastive
// retrieval (Recall@K from the pooled image query and the text CLS) and the held-out captioning loss.
// The variants switch the objectives: `caption: { weight: 0 }` is a contrastive-only model (CLIP-like,
// with CoCa's towers), weights 1 and 2 are CoCa (the paper uses 2).
import * as tf from '@tensorflow/tfjs-core';
import { type AblationAdapter, type AblationData, type CurvePoint, finalLoss, IMAGE_NORMS, retrievalRecall, Rng, VlError } from '@vl/core';
import { Trainer } from '@vl/core/node';
import { cocaPreset, openClipConfigToJson, parseOpenClipConfig } from './config.js';
import { captionLoss, cocaLoss } from './loss.js';
import { CoCa } from './model.js';
import { bertToOpenClipIds } from './text.js';

interface Batch {
  pixels: Float32Array;
  ids: Int32Array;
  batchSize: number;
}

/** The ablation data's WordPiece rows ([CLS] w… [SEP] [PAD]…) in open_clip's layout, `context` wide. */
export function ablationRows(data: AblationData, set: 'train' | 'eval', context: number): Int32Array {
  const caps = data[set].captions;
  const L = caps.seqLength;
  const special = new Set([data.tokens.cls, data.tokens.sep, data.tokens.pad]);
  const out = new Int32Array(caps.imageOf.length * context);
  for (let p = 0; p < caps.imageOf.length; p++) {
    const words = Array.from(caps.inputIds.subarray(p * L, (p + 1) * L)).filter((id) => !special.has(id));
    out.set(bertToOpenClipIds(words, data.vocabSize + 2, context), p * context);
  }
  return out;
}

function* batches(data: AblationData, rows: Int32Array, context: number, batchSize: number, seed: number, epoch: number): Generator<Batch> {
  const { images, captions } = data.train;
  const n = captions.imageOf.length;
  const per = 3 * images.size * images.size;
  const order = new Rng(seed).fork(`epoch-${epoch}`).shuffle(Array.from({ length: n }, (_, i) => i));
  for (let s = 0; s + batchSize <= n; s += batchSize) {
    const idx = order.slice(s, s + batchSize);
    const pixels = new Float32Array(batchSize * per);
    const ids = new Int32Array(batchSize * context);
    idx.forEach((p, k) => {
      const img = captions.imageOf[p] as number;
      pixels.set(images.pixels.subarray(img * per, (img + 1) * per), k * per);
      ids.set(rows.subarray(p * context, (p + 1) * context), k * context);
    });
    yield { pixels, ids, batchSize };
  }
}

export const cocaAblation: AblationAdapter = {
  imageNorm: IMAGE_NORMS.clip,
  async train(mc, variant, seed, data, onStep) {
    if (mc.preset !== 'tiny' && mc.preset !== 'base') throw new VlError('CONFIG_INVALID', `preset must be tiny or base, got ${mc.preset}`);
    // The runner leaves the model's sections to the adapter: CoCa reads only visionConfig.
    const unknown = Object.keys(mc).filter((k) => k !== 'preset' && k !== 'visionConfig');
    if (unknown.length) {
      throw new VlError('CONFIG_INVALID', `CoCa's ablation takes modelConfig.preset and visionConfig, not ${unknown.join(', ')}`, {
        subject: 'ablation config modelConfig',
      });
    }
    const size = data.train.images.size;
    const context = data.train.captions.seqLength;
    const preset = cocaPreset(mc.preset, { vocabSize: data.vocabSize + 2, imageSize: size });
    // `modelConfig.visionConfig` overrides (camelCase), e.g. { contrastivePool: 'mean' } for the pooling ablation.
    Object.assign(preset.modelCfg.visionCfg, (mc.visionConfig ?? {}) as Record<string, unknown>);
    preset.modelCfg.textCfg.contextLength = context;
    preset.modelCfg.multimodalCfg!.contextLength = context;
    const base = parseOpenClipConfig(openClipConfigToJson(preset), 'ablation modelConfig');
    const model = new CoCa(base, { seed });
    model.train();
    const o = variant.objectives;
    const w = (name: string, dflt: number) => (o[name]?.enabled === false ? 0 : (o[name]?.weight ?? dflt));
    const clipW = w('contrastive', 1);
    const capW = w('caption', 2);
    const rows = ablationRows(data, 'train', context);
    const t = variant.train;
    const curve: CurvePoint[] = [];
    const trainer = new Trainer<Batch>({
      model,
      forward: (b) => {
        const pixels = tf.tensor4d(b.pixels, [b.batchSize, 3, size, size]);
        const ids = tf.tensor2d(b.ids, [b.batchSize, context], 'int32');
        const f = model.forward(pixels, ids);
        const l = cocaLoss({ ...f, labels: f.labels as tf.Tensor }, { clipLossWeight: clipW, captionLossWeight: capW });
        const losses: Record<string, tf.Scalar> = {};
        if (clipW) losses.contrastive = tf.div(l.contrastive, clipW) as tf.Scalar;
        if (capW) losses.caption = tf.div(l.caption, capW) as tf.Scalar;
        return { loss: l.total, losses, metrics: {} };
      },
      afterStep: () => model.clampLogitScale(),
      stepsPerEpoch: Math.max(1, Math.floor(data.train.captions.imageOf.length / t.batchSize)),
      optimizer: { lr: t.lr, betas: [0.9, 0.98], eps: 1e-6, weightDecay: t.weightDecay },
      schedule: { kind: 'cosine', lr: t.lr, minLr: t.minLr, totalSteps: t.steps, warmupSteps: t.warmupSteps, warmupInitLr: t.minLr },
      maxGradNorm: t.maxGradNorm ?? 1,
      seed: new Rng(seed).fork('trainer').seed(),
      onProgress: ({ record }) => {
        curve.push({ step: record.step, loss: record.loss, losses: record.losses });
        onStep?.(record);
      },
    });
    const started = performance.now();
    try {
      await trainer.fit((epoch) => batches(data, rows, context, t.batchSize, seed, epoch), { maxSteps: t.steps, resume: false });
    } finally {
      trainer.dispose();
    }
    const trainSeconds = (performance.now() - started) / 1000;
    model.eval();
    return {
      curve,
      trainSeconds,
      evaluate() {
        const ev = data.eval;
        const evalRows = ablationRows(data, 'eval', context);
        const numTexts = ev.captions.imageOf.length;
        return tf.tidy(() => {
          const pixels = tf.tensor4d(ev.images.pixels, [ev.images.count, 3, ev.images.size, ev.images.size]);
          const ids = tf.tensor2d(evalRows, [numTexts, context], 'int32');
          const img = model.encodeImageTokens(pixels);
          const txt = model.encodeText(ids);
          const sims = tf.matMul(img.latent, txt, false, true).dataSync();
          const r = retrievalRecall({ sims, numImages: ev.images.count, numTexts, textToImage: ev.captions.imageOf });
          // Held-out captioning CE: each caption against its own image's tokens.
          const embs = tf.gather(img.tokens, tf.tensor1d(Array.from(ev.captions.imageOf), 'int32'));
          const f = model.forward(null, ids, {
            imageLatent: tf.gather(img.latent, tf.tensor1d(Array.from(ev.captions.imageOf), 'int32')) as tf.Tensor2D,
            imageEmbs: embs as tf.Tensor3D,
          });
          const ce = captionLoss(f.logits, f.labels as tf.Tensor, model.padId).dataSync()[0] as number;
          return {
            tr_r1: r.imageToText.recall[1] as number,
            tr_r5: r.imageToText.recall[5] as number,
            ir_r1: r.textToImage.recall[1] as number,
            ir_r5: r.textToImage.recall[5] as number,
            r_mean: r.meanRecall,
            caption_ce: ce,
            final_loss: finalLoss(curve),
          };
        });
      },
      dispose() {
        model.dispose();
      },
    };
  },
};
