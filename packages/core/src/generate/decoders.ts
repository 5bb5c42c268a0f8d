// Decoder adapters and cache bookkeeping: `fullSequenceDecoder` (no cache: recompute the whole sequence each
// step, the reference for cached decoding) and the tensor-ownership helpers `generate` uses.
import * as tf from '@tensorflow/tfjs-core';
import type { DecoderStep } from './types.js';

/** A forward over the whole sequence: `[B, T]` ids → logits `[B, T, V]` (or already the last position, `[B, V]`). */
export type FullSequenceForward = (ids: tf.Tensor2D) => tf.Tensor;

/**
 * Wraps a full-sequence forward as a `DecoderStep` whose cache is the ids so far (`[B, T]` int32):
 * each step concatenates the new tokens and runs the forward on everything. Quadratic in length, but
 * exactly what a KV-cached decoder must reproduce.
 */
export function fullSequenceDecoder(forward: FullSequenceForward): DecoderStep<tf.Tensor2D> {
  return {
    step(ids, cache) {
      return tf.tidy(() => {
        const all: tf.Tensor2D = cache === null ? ids.clone() : tf.concat([cache, ids], 1); // [B, T]
        const out = forward(all);
        let logits: tf.Tensor2D;
        if (out.rank === 3) {
          const [b, t, v] = out.shape as [number, number, number];
          logits = tf.slice(out, [0, t - 1, 0], [b, 1, v]).reshape([b, v]); // [B, V]
        } else {
          logits = out as tf.Tensor2D;
        }
        return { logits, cache: all };
      });
    },
    reorderCache(cache, rows) {
      return tf.tidy(() => tf.gather(cache, tf.tensor1d(Array.from(rows), 'int32')));
    },
  };
}

/** Every tensor reachable from a value through arrays, Maps, Sets and object fields. */
export function reachableTensors(value: unknown, into: Set<tf.Tensor> = new Set()): Set<tf.Tensor> {
  const seen = new Set<object>();
  const walk = (v: unknown): void => {
    if (v === null || typeof v !== 'object') return;
    if (v instanceof tf.Tensor) {
      into.add(v);
      return;
    }
    if (seen.has(v)) return;
    seen.add(v);
    if (ArrayBuffer.isView(v)) return;
    if (v instanceof Map) {
      for (const [key, item] of v) {
        walk(key);
        walk(item);
      }
    } else if (v instanceof Set || Array.isArray(v)) {
      for (const item of v) walk(item);
    } else {
      for (const item of Object.values(v)) walk(item);
    }
  };
  walk(value);
  return into;
}

/** The id the next tensor will get is larger than this one: tensors created later have larger ids. */
export function tensorIdWatermark(): number {
  const probe = tf.scalar(0);
  const id = probe.id;
  probe.dispose();
  return id;
}

/** Disposes the tensors of `candidates` that are not in `keep`, not yet disposed, and were created after `watermark`. */
export function disposeUnkept(candidates: Iterable<tf.Tensor>, keep: ReadonlySet<tf.Tensor>, watermark: number): void {
  for (const t of candidates) {
    if (!keep.has(t) && !t.isDisposed && t.id > watermark) t.dispose();
  }
}
