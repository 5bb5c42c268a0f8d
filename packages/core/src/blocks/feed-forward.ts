// The transformer feed-forward block: fc1 → activation → [sub-LN] → fc2 (timm `Mlp`, torchscale
// `FeedForwardNetwork` with `ffn_layernorm`, open_clip `c_fc`/`c_proj`).
//
// Parameter names: <fc1>.{weight,bias} [hidden, in], <innerNorm>.{weight,bias} (only with
// innerNormEps), <fc2>.{weight,bias} [out, hidden]. Defaults fc1, ffn_layernorm, fc2.
import * as tf from '@tensorflow/tfjs-core';
import { activate, type Activation, bertInit, Dropout, LayerNorm, Linear, type WeightInit } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { Rng } from '../runtime/rng.js';

export interface FeedForwardNames {
  fc1: string;
  fc2: string;
  innerNorm: string;
}

export const TIMM_MLP_NAMES: FeedForwardNames = { fc1: 'fc1', fc2: 'fc2', innerNorm: 'ffn_layernorm' };
export const OPEN_CLIP_MLP_NAMES: FeedForwardNames = { fc1: 'c_fc', fc2: 'c_proj', innerNorm: 'ln' };

export interface FeedForwardConfig {
  dim: number;
  hiddenDim: number;
  activation?: Activation;
  /** Sub-LN between activation and fc2 (BEiT-3 `ffn_layernorm`); null for none. */
  innerNormEps?: number | null;
  /** Dropout after the activation (timm `drop`). */
  dropout?: number;
  names?: Partial<FeedForwardNames>;
  init?: WeightInit;
}

export class FeedForward extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly innerNorm: LayerNorm | null;
  readonly activation: Activation;
  private readonly dropout: Dropout;

  constructor(config: FeedForwardConfig, rng: Rng) {
    super();
    const names = { ...TIMM_MLP_NAMES, ...config.names };
    const init = config.init ?? bertInit;
    this.fc1 = this.registerModule(names.fc1, new Linear(config.dim, config.hiddenDim, rng, { init }));
    this.innerNorm =
      config.innerNormEps != null ? this.registerModule(names.innerNorm, new LayerNorm(config.hiddenDim, config.innerNormEps)) : null;
    this.fc2 = this.registerModule(names.fc2, new Linear(config.hiddenDim, config.dim, rng, { init }));
    this.activation = config.activation ?? 'gelu';
    this.dropout = this.registerModule('drop', new Dropout(config.dropout ?? 0));
  }

  forward(x: tf.Tensor, rng?: Rng): tf.Tensor {
    return tf.tidy(() => {
      let h = this.dropout.forward(activate(this.fc1.forward(x), this.activation), rng);
      if (this.innerNorm) h = this.innerNorm.forward(h);
      return this.fc2.forward(h);
    });
  }
}
