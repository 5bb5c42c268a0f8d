// KV cache for incremental decoding: per layer, self-attention keys/values that grow by one step
// at a time and cross-attention keys/values computed once from the image and reused.
//
// Ownership: the cache keeps its tensors alive across tf.tidy scopes (tf.keep) and disposes
// what it replaces; `dispose()` frees everything. Call it when decoding ends.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';

export type CacheKind = 'self' | 'cross';

/** Keys and values of one attention module, [B, H, T, Dh] each. */
export class AttentionCache {
  private k: tf.Tensor | null = null;
  private v: tf.Tensor | null = null;
  private rows: number[] | null = null;

  constructor(readonly kind: CacheKind) {}

  /**
   * Cross cache: which cached (image) row each query row attends to, after reorders; null while it is
   * row i → row i. Keys/values stay one per image, so beams and repeated captions copy nothing.
   */
  get rowSources(): readonly number[] | null {
    return this.rows;
  }

  /** Number of cached key positions. */
  get length(): number {
    return this.k ? (this.k.shape[2] as number) : 0;
  }

  get filled(): boolean {
    return this.k !== null;
  }

  get key(): tf.Tensor | null {
    return this.k;
  }

  get value(): tf.Tensor | null {
    return this.v;
  }

  /**
   * Self-attention: appends this step's keys/values (along T) and returns the full ones.
   * Cross-attention: stores them the first time and returns them. Safe inside tf.tidy.
   */
  update(k: tf.Tensor, v: tf.Tensor): [tf.Tensor, tf.Tensor] {
    if (this.kind === 'cross' && this.k && this.v) return [this.k, this.v];
    if (this.kind === 'self' && this.k && this.v) {
      if (this.k.shape[0] !== k.shape[0]) {
        throw new VlError('SHAPE_MISMATCH', `cache holds batch ${this.k.shape[0]} but the step has batch ${k.shape[0]}`, {
          subject: 'AttentionCache.update',
          hint: 'reorder the cache to the new batch (beam search) before the next step',
        });
      }
      this.replace(tf.concat([this.k, k], 2), tf.concat([this.v, v], 2)); // [B, H, Tpast + T, Dh]
    } else {
      this.replace(k, v);
    }
    return [this.k as tf.Tensor, this.v as tf.Tensor];
  }

  /**
   * Gathers batch rows: row i of the result is row indices[i] (beam search keeps/duplicates beams). A cross
   * cache only remaps rows (`rowSources`): its keys/values are the image's, the same for every beam.
   */
  reorder(indices: tf.Tensor1D | readonly number[]): void {
    if (!this.k || !this.v) return;
    if (this.kind === 'cross') {
      const idx = Array.isArray(indices) ? (indices as readonly number[]) : Array.from((indices as tf.Tensor1D).dataSync());
      const rows = this.rows;
      this.rows = idx.map((i) => {
        const source = rows ? rows[i] : i;
        if (source === undefined || !Number.isInteger(i) || i < 0 || (!rows && i >= (this.k as tf.Tensor).shape[0]))
          throw new VlError('INVALID_ARGUMENT', `reorder index ${i} is outside the cache's ${rows?.length ?? this.k?.shape[0]} rows`, {
            subject: 'AttentionCache.reorder',
          });
        return source;
      });
      return;
    }
    const [k, v] = tf.tidy(() => {
      const idx = Array.isArray(indices) ? tf.tensor1d(indices as number[], 'int32') : tf.cast(indices as tf.Tensor1D, 'int32');
      return [tf.gather(this.k as tf.Tensor, idx, 0), tf.gather(this.v as tf.Tensor, idx, 0)];
    });
    this.replace(k, v);
  }

  /**
   * Keeps the first `length` cached positions and drops the rest (BEiT-3's caption search drops the
   * placeholder's position after every step). A cache holding no more than `length` is left as is.
   */
  truncate(length: number): void {
    if (!Number.isInteger(length) || length < 0) {
      throw new VlError('INVALID_ARGUMENT', `cannot truncate a cache to ${length} positions`, { subject: 'AttentionCache.truncate' });
    }
    if (!this.k || !this.v || length >= this.length) return;
    if (length === 0) {
      this.dispose();
      return;
    }
    const [k, v] = tf.tidy(() => {
      const [b, h, , d] = (this.k as tf.Tensor).shape as [number, number, number, number];
      return [
        tf.slice(this.k as tf.Tensor, [0, 0, 0, 0], [b, h, length, d]),
        tf.slice(this.v as tf.Tensor, [0, 0, 0, 0], [b, h, length, d]),
      ];
    });
    this.replace(k, v);
  }

  private replace(k: tf.Tensor, v: tf.Tensor): void {
    const oldK = this.k;
    const oldV = this.v;
    this.k = tf.keep(k);
    this.v = tf.keep(v);
    if (oldK && oldK !== k) oldK.dispose();
    if (oldV && oldV !== v) oldV.dispose();
  }

  dispose(): void {
    this.k?.dispose();
    this.v?.dispose();
    this.k = null;
    this.v = null;
    this.rows = null;
  }
}

/** Caches of one transformer layer. */
export interface LayerCache {
  self: AttentionCache;
  cross: AttentionCache;
}

/**
 * The cache of a whole decoder: one `LayerCache` per layer. A decoder reads `length` to place
 * the new tokens (position ids, causal mask) and passes `layers[i]` to layer i.
 */
export class KVCache {
  readonly layers: LayerCache[];

  constructor(numLayers: number) {
    this.layers = Array.from({ length: numLayers }, () => ({
      self: new AttentionCache('self'),
      cross: new AttentionCache('cross'),
    }));
  }

  /** Tokens already decoded (cached self-attention positions). */
  get length(): number {
    return this.layers[0]?.self.length ?? 0;
  }

  layer(i: number): LayerCache {
    const l = this.layers[i];
    if (!l) throw new RangeError(`KVCache has ${this.layers.length} layers, asked for layer ${i}`);
    return l;
  }

  /** Beam search: row i becomes old row indices[i], in every self and cross cache. */
  reorder(indices: tf.Tensor1D | readonly number[]): void {
    for (const l of this.layers) {
      l.self.reorder(indices);
      l.cross.reorder(indices);
    }
  }

  /** Keeps the first `length` positions of every self-attention cache (cross caches hold the image and stay). */
  truncate(length: number): void {
    for (const l of this.layers) l.self.truncate(length);
  }

  dispose(): void {
    for (const l of this.layers) {
      l.self.dispose();
      l.cross.dispose();
    }
  }
}
