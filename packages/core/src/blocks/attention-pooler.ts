// Attentional pooler (CoCa; open_clip `AttentionalPooler`): learned queries cross-attend to the
// image tokens and return a fixed number of pooled tokens.
//
// Parameter names (open_clip): query [Q, D]; attn.in_proj_weight [3D, D] (or attn.q_proj_weight,
// attn.k_proj_weight, attn.v_proj_weight when the context width C ≠ D), attn.in_proj_bias [3D],
// attn.out_proj.{weight,bias}; ln_q.{weight,bias} [D]; ln_k.{weight,bias} [C].
import * as tf from '@tensorflow/tfjs-core';
import { MultiHeadAttention } from '../attention/multi-head-attention.js';
import { normal } from '../nn/init.js';
import { LayerNorm } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { Rng } from '../runtime/rng.js';

export interface AttentionPoolerConfig {
  /** Width of the queries and the output (open_clip `d_model`). */
  dModel: number;
  /** Width of the image tokens (open_clip `context_dim`). */
  contextDim: number;
  /** Default 8 (open_clip). */
  numHeads?: number;
  /** Default 256 (open_clip; CoCa uses 256 for captioning and 1 for contrastive). */
  numQueries?: number;
  /** Default 1e-5 (torch LayerNorm). */
  layerNormEps?: number;
}

export class AttentionPooler extends Module {
  readonly query: tf.Variable;
  readonly attn: MultiHeadAttention;
  readonly ln_q: LayerNorm;
  readonly ln_k: LayerNorm;

  constructor(config: AttentionPoolerConfig, rng: Rng) {
    super();
    const eps = config.layerNormEps ?? 1e-5;
    // open_clip draws the queries from N(0, 1).
    this.query = this.registerParameter('query', normal([config.numQueries ?? 256, config.dModel], rng, 1));
    this.attn = this.registerModule(
      'attn',
      new MultiHeadAttention(
        { hiddenSize: config.dModel, numHeads: config.numHeads ?? 8, kvSize: config.contextDim, layout: 'in_proj' },
        rng,
      ),
    );
    this.ln_q = this.registerModule('ln_q', new LayerNorm(config.dModel, eps));
    this.ln_k = this.registerModule('ln_k', new LayerNorm(config.contextDim, eps));
  }

  /** x: image tokens [B, S, C] → pooled [B, Q, D]. Optional attention probabilities [B, H, Q, S]. */
  forward(x: tf.Tensor, options: { outputAttentions?: boolean } = {}): { pooled: tf.Tensor; attentions?: tf.Tensor } {
    return tf.tidy(() => {
      const b = x.shape[0] as number;
      const [nq, d] = this.query.shape as [number, number];
      const q = tf.broadcastTo(tf.reshape(this.ln_q.forward(this.query), [1, nq, d]), [b, nq, d]); // [B, Q, D]
      const a = this.attn.forward(q, { context: this.ln_k.forward(x), outputAttentions: options.outputAttentions });
      return a.attentions ? { pooled: a.output, attentions: a.attentions } : { pooled: a.output };
    });
  }
}
