// BERT-style text transformer: embeddings, post-LN layers that are bidirectional (encoder) or
// causal (decoder), with cross-attention to image features from layer k on, a KV-cache path
// for decoding, and an optional pooler. Covers HF `BlipTextModel` (decoder: cross-attention in
// every layer; retrieval encoder) and ALBEF's `BertModel` split into text layers [0, k) and
// fusion layers [k, N) (salesforce/ALBEF xbert's modes 'text' and 'fusion' are the `layers`
// ranges `textLayers()` and `fusionLayers()`). Cross-attention runs only when image features are
// given, so BLIP's text-only encoder is the same stack called without `encoderHiddenStates`.
//
// Parameter names: embeddings.* (see BertEmbeddings), encoder.layer.<i>.* (see BertLayer;
// `crossattention.*` for i ≥ crossAttentionFrom), [pooler.dense.*].
import * as tf from '@tensorflow/tfjs-core';
import type { KVCache } from '../attention/kv-cache.js';
import { BERT_MASK_VALUE, extendedAttentionMask, FLOAT32_MIN, paddingMask } from '../attention/masks.js';
import { BertLayer, type BertLayerConfig } from '../blocks/bert-layer.js';
import { VlError } from '../errors.js';
import { Module, type ModuleList } from '../nn/module.js';
import type { Rng } from '../runtime/rng.js';
import { BertPooler } from './heads.js';
import { BertEmbeddings, type TextEmbeddingsConfig } from './text-embeddings.js';

export interface TextTransformerConfig extends BertLayerConfig, TextEmbeddingsConfig {
  numHiddenLayers: number;
}

export interface TextTransformerOptions {
  /** Decoder: each token sees only itself and earlier tokens. Default false. */
  causal?: boolean;
  /** First layer with a `crossattention` sub-layer (BLIP decoder/ITM encoder 0; ALBEF `fusion_layer`). Default: none. */
  crossAttentionFrom?: number;
  /** Build the embeddings (default true); false for a fusion-only stack fed hidden states. */
  embeddings?: boolean;
  /** Add `pooler.dense` (HF `add_pooling_layer`). Default false. */
  pooler?: boolean;
  /** Masked self-attention score. Default -10000 (BERT/BLIP text). */
  selfMaskValue?: number;
  /** Masked cross-attention score. Default the float32 minimum (HF `invert_attention_mask`). */
  crossMaskValue?: number;
}

export interface TextTransformerInputs {
  /** [B, T] int32. */
  inputIds?: tf.Tensor;
  /** [B, T, D] word embeddings instead of ids (positions and LayerNorm still apply). */
  inputsEmbeds?: tf.Tensor;
  /** [B, T, D] hidden states that skip the embeddings (ALBEF fusion mode input). */
  hiddenStates?: tf.Tensor;
  tokenTypeIds?: tf.Tensor;
  /** [B, past + T] of 1 (token) / 0 (padding); absent means no padding. */
  attentionMask?: tf.Tensor | null;
  /** [B, S, encoderHiddenSize] image features for cross-attention. */
  encoderHiddenStates?: tf.Tensor | null;
  /** [B, S] of 1/0 over image tokens (with encoderRows: [I, S]); absent means all valid. */
  encoderAttentionMask?: tf.Tensor | null;
  /**
   * Text row i cross-attends to image `encoderRows[i]` of encoderHiddenStates [I, S, D]: each image's
   * keys/values are projected once, however many texts read it (ITM of several captions per image).
   */
  encoderRows?: readonly number[] | null;
  /** Decoding cache (one LayerCache per layer); it grows by this call's T tokens. */
  cache?: KVCache | null;
  /** Layers [from, to) to run; default all. ALBEF text mode: textLayers(); fusion mode: fusionLayers(). */
  layers?: readonly [number, number];
  rng?: Rng;
  outputAttentions?: boolean;
  outputHiddenStates?: boolean;
}

export type TextTransformerOutput = {
  /** [B, T, D] */
  lastHiddenState: tf.Tensor;
  /** [B, D], with a pooler. */
  poolerOutput?: tf.Tensor;
  /** Per layer run: [B, H, T, past + T]. */
  attentions?: tf.Tensor[];
  /** Per layer with cross-attention: [B, H, T, S]. */
  crossAttentions?: tf.Tensor[];
  /** Input of the first layer run, then each layer's output. */
  hiddenStates?: tf.Tensor[];
};

export class TextTransformer extends Module {
  readonly config: TextTransformerConfig;
  readonly embeddings: BertEmbeddings | null;
  readonly layer: ModuleList<BertLayer>;
  readonly pooler: BertPooler | null;
  readonly causal: boolean;
  readonly crossAttentionFrom: number;
  private readonly selfMaskValue: number;
  private readonly crossMaskValue: number;

  constructor(config: TextTransformerConfig, rng: Rng, options: TextTransformerOptions = {}) {
    super();
    this.config = config;
    const n = config.numHiddenLayers;
    this.causal = options.causal ?? false;
    this.crossAttentionFrom = Math.min(options.crossAttentionFrom ?? n, n);
    this.selfMaskValue = options.selfMaskValue ?? BERT_MASK_VALUE;
    this.crossMaskValue = options.crossMaskValue ?? FLOAT32_MIN;
    this.embeddings = options.embeddings === false ? null : this.registerModule('embeddings', new BertEmbeddings(config, rng));
    const encoder = this.registerModule('encoder', new EncoderContainer());
    this.layer = encoder.setLayers(
      Array.from({ length: n }, (_, i) => new BertLayer(config, rng, { crossAttention: i >= this.crossAttentionFrom })),
    );
    this.pooler = options.pooler ? this.registerModule('pooler', new BertPooler(config.hiddenSize, rng)) : null;
  }

  /** ALBEF's text encoder: the layers before the first cross-attention layer. */
  textLayers(): [number, number] {
    return [0, this.crossAttentionFrom];
  }

  /** ALBEF's fusion encoder: the layers with cross-attention (fed `hiddenStates` from textLayers). */
  fusionLayers(): [number, number] {
    return [this.crossAttentionFrom, this.layer.length];
  }

  forward(inputs: TextTransformerInputs): TextTransformerOutput {
    const [from, to] = inputs.layers ?? [0, this.layer.length];
    if (!(from >= 0 && from <= to && to <= this.layer.length)) {
      throw new VlError('INVALID_ARGUMENT', `layer range [${from}, ${to}) is outside [0, ${this.layer.length}]`, {
        subject: 'TextTransformer.forward',
      });
    }
    const cache = inputs.cache ?? null;
    if (cache && cache.layers.length !== this.layer.length) {
      throw new VlError('INVALID_ARGUMENT', `cache has ${cache.layers.length} layers, the model ${this.layer.length}`, {
        subject: 'TextTransformer.forward',
        hint: 'create it with new KVCache(model.layer.length)',
      });
    }
    const past = cache ? cache.layer(from).self.length : 0;
    return tf.tidy(() => {
      let h: tf.Tensor;
      if (inputs.hiddenStates) {
        h = inputs.hiddenStates;
      } else {
        if (!this.embeddings) {
          throw new VlError('INVALID_ARGUMENT', 'this text transformer has no embeddings: pass hiddenStates', {
            subject: 'TextTransformer.forward',
          });
        }
        h = this.embeddings.forward({
          inputIds: inputs.inputIds,
          inputsEmbeds: inputs.inputsEmbeds,
          tokenTypeIds: inputs.tokenTypeIds,
          pastLength: past,
          rng: inputs.rng,
        });
      }
      const t = h.shape[1] as number;
      const selfMask = extendedAttentionMask({
        attentionMask: inputs.attentionMask,
        causal: this.causal,
        queryLength: t,
        keyLength: past + t,
        maskValue: this.selfMaskValue,
      }); // [B|1, 1, T|1, past + T]
      const image = inputs.encoderHiddenStates ?? null;
      // [B, 1, 1, S]
      const crossMask = image && inputs.encoderAttentionMask ? paddingMask(inputs.encoderAttentionMask, this.crossMaskValue) : null;
      const attentions: tf.Tensor[] = [];
      const crossAttentions: tf.Tensor[] = [];
      const hidden: tf.Tensor[] = [h];
      for (let i = from; i < to; i++) {
        const out = this.layer.at(i).forward(h, {
          attentionMask: selfMask,
          encoderHiddenStates: image,
          encoderAttentionMask: crossMask,
          encoderRows: inputs.encoderRows,
          cache: cache?.layer(i),
          rng: inputs.rng,
          outputAttentions: inputs.outputAttentions,
        });
        h = out.hidden;
        hidden.push(h);
        if (out.attentions) attentions.push(out.attentions);
        if (out.crossAttentions) crossAttentions.push(out.crossAttentions);
      }
      const result: TextTransformerOutput = { lastHiddenState: h };
      if (this.pooler) result.poolerOutput = this.pooler.forward(h);
      if (inputs.outputAttentions) {
        result.attentions = attentions;
        result.crossAttentions = crossAttentions;
      }
      if (inputs.outputHiddenStates) result.hiddenStates = hidden;
      return result;
    });
  }
}

/** HF `BertEncoder`: holds `layer`. */
class EncoderContainer extends Module {
  setLayers(layers: BertLayer[]): ModuleList<BertLayer> {
    return this.registerModuleList('layer', layers);
  }
}
