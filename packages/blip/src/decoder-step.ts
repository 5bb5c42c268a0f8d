// Adapter from BLIP's causal text decoder (core TextTransformer + KVCache + LM head) to core's
// `DecoderStep`, so `generate` runs greedy, beam search and sampling over it with a KV cache.
// Image features enter once, on the prompt step (they fill each layer's cross-attention cache);
// expanding rows for beams reorders the cache, as HF repeats `image_embeds` num_beams times.
import * as tf from '@tensorflow/tfjs-core';
import { type BertLMPredictionHead, type DecoderStep, KVCache, type TextTransformer } from '@vl/core';

export function textDecoderStep(bert: TextTransformer, head: BertLMPredictionHead, imageEmbeds: tf.Tensor): DecoderStep<KVCache> {
  return {
    step(ids, cache) {
      const kv = cache ?? new KVCache(bert.layer.length);
      const logits = tf.tidy(() => {
        const [b, t] = ids.shape;
        const past = kv.length;
        const h = bert.forward({
          inputIds: ids,
          attentionMask: tf.ones([b, past + t], 'int32'),
          encoderHiddenStates: cache === null ? imageEmbeds : null,
          cache: kv,
        }).lastHiddenState; // [B, T, D]
        const d = h.shape[2] as number;
        const last = tf.slice(h, [0, t - 1, 0], [b, 1, d]); // [B, 1, D]
        return tf.reshape(head.forward(last), [b, -1]) as tf.Tensor2D; // [B, V]
      });
      return { logits, cache: kv };
    },
    reorderCache(cache, rows) {
      cache.reorder(rows);
      return cache;
    },
    disposeCache(cache) {
      cache.dispose();
    },
  };
}
