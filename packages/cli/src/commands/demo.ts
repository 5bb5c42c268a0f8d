// `vl demo`: a short end-to-end run on the embedded default — pick a backend, train a tiny
// dual encoder with a contrastive loss on generated pairs, checkpoint it and load it back.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Embedding, initRuntime, LayerNorm, Linear, Module, normal, Rng } from '@vl/core';
import { loadModuleFile, saveModuleFile } from '@vl/core/node';
import type { Command } from 'commander';

/** Image tower: a linear map of a feature vector; text tower: mean of token embeddings. */
class TinyDualEncoder extends Module {
  readonly visual: Linear;
  readonly tokens: Embedding;
  readonly norm: LayerNorm;

  constructor(featureDim: number, vocab: number, dim: number, rng: Rng) {
    super();
    this.visual = this.registerModule('visual_proj', new Linear(featureDim, dim, rng, { init: (shape, r) => normal(shape, r, 0.2) }));
    this.tokens = this.registerModule('word_embeddings', new Embedding(vocab, dim, rng));
    this.norm = this.registerModule('LayerNorm', new LayerNorm(dim));
  }

  /** Cosine-similarity logits between every image and every text, over a fixed temperature. */
  logits(images: tf.Tensor2D, ids: tf.Tensor2D, temperature = 0.1): tf.Tensor2D {
    return tf.tidy(() => {
      const img = l2(this.visual.forward(images));
      const txt = l2(this.norm.forward(tf.mean(this.tokens.forward(ids), 1)));
      return tf.div(tf.matMul(img, txt, false, true), temperature) as tf.Tensor2D;
    });
  }
}

function l2(x: tf.Tensor): tf.Tensor {
  return tf.div(x, tf.add(tf.norm(x, 'euclidean', -1, true), 1e-6));
}

/** Symmetric InfoNCE: the i-th image matches the i-th text. */
function contrastiveLoss(logits: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => {
    const n = logits.shape[0];
    const targets = tf.oneHot(tf.range(0, n, 1, 'int32'), n);
    const i2t = tf.losses.softmaxCrossEntropy(targets, logits);
    const t2i = tf.losses.softmaxCrossEntropy(targets, tf.transpose(logits));
    return tf.div(tf.add(i2t, t2i), 2) as tf.Scalar;
  });
}

/** Pairs where the caption's tokens are a fixed function of the concept behind the image. */
function makeBatch(rng: Rng, batch: number, featureDim: number, concepts: tf.Tensor2D, vocab: number) {
  const ids: number[][] = [];
  const which: number[] = [];
  for (let b = 0; b < batch; b++) {
    const c = rng.int(concepts.shape[0]);
    which.push(c);
    ids.push([c % vocab, (c * 7 + 3) % vocab, (c * 13 + 5) % vocab, rng.int(vocab)]);
  }
  return tf.tidy(() => {
    const base = tf.gather(concepts, tf.tensor1d(which, 'int32'));
    const noise = tf.randomNormal([batch, featureDim], 0, 0.1, 'float32', rng.seed());
    return { images: tf.add(base, noise) as tf.Tensor2D, ids: tf.tensor2d(ids, undefined, 'int32') };
  });
}

export async function runDemo(options: { steps: number; seed: number }): Promise<{ first: number; last: number }> {
  const t0 = Date.now();
  const runtime = await initRuntime();
  console.log(`backend: ${runtime.choice} — ${runtime.reason}`);
  if (runtime.kernels.replaced.length || runtime.kernels.fallbacks.length) {
    console.log(`kernels: replaced [${runtime.kernels.replaced.join(', ')}], fallbacks [${runtime.kernels.fallbacks.join(', ')}]`);
  }
  const rng = new Rng(options.seed);
  const featureDim = 32;
  const vocab = 64;
  const model = new TinyDualEncoder(featureDim, vocab, 32, rng.fork('init'));
  const concepts = tf.randomNormal([48, featureDim], 0, 1, 'float32', rng.seed()) as tf.Tensor2D;
  const params = model.trainableParameters();
  const optimizer = tf.train.adam(0.01);
  const data = rng.fork('data');
  let first = NaN;
  let last = NaN;
  for (let step = 0; step < options.steps; step++) {
    const { images, ids } = makeBatch(data, 32, featureDim, concepts, vocab);
    const cost = optimizer.minimize(() => contrastiveLoss(model.logits(images, ids)), true, params);
    const value = (await cost!.data())[0]!;
    cost!.dispose();
    images.dispose();
    ids.dispose();
    if (step === 0) first = value;
    last = value;
    if (step % 20 === 0 || step === options.steps - 1)
      console.log(`step ${String(step).padStart(3)}  contrastive loss ${value.toFixed(4)}`);
  }
  optimizer.dispose();

  const dir = mkdtempSync(join(tmpdir(), 'vl-demo-'));
  try {
    const file = join(dir, 'model.safetensors');
    await saveModuleFile(model, file, { format: 'pt', demo: 'vl' });
    const twin = new TinyDualEncoder(featureDim, vocab, 32, new Rng(options.seed + 1));
    await loadModuleFile(twin, file);
    const { images, ids } = makeBatch(new Rng(99), 8, featureDim, concepts, vocab);
    const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(model.logits(images, ids), twin.logits(images, ids)))).dataSync()[0]!);
    console.log(`checkpoint: ${model.stateDict().size} tensors, ${model.numParameters()} parameters, reloaded max |diff| = ${diff}`);
    tf.dispose([images, ids]);
    twin.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  concepts.dispose();
  model.dispose();
  console.log(`demo done in ${((Date.now() - t0) / 1000).toFixed(1)} s: loss ${first.toFixed(3)} → ${last.toFixed(3)}`);
  return { first, last };
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('a short end-to-end run: backend choice, a tiny training run, a checkpoint round trip')
    .option('--steps <n>', 'training steps', (v) => Number.parseInt(v, 10), 120)
    .option('--seed <n>', 'random seed', (v) => Number.parseInt(v, 10), 0)
    .action(async (opts: { steps: number; seed: number }) => {
      const { first, last } = await runDemo(opts);
      if (!(last < first)) throw new Error(`demo: the loss did not go down (${first} → ${last})`);
    });
}
