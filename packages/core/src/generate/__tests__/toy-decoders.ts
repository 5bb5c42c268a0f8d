// Toy decoders for the generation tests: a Markov chain whose next-token table is fixed (best sequences known
// by hand) and a one-layer causal attention decoder with a functional KV cache, an in-place KV cache and a
// full-recompute reference.
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../../runtime/rng.js';
import { fullSequenceDecoder } from '../decoders.js';
import type { DecoderStep } from '../types.js';

/** Token names of the Markov tables. */
export const PAD = 0;
export const BOS = 1;
export const EOS = 2;
export const A = 3;
export const B = 4;
export const C = 5;

/**
 * Next-token probabilities by last token, columns [PAD, BOS, EOS, A, B, C]. From BOS greedy takes A (.5)
 * and then EOS (.3): p = .15. Beam search finds BOS B EOS: .4 · .9 = .36.
 */
export const MARKOV_PROBS: number[][] = [
  /* PAD */ [0.2, 0.1, 0.1, 0.2, 0.2, 0.2],
  /* BOS */ [0.01, 0.01, 0.02, 0.5, 0.4, 0.06],
  /* EOS */ [0.2, 0.1, 0.1, 0.2, 0.2, 0.2],
  /* A   */ [0.01, 0.01, 0.3, 0.21, 0.19, 0.28],
  /* B   */ [0.01, 0.01, 0.9, 0.03, 0.03, 0.02],
  /* C   */ [0.01, 0.01, 0.9, 0.04, 0.02, 0.02],
];

export const ln = Math.log;

/** A decoder whose logits depend only on the last token: `table[last]` (raw logits). Counts its steps. */
export function markovDecoder(table: number[][]): DecoderStep<tf.Tensor2D> & { steps: number; table: tf.Tensor2D } {
  const weights = tf.tensor2d(table); // [V, V], created once; generate must never dispose it
  const inner = fullSequenceDecoder((ids) => tf.gather(weights, ids)); // [B, T, V]
  const decoder = {
    steps: 0,
    table: weights,
    step(ids: tf.Tensor2D, cache: tf.Tensor2D | null) {
      decoder.steps++;
      return inner.step(ids, cache);
    },
    reorderCache: (cache: tf.Tensor2D, rows: readonly number[]) => inner.reorderCache(cache, rows),
  };
  return decoder;
}

/** Log-probabilities as logits: log-softmax of them is the table itself. */
export function markovFromProbs(probs: number[][]): number[][] {
  return probs.map((row) => row.map((p) => Math.log(p)));
}

interface Kv {
  k: tf.Tensor3D; // [B, T, D]
  v: tf.Tensor3D; // [B, T, D]
}

/** One-layer single-head causal attention LM with random weights: x = emb + pos; h = x + attn(x); logits = h · Wo. */
export class TinyAttentionDecoder {
  readonly emb: tf.Tensor2D;
  readonly pos: tf.Tensor2D;
  readonly wq: tf.Tensor2D;
  readonly wk: tf.Tensor2D;
  readonly wv: tf.Tensor2D;
  readonly wo: tf.Tensor2D;
  fullSteps = 0;

  constructor(
    seed: number,
    readonly vocab = 11,
    readonly dim = 8,
    readonly maxLen = 40,
  ) {
    const rng = new Rng(seed);
    const mat = (rows: number, cols: number, scale: number) =>
      tf.tensor2d(
        Array.from({ length: rows * cols }, () => rng.normal() * scale),
        [rows, cols],
      );
    this.emb = mat(vocab, dim, 1);
    this.pos = mat(maxLen, dim, 0.5);
    this.wq = mat(dim, dim, 1 / Math.sqrt(dim));
    this.wk = mat(dim, dim, 1 / Math.sqrt(dim));
    this.wv = mat(dim, dim, 1 / Math.sqrt(dim));
    this.wo = mat(dim, vocab, 2 / Math.sqrt(dim));
  }

  private project(x: tf.Tensor3D, w: tf.Tensor2D): tf.Tensor3D {
    const [b, t, d] = x.shape;
    return tf.matMul(x.reshape([b * t, d]), w).reshape([b, t, w.shape[1]]);
  }

  /** x for tokens at positions start.. : [B, t, D]. */
  private embed(ids: tf.Tensor2D, start: number): tf.Tensor3D {
    const [, t] = ids.shape;
    return tf.add(tf.gather(this.emb, ids), tf.slice(this.pos, [start, 0], [t, this.dim])) as tf.Tensor3D;
  }

  /** Attention of queries at positions start..start+t-1 over keys 0..start+t-1; returns logits [B, t, V]. */
  private attend(x: tf.Tensor3D, q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, start: number): tf.Tensor3D {
    const [b, t] = x.shape;
    const tk = k.shape[1];
    const mask = tf.tensor2d(
      Array.from({ length: t * tk }, (_, n) => (n % tk > start + Math.floor(n / tk) ? -1e9 : 0)),
      [t, tk],
    ); // [t, Tk]
    const att = tf.softmax(tf.add(tf.div(tf.matMul(q, k, false, true), Math.sqrt(this.dim)), mask)); // [B, t, Tk]
    const h = tf.add(x, tf.matMul(att, v)) as tf.Tensor3D; // [B, t, D]
    return this.project(h, this.wo).reshape([b, t, this.vocab]);
  }

  /** Whole-sequence forward, [B, T] → [B, T, V], written independently of the cached path. */
  forwardFull(ids: tf.Tensor2D): tf.Tensor3D {
    return tf.tidy(() => {
      this.fullSteps++;
      const x = this.embed(ids, 0);
      return this.attend(x, this.project(x, this.wq), this.project(x, this.wk), this.project(x, this.wv), 0);
    });
  }

  /** Reference: recompute everything each step. */
  uncached(): DecoderStep<tf.Tensor2D> {
    return fullSequenceDecoder((ids) => this.forwardFull(ids));
  }

  /** Functional KV cache: every step returns new k/v tensors (generate disposes the old ones). */
  cached(): DecoderStep<Kv> {
    return {
      step: (ids, cache) =>
        tf.tidy(() => {
          const start = cache ? cache.k.shape[1] : 0;
          const [b, t] = ids.shape;
          const x = this.embed(ids, start);
          const k: tf.Tensor3D = cache ? tf.concat([cache.k, this.project(x, this.wk)], 1) : this.project(x, this.wk);
          const v: tf.Tensor3D = cache ? tf.concat([cache.v, this.project(x, this.wv)], 1) : this.project(x, this.wv);
          const logits = this.attend(x, this.project(x, this.wq), k, v, start);
          return { logits: tf.slice(logits, [0, t - 1, 0], [b, 1, this.vocab]).reshape([b, this.vocab]) as tf.Tensor2D, cache: { k, v } };
        }),
      reorderCache: (cache, rows) =>
        tf.tidy(() => {
          const idx = tf.tensor1d(Array.from(rows), 'int32');
          return { k: tf.gather(cache.k, idx), v: tf.gather(cache.v, idx) };
        }),
    };
  }

  /**
   * In-place KV cache that disposes what it replaces and returns itself, and that points at a tensor
   * owned by the caller (`bias`, added to the logits) which generate must leave alone.
   */
  inPlace(bias: tf.Tensor1D): DecoderStep<InPlaceKv> {
    const functional = this.cached();
    return {
      step: (ids, cache) => {
        const state = cache ?? new InPlaceKv(bias);
        const out = functional.step(ids, state.kv);
        state.replace(out.cache);
        const logits = tf.tidy(() => tf.add(out.logits, state.bias) as tf.Tensor2D);
        out.logits.dispose();
        return { logits, cache: state };
      },
      reorderCache: (cache, rows) => {
        if (cache.kv) cache.replace(functional.reorderCache(cache.kv, rows));
        return cache;
      },
    };
  }
}

export class InPlaceKv {
  kv: Kv | null = null;
  constructor(readonly bias: tf.Tensor1D) {}
  replace(next: Kv): void {
    if (this.kv) {
      this.kv.k.dispose();
      this.kv.v.dispose();
    }
    this.kv = next;
  }
}
