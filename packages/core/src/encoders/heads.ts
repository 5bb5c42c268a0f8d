// Output heads shared by the models: projection to the joint embedding space (optionally
// L2-normalised), BERT pooler, BERT masked-/causal-LM prediction head.
//
// Parameter names: ProjectionHead weight [out, in], bias [out] (BLIP `vision_proj`, ALBEF
// `text_proj`); BertPooler dense.*; BertLMPredictionHead transform.dense.*,
// transform.LayerNorm.*, decoder.weight [V, D], bias [V] (the decoder's bias is this `bias`,
// tied as in HF, so `decoder.bias` is absent from checkpoints).
import * as tf from '@tensorflow/tfjs-core';
import { linear } from '../nn/functional.js';
import { activate, type Activation, LayerNorm, Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { Rng } from '../runtime/rng.js';

/** x / max(‖x‖₂, eps) over the last axis (torch F.normalize). */
export function l2Normalize(x: tf.Tensor, eps = 1e-12): tf.Tensor {
  return tf.tidy(() => tf.div(x, tf.maximum(tf.norm(x, 'euclidean', -1, true), eps)));
}

export class ProjectionHead extends Module {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | null;

  constructor(
    inFeatures: number,
    outFeatures: number,
    rng: Rng,
    readonly options: { bias?: boolean; normalize?: boolean } = {},
  ) {
    super();
    const lin = new Linear(inFeatures, outFeatures, rng, { bias: options.bias });
    // Take the Linear's tensors as our own parameters so keys are `weight`/`bias` at this level.
    this.weight = this.registerParameter('weight', lin.weight.clone());
    this.bias = lin.bias ? this.registerParameter('bias', lin.bias.clone()) : null;
    lin.dispose();
  }

  /** [..., in] → [..., out], unit length when `normalize`. */
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const y = linear(x, this.weight, this.bias);
      return this.options.normalize ? l2Normalize(y) : y;
    });
  }
}

/** [B, T, D] → [B, D]: the first token's row (BERT's [CLS], the ViT class token), the `h[:, 0]` of the references. */
export function firstToken(h: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const [b, , d] = h.shape as [number, number, number];
    return tf.reshape(tf.slice(h, [0, 0, 0], [b, 1, d]), [b, d]);
  });
}

/** HF `BertPooler`: tanh(dense(h[:, 0])). */
export class BertPooler extends Module {
  readonly dense: Linear;

  constructor(hidden: number, rng: Rng) {
    super();
    this.dense = this.registerModule('dense', new Linear(hidden, hidden, rng));
  }

  /** [B, T, D] → [B, D] */
  forward(h: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.tanh(this.dense.forward(firstToken(h))));
  }
}

/** HF `BertPredictionHeadTransform`: dense → activation → LayerNorm. */
export class BertPredictionHeadTransform extends Module {
  readonly dense: Linear;
  readonly LayerNorm: LayerNorm;

  constructor(
    hidden: number,
    readonly activation: Activation,
    eps: number,
    rng: Rng,
  ) {
    super();
    this.dense = this.registerModule('dense', new Linear(hidden, hidden, rng));
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(hidden, eps));
  }

  forward(h: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.LayerNorm.forward(activate(this.dense.forward(h), this.activation)));
  }
}

/** HF `BertLMPredictionHead` (`cls.predictions`): transform, then logits over the vocabulary. */
export class BertLMPredictionHead extends Module {
  readonly transform: BertPredictionHeadTransform;
  readonly decoder: Linear;
  readonly bias: tf.Variable;

  constructor(config: { hiddenSize: number; vocabSize: number; hiddenAct?: Activation; layerNormEps?: number }, rng: Rng) {
    super();
    const d = config.hiddenSize;
    this.transform = this.registerModule(
      'transform',
      new BertPredictionHeadTransform(d, config.hiddenAct ?? 'gelu', config.layerNormEps ?? 1e-12, rng),
    );
    this.decoder = this.registerModule('decoder', new Linear(d, config.vocabSize, rng, { bias: false }));
    this.bias = this.registerParameter('bias', tf.zeros([config.vocabSize]));
  }

  /** [B, T, D] → logits [B, T, V] */
  forward(h: tf.Tensor): tf.Tensor {
    return tf.tidy(() => linear(this.transform.forward(h), this.decoder.weight, this.bias));
  }
}
