// The basic layers with PyTorch parameter names: Linear, LayerNorm, Embedding, Dropout, GELU, Mlp.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import type { Rng } from '../runtime/rng.js';
import { gelu, geluTanh, layerNorm, linear } from './functional.js';
import { truncNormal } from './init.js';
import { Module } from './module.js';

export type WeightInit = (shape: number[], rng: Rng) => tf.Tensor;

/** The BERT/ViT default: truncated normal with std 0.02. */
export const bertInit: WeightInit = (shape, rng) => truncNormal(shape, rng, 0.02);

export interface LinearOptions {
  bias?: boolean;
  init?: WeightInit;
}

/** y = x·Wᵀ + b. Parameters: `weight` [out, in], `bias` [out]. */
export class Linear extends Module {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    rng: Rng,
    options: LinearOptions = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', (options.init ?? bertInit)([outFeatures, inFeatures], rng));
    this.bias = options.bias === false ? null : this.registerParameter('bias', tf.zeros([outFeatures]));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return linear(x, this.weight, this.bias);
  }
}

/** Parameters: `weight` (γ, ones) and `bias` (β, zeros) over the last axis. */
export class LayerNorm extends Module {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable | null;

  constructor(
    readonly dim: number,
    readonly eps = 1e-5,
    options: { bias?: boolean } = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', tf.ones([dim]));
    this.bias = options.bias === false ? null : this.registerParameter('bias', tf.zeros([dim]));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}

/** Lookup table. Parameter: `weight` [num, dim]. */
export class Embedding extends Module {
  readonly weight: tf.Variable;

  constructor(
    readonly numEmbeddings: number,
    readonly dim: number,
    rng: Rng,
    options: { init?: WeightInit } = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', (options.init ?? bertInit)([numEmbeddings, dim], rng));
  }

  /** ids: int32 of any shape → [...ids.shape, dim]. */
  forward(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const flat = tf.reshape(ids.dtype === 'int32' ? ids : tf.cast(ids, 'int32'), [-1]);
      return tf.reshape(tf.gather(this.weight, flat), [...ids.shape, this.dim]);
    });
  }
}

/**
 * Inverted dropout: in training mode zeroes each element with probability p and scales the rest
 * by 1/(1-p). The mask is drawn from the Rng passed in, so runs are reproducible.
 */
export class Dropout extends Module {
  constructor(readonly p: number) {
    super();
    if (!(p >= 0 && p < 1)) throw new VlError('INVALID_ARGUMENT', `dropout probability must be in [0, 1), got ${p}`);
  }

  forward(x: tf.Tensor, rng?: Rng): tf.Tensor {
    if (!this.training || this.p === 0) return x;
    if (!rng) {
      throw new VlError('INVALID_ARGUMENT', 'dropout in training mode needs an Rng', {
        subject: 'Dropout.forward',
        hint: 'pass the step Rng down the forward call, or call model.eval() for inference',
      });
    }
    const keep = 1 - this.p;
    return tf.tidy(() => {
      const mask = tf.cast(tf.less(tf.randomUniform(x.shape, 0, 1, 'float32', rng.seed()), keep), x.dtype);
      return tf.mul(x, tf.mul(mask, 1 / keep));
    });
  }
}

export type Activation = 'gelu' | 'gelu_tanh' | 'relu' | 'tanh' | 'quick_gelu';

export function activate(x: tf.Tensor, kind: Activation): tf.Tensor {
  switch (kind) {
    case 'gelu':
      return gelu(x);
    case 'gelu_tanh':
      return geluTanh(x);
    case 'relu':
      return tf.relu(x);
    case 'tanh':
      return tf.tanh(x);
    case 'quick_gelu':
      // CLIP/open_clip's x·σ(1.702x).
      return tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702))));
  }
}

/** GELU as a module: erf form by default, `{ approximate: 'tanh' }` for the tanh form. */
export class GELU extends Module {
  constructor(readonly approximate: 'none' | 'tanh' = 'none') {
    super();
  }

  forward(x: tf.Tensor): tf.Tensor {
    return this.approximate === 'tanh' ? geluTanh(x) : gelu(x);
  }
}

export interface MlpOptions {
  activation?: Activation;
  /** Child names; ViT/timm use fc1/fc2, open_clip uses c_fc/c_proj. */
  names?: [string, string];
  bias?: boolean;
  init?: WeightInit;
}

/** Two linear layers with an activation between: in → hidden → out. */
export class Mlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly activation: Activation;

  constructor(inFeatures: number, hiddenFeatures: number, outFeatures: number, rng: Rng, options: MlpOptions = {}) {
    super();
    const [n1, n2] = options.names ?? ['fc1', 'fc2'];
    const linearOptions = { bias: options.bias, init: options.init };
    this.fc1 = this.registerModule(n1, new Linear(inFeatures, hiddenFeatures, rng, linearOptions));
    this.fc2 = this.registerModule(n2, new Linear(hiddenFeatures, outFeatures, rng, linearOptions));
    this.activation = options.activation ?? 'gelu';
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.fc2.forward(activate(this.fc1.forward(x), this.activation)));
  }
}
