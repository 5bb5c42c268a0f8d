// Post-LN BERT layer with an optional cross-attention sub-layer, under Hugging Face's names
// (follows transformers `BlipTextLayer` / `BertLayer`, and salesforce/ALBEF `xbert.BertLayer`).
//
// Parameter names:
//   attention.self.{query,key,value}.{weight,bias}       self-attention projections [D, D]
//   attention.output.dense.{weight,bias}, attention.output.LayerNorm.{weight,bias}
//   crossattention.self.{query,key,value}.*              (only with crossAttention; key/value [D, encoder_hidden_size])
//   crossattention.output.dense.*, crossattention.output.LayerNorm.*
//   intermediate.dense.{weight,bias} [I, D]
//   output.dense.{weight,bias} [D, I], output.LayerNorm.{weight,bias}
import * as tf from '@tensorflow/tfjs-core';
import type { AttentionCache, LayerCache } from '../attention/kv-cache.js';
import { BERT_ATTENTION_NAMES, MultiHeadAttention } from '../attention/multi-head-attention.js';
import { activate, type Activation, Dropout, LayerNorm, Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { Rng } from '../runtime/rng.js';

/** The fields of a BERT / BLIP text config a layer reads (camelCase of the `config.json` keys: `hiddenSize` ↔ `hidden_size`). */
export interface BertLayerConfig {
  hiddenSize: number;
  numAttentionHeads: number;
  intermediateSize: number;
  /** Default 'gelu' (exact erf form, as BERT and BLIP). */
  hiddenAct?: Activation;
  /** Default 1e-12 (BERT). */
  layerNormEps?: number;
  hiddenDropoutProb?: number;
  attentionProbsDropoutProb?: number;
  /** Width of the image features cross-attention reads (BLIP `encoder_hidden_size`, ALBEF `encoder_width`). */
  encoderHiddenSize?: number;
}

/** dense → dropout → LayerNorm(h + input): HF `BertSelfOutput` and `BertOutput`. */
export class BertResidualOutput extends Module {
  readonly dense: Linear;
  readonly LayerNorm: LayerNorm;
  private readonly dropout: Dropout;

  constructor(inFeatures: number, hidden: number, eps: number, dropout: number, rng: Rng) {
    super();
    this.dense = this.registerModule('dense', new Linear(inFeatures, hidden, rng));
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(hidden, eps));
    this.dropout = this.registerModule('dropout', new Dropout(dropout));
  }

  forward(h: tf.Tensor, input: tf.Tensor, rng?: Rng): tf.Tensor {
    return tf.tidy(() => this.LayerNorm.forward(tf.add(this.dropout.forward(this.dense.forward(h), rng), input)));
  }
}

export interface BertAttentionForward {
  mask?: tf.Tensor | null;
  context?: tf.Tensor | null;
  /** Cross-attention: the context row each query row reads (see MultiHeadAttention). */
  contextRows?: readonly number[] | null;
  cache?: AttentionCache | null;
  rng?: Rng;
  outputAttentions?: boolean;
}

/** HF `BertAttention`: `self` (q/k/v, no output projection) then `output` (dense + residual LN). */
export class BertAttention extends Module {
  readonly self: MultiHeadAttention;
  readonly output: BertResidualOutput;

  constructor(config: BertLayerConfig, rng: Rng, options: { kvSize?: number } = {}) {
    super();
    const d = config.hiddenSize;
    this.self = this.registerModule(
      'self',
      new MultiHeadAttention(
        {
          hiddenSize: d,
          numHeads: config.numAttentionHeads,
          kvSize: options.kvSize ?? d,
          layout: 'separate',
          outProjection: false,
          attentionDropout: config.attentionProbsDropoutProb ?? 0,
          names: BERT_ATTENTION_NAMES,
        },
        rng,
      ),
    );
    this.output = this.registerModule(
      'output',
      new BertResidualOutput(d, d, config.layerNormEps ?? 1e-12, config.hiddenDropoutProb ?? 0, rng),
    );
  }

  forward(x: tf.Tensor, options: BertAttentionForward = {}): { output: tf.Tensor; attentions?: tf.Tensor } {
    return tf.tidy(() => {
      const a = this.self.forward(x, {
        context: options.context,
        contextRows: options.contextRows,
        mask: options.mask,
        cache: options.cache,
        rng: options.rng,
        outputAttentions: options.outputAttentions,
      });
      const output = this.output.forward(a.output, x, options.rng);
      return a.attentions ? { output, attentions: a.attentions } : { output };
    });
  }
}

/** HF `BertIntermediate`: dense + activation. */
export class BertIntermediate extends Module {
  readonly dense: Linear;

  constructor(
    hidden: number,
    intermediate: number,
    readonly activation: Activation,
    rng: Rng,
  ) {
    super();
    this.dense = this.registerModule('dense', new Linear(hidden, intermediate, rng));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => activate(this.dense.forward(x), this.activation));
  }
}

export interface BertLayerForward {
  /** Additive self-attention mask [B|1, 1, Tq|1, Tk] (padding and, for decoders, causal). */
  attentionMask?: tf.Tensor | null;
  /** Image features [B, S, encoderHiddenSize]; cross-attention runs only when given. */
  encoderHiddenStates?: tf.Tensor | null;
  /** Additive cross-attention mask [B|1, 1, 1, S] (with encoderRows: one row per image, [I|1, 1, 1, S]). */
  encoderAttentionMask?: tf.Tensor | null;
  /** Row i reads image encoderRows[i] of encoderHiddenStates [I, S, D]: keys/values are projected once per image. */
  encoderRows?: readonly number[] | null;
  cache?: LayerCache | null;
  rng?: Rng;
  outputAttentions?: boolean;
}

export type BertLayerOutput = {
  hidden: tf.Tensor;
  attentions?: tf.Tensor;
  crossAttentions?: tf.Tensor;
};

export class BertLayer extends Module {
  readonly attention: BertAttention;
  readonly crossattention: BertAttention | null;
  readonly intermediate: BertIntermediate;
  readonly output: BertResidualOutput;

  constructor(config: BertLayerConfig, rng: Rng, options: { crossAttention?: boolean } = {}) {
    super();
    const d = config.hiddenSize;
    this.attention = this.registerModule('attention', new BertAttention(config, rng));
    this.crossattention = options.crossAttention
      ? this.registerModule('crossattention', new BertAttention(config, rng, { kvSize: config.encoderHiddenSize ?? d }))
      : null;
    this.intermediate = this.registerModule(
      'intermediate',
      new BertIntermediate(d, config.intermediateSize, config.hiddenAct ?? 'gelu', rng),
    );
    this.output = this.registerModule(
      'output',
      new BertResidualOutput(config.intermediateSize, d, config.layerNormEps ?? 1e-12, config.hiddenDropoutProb ?? 0, rng),
    );
  }

  /** x: [B, T, D] → [B, T, D]. */
  forward(x: tf.Tensor, options: BertLayerForward = {}): BertLayerOutput {
    return tf.tidy(() => {
      const self = this.attention.forward(x, {
        mask: options.attentionMask,
        cache: options.cache?.self,
        rng: options.rng,
        outputAttentions: options.outputAttentions,
      });
      let h = self.output;
      let crossAttentions: tf.Tensor | undefined;
      const cross = options.cache?.cross;
      // With a filled cross cache the image keys/values are reused, so the states may be omitted.
      if (this.crossattention && (options.encoderHiddenStates || cross?.filled)) {
        const c = this.crossattention.forward(h, {
          context: options.encoderHiddenStates ?? null,
          contextRows: options.encoderRows,
          mask: options.encoderAttentionMask,
          cache: cross,
          rng: options.rng,
          outputAttentions: options.outputAttentions,
        });
        h = c.output;
        crossAttentions = c.attentions;
      }
      const hidden = this.output.forward(this.intermediate.forward(h), h, options.rng);
      const out: BertLayerOutput = { hidden };
      if (self.attentions) out.attentions = self.attentions;
      if (crossAttentions) out.crossAttentions = crossAttentions;
      return out;
    });
  }
}
