// Multi-head attention, self and cross, in the weight layouts checkpoints use: separate
// query/key/value (BERT, BLIP text, torchscale), fused qkv (timm ViT, BLIP vision, VLMo) and
// PyTorch nn.MultiheadAttention's in_proj (open_clip). Follows HF `BlipTextSelfAttention` /
// `BlipAttention` and timm `Attention` for the maths.
//
// Parameter names (defaults; every child name is configurable through `names`):
//   layout 'separate': query.{weight,bias}  key.{weight,bias}  value.{weight,bias}
//                      [+ out.{weight,bias}] [+ innerNorm]   (HF BERT: query/key/value, no out —
//                      `attention.output.dense` lives in the layer; torchscale: q_proj/k_proj/
//                      v_proj/out_proj/inner_attn_ln, each with .A/.B children when multiway)
//   layout 'fused':    qkv.weight [3D, D], qkv.bias [3D] (or q_bias + v_bias for qkvBias 'qv',
//                      BEiT/VLMo), out (BLIP `projection`, timm `proj`)
//   layout 'in_proj':  in_proj_weight [3D, D] (or q_proj_weight/k_proj_weight/v_proj_weight
//                      when the context width differs), in_proj_bias [3D], out_proj.{weight,bias}
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import { linear, softmaxLastAxis } from '../nn/functional.js';
import { type HeadView, maskFits, nativeAttention, nativeAttentionAvailable, packedView, splitView } from './native-attention.js';
import { attendSharedContext, contextGroupSize } from './shared-context.js';
import { bertInit, Dropout, LayerNorm, Linear, type WeightInit } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { Rng } from '../runtime/rng.js';
import type { AttentionCache } from './kv-cache.js';
import { BERT_MASK_VALUE, causalAllowed } from './masks.js';
import { type ExpertNaming, Multiway, type Route } from '../blocks/multiway.js';

export type QkvLayout = 'separate' | 'fused' | 'in_proj';
/** 'qv': no key bias (BEiT/VLMo register `q_bias` and `v_bias` and use zeros for k). */
export type QkvBias = 'full' | 'qv' | 'none';

export interface AttentionNames {
  query: string;
  key: string;
  value: string;
  qkv: string;
  qBias: string;
  vBias: string;
  /** Output projection; ignored when `outProjection` is false. */
  out: string;
  /** Sub-LN before the output projection (torchscale `inner_attn_ln`). */
  innerNorm: string;
}

export const BERT_ATTENTION_NAMES: Partial<AttentionNames> = { query: 'query', key: 'key', value: 'value' };
export const TIMM_ATTENTION_NAMES: Partial<AttentionNames> = { qkv: 'qkv', out: 'proj', qBias: 'q_bias', vBias: 'v_bias' };
export const TORCHSCALE_ATTENTION_NAMES: Partial<AttentionNames> = {
  query: 'q_proj',
  key: 'k_proj',
  value: 'v_proj',
  out: 'out_proj',
  innerNorm: 'inner_attn_ln',
};

const DEFAULT_NAMES: AttentionNames = {
  query: 'query',
  key: 'key',
  value: 'value',
  qkv: 'qkv',
  qBias: 'q_bias',
  vBias: 'v_bias',
  out: 'proj',
  innerNorm: 'inner_attn_ln',
};

export interface MultiHeadAttentionConfig {
  hiddenSize: number;
  numHeads: number;
  /** Width of the keys/values source; differs for cross-attention (BLIP `encoder_width`). Default hiddenSize. */
  kvSize?: number;
  /** Default 'separate'. */
  layout?: QkvLayout;
  /** Default 'full'. */
  qkvBias?: QkvBias;
  /** Whether this module owns the output projection. Default true (BERT's lives in `attention.output`). */
  outProjection?: boolean;
  outBias?: boolean;
  /** Sub-LN epsilon: adds a LayerNorm on the merged heads before the output projection (BEiT-3). */
  innerNormEps?: number | null;
  /**
   * One copy of q/k/v/out and the inner norm per expert, torchscale style (BEiT-3); every forward then
   * needs a route. Only for layout 'separate'.
   */
  multiway?: ExpertNaming;
  /** Dropout on attention probabilities (HF `attention_probs_dropout_prob`). Default 0. */
  attentionDropout?: number;
  names?: Partial<AttentionNames>;
  init?: WeightInit;
}

export interface AttentionForwardOptions {
  /** Keys/values source [B, Tk, kvSize] for cross-attention; absent means self-attention on x. */
  context?: tf.Tensor | null;
  /**
   * Additive mask or bias broadcastable to [B, H, Tq, Tk] (see masks.ts); a relative-position
   * bias can be added here too.
   */
  mask?: tf.Tensor | null;
  /** Adds a causal mask (query i sees keys ≤ past + i, past = cached positions). */
  causal?: boolean;
  /** Value for masked-out positions of the causal mask. Default -10000 (BERT). */
  maskValue?: number;
  /** Self cache: appends this step. Cross cache: computed on first use, then reused (context ignored). */
  cache?: AttentionCache | null;
  /**
   * Cross-attention: row i of x attends to context row `contextRows[i]`, so keys/values are projected once
   * per context row however many queries share it (several captions of one image; BLIP's ITM scores the
   * original and the synthetic caption of each image). A filled cross cache keeps its own row map, which
   * beam search updates (`AttentionCache.reorder`) without copying keys/values.
   */
  contextRows?: readonly number[] | null;
  /** Which expert each token uses; required when the projections are multiway, ignored otherwise. */
  route?: Route;
  rng?: Rng;
  outputAttentions?: boolean;
}

export type AttentionOutput = {
  /** [B, Tq, hiddenSize] */
  output: tf.Tensor;
  /** Softmax probabilities [B, H, Tq, Tk] (before dropout), when asked for. */
  attentions?: tf.Tensor;
};

/** The context row each of `b` query rows reads: given, or a cross cache's (after beam reorders); null: row i → i. */
function contextRowsOf(options: AttentionForwardOptions, cache: AttentionCache | null, b: number): readonly number[] | null {
  const rows = options.contextRows ?? (cache?.kind === 'cross' ? cache.rowSources : null);
  if (rows && rows.length !== b) {
    throw new VlError('SHAPE_MISMATCH', `contextRows has ${rows.length} entries for ${b} query rows`, {
      subject: 'MultiHeadAttention.forward',
    });
  }
  return rows;
}

type Projector = (x: tf.Tensor, route: Route | undefined) => tf.Tensor;

export class MultiHeadAttention extends Module {
  readonly hiddenSize: number;
  readonly numHeads: number;
  readonly headDim: number;
  readonly kvSize: number;
  readonly layout: QkvLayout;
  readonly scale: number;
  private readonly toQ: Projector;
  private readonly toK: Projector;
  private readonly toV: Projector;
  /** Fused self-attention: one matMul for q, k and v. */
  private readonly toQkv: ((x: tf.Tensor) => tf.Tensor) | null = null;
  private readonly toOut: Projector | null;
  private readonly innerNorm: Projector | null;
  private readonly dropout: Dropout;
  /** Projections have experts: forwards need a route over x's tokens. */
  private readonly multiway: boolean;

  constructor(config: MultiHeadAttentionConfig, rng: Rng) {
    super();
    const d = config.hiddenSize;
    const h = config.numHeads;
    if (d % h !== 0) {
      throw new VlError('CONFIG_INVALID', `hidden size ${d} is not divisible by ${h} heads`, { subject: 'MultiHeadAttention' });
    }
    this.hiddenSize = d;
    this.numHeads = h;
    this.headDim = d / h;
    this.kvSize = config.kvSize ?? d;
    this.layout = config.layout ?? 'separate';
    this.scale = 1 / Math.sqrt(this.headDim);
    const names = { ...DEFAULT_NAMES, ...config.names };
    const bias = config.qkvBias ?? 'full';
    const init = config.init ?? bertInit;
    const experts = config.multiway ?? null;
    this.multiway = experts !== null;
    if (experts && this.layout !== 'separate') {
      throw new VlError('CONFIG_INVALID', 'multiway attention needs the separate q/k/v layout (torchscale)', {
        subject: 'MultiHeadAttention',
      });
    }

    // A projection is a Linear, or one Linear per expert with tokens routed among them.
    const makeLinear = (name: string, inF: number, outF: number, withBias: boolean): Projector => {
      if (experts) {
        const mw = Multiway.place(this, name, experts, () => new Linear(inF, outF, rng, { bias: withBias, init }));
        return (x, route) => mw.forward(x, route, (l, p) => l.forward(p));
      }
      const lin = this.registerModule(name, new Linear(inF, outF, rng, { bias: withBias, init }));
      return (x) => lin.forward(x);
    };

    if (this.layout === 'separate') {
      this.toQ = makeLinear(names.query, d, d, bias !== 'none');
      this.toK = makeLinear(names.key, this.kvSize, d, bias === 'full');
      this.toV = makeLinear(names.value, this.kvSize, d, bias !== 'none');
    } else {
      // Fused weights: rows [0, D) make q, [D, 2D) k, [2D, 3D) v (timm, BLIP, torch MHA).
      let wq: tf.Tensor;
      let wk: tf.Tensor;
      let wv: tf.Tensor;
      let wAll: tf.Variable | null = null;
      let bAll: () => tf.Tensor | null;
      if (this.layout === 'fused') {
        if (this.kvSize !== d) {
          throw new VlError('CONFIG_INVALID', `fused qkv needs kvSize == hiddenSize (${this.kvSize} ≠ ${d})`, {
            subject: 'MultiHeadAttention',
            hint: "use layout 'separate' or 'in_proj' for cross-attention from another width",
          });
        }
        const qkv = this.registerModule(names.qkv, new Linear(d, 3 * d, rng, { bias: bias === 'full', init }));
        wAll = qkv.weight;
        if (bias === 'qv') {
          const qb = this.registerParameter(names.qBias, tf.zeros([d]));
          const vb = this.registerParameter(names.vBias, tf.zeros([d]));
          bAll = () => tf.concat([qb, tf.zerosLike(qb), vb]);
        } else {
          bAll = () => qkv.bias;
        }
      } else {
        if (this.kvSize === d) {
          wAll = this.registerParameter('in_proj_weight', init([3 * d, d], rng));
        } else {
          // torch.nn.MultiheadAttention with kdim/vdim ≠ embed_dim keeps three matrices.
          wq = this.registerParameter('q_proj_weight', init([d, d], rng));
          wk = this.registerParameter('k_proj_weight', init([d, this.kvSize], rng));
          wv = this.registerParameter('v_proj_weight', init([d, this.kvSize], rng));
        }
        const ib = bias === 'none' ? null : this.registerParameter('in_proj_bias', tf.zeros([3 * d]));
        bAll = () => ib;
      }
      const part = (i: number) => (t: tf.Tensor) => tf.slice(t, [i * d], [d]);
      const rows = (i: number) => (w: tf.Tensor) => tf.slice(w, [i * d, 0], [d, d]);
      const projector =
        (i: number, separate: () => tf.Tensor): Projector =>
        (x) =>
          tf.tidy(() => {
            const b = bAll();
            return linear(x, wAll ? rows(i)(wAll) : separate(), b ? part(i)(b) : null);
          });
      this.toQ = projector(0, () => wq);
      this.toK = projector(1, () => wk);
      this.toV = projector(2, () => wv);
      if (wAll) {
        const w = wAll;
        this.toQkv = (x) => tf.tidy(() => linear(x, w, bAll()));
      }
    }

    this.innerNorm = null;
    if (config.innerNormEps != null) {
      const eps = config.innerNormEps;
      if (experts) {
        const mw = Multiway.place(this, names.innerNorm, experts, () => new LayerNorm(d, eps));
        this.innerNorm = (x, route) => mw.forward(x, route, (n, p) => n.forward(p));
      } else {
        const ln = this.registerModule(names.innerNorm, new LayerNorm(d, eps));
        this.innerNorm = (x) => ln.forward(x);
      }
    }
    if (config.outProjection ?? true) {
      const outName = this.layout === 'in_proj' ? 'out_proj' : names.out;
      this.toOut = makeLinear(outName, d, d, config.outBias ?? true);
    } else {
      this.toOut = null;
    }
    this.dropout = this.registerModule('dropout', new Dropout(config.attentionDropout ?? 0));
  }

  /** Inference with @vl/accel's attention kernel available: nothing needs probabilities, dropout or a causal mask here. */
  private nativeAllowed(x: tf.Tensor, options: AttentionForwardOptions): boolean {
    return (
      x.dtype === 'float32' &&
      !options.outputAttentions &&
      !options.causal &&
      (!this.dropout.training || this.dropout.p === 0) &&
      nativeAttentionAvailable()
    );
  }

  /**
   * The same attention as the composed path below, through the native kernel: projections stay packed
   * ([B, T, 3D] qkv, [B, T, D] q/k/v) and the output comes back merged, so no head split, transpose or
   * score tensor is made. Caches keep their [B, H, T, Dh] layout. Null when the mask has a shape the
   * kernel does not read (the caller then runs the composed path).
   */
  private forwardNative(x: tf.Tensor, options: AttentionForwardOptions): tf.Tensor | null {
    const route = options.route;
    const cache = options.cache ?? null;
    const context = options.context ?? null;
    const [b, tq] = x.shape as [number, number, number];
    const d = this.hiddenSize;
    const dh = this.headDim;
    const crossCached = cache?.kind === 'cross' && cache.filled;
    const tk = crossCached ? cache.length : context ? (context.shape[1] as number) : (cache?.length ?? 0) + tq;
    const kvBatch = crossCached ? ((cache.key as tf.Tensor).shape[0] as number) : context ? (context.shape[0] as number) : b;
    const mask = options.mask ?? null;
    // With shared context rows, a mask may hold one padding row per context row (as the composed path gathers it).
    const maskByKvRow = !!mask && kvBatch !== b && mask.rank === 4 && mask.shape[0] === kvBatch && kvBatch !== 1;
    if (!maskFits(mask, [maskByKvRow ? kvBatch : b, this.numHeads, tq, tk])) return null;
    return tf.tidy(() => {
      let q: tf.Tensor;
      let qView: HeadView;
      let k: tf.Tensor;
      let kView: HeadView;
      let v: tf.Tensor;
      let vView: HeadView;
      if (crossCached) {
        q = this.toQ(x, route);
        qView = packedView(q, 0, dh);
        k = cache.key as tf.Tensor;
        v = cache.value as tf.Tensor;
        kView = splitView(k);
        vView = splitView(v);
      } else if (!context && this.toQkv && !cache) {
        q = k = v = this.toQkv(x); // [B, T, 3D]
        qView = packedView(q, 0, dh);
        kView = packedView(q, d, dh);
        vView = packedView(q, 2 * d, dh);
      } else {
        let kp: tf.Tensor;
        let vp: tf.Tensor;
        if (!context && this.toQkv) {
          [q, kp, vp] = tf.split(this.toQkv(x), 3, 2) as [tf.Tensor, tf.Tensor, tf.Tensor];
        } else {
          const src = context ?? x;
          q = this.toQ(x, route);
          kp = this.toK(src, route);
          vp = this.toV(src, route);
        }
        qView = packedView(q, 0, dh);
        if (cache) {
          [k, v] = cache.update(this.splitHeads(kp), this.splitHeads(vp));
          kView = splitView(k);
          vView = splitView(v);
        } else {
          [k, v] = [kp, vp];
          kView = packedView(k, 0, dh);
          vView = packedView(v, 0, dh);
        }
      }
      // One context row broadcast to every query row (as matMul broadcasts it) is rows of zeros.
      const rows = contextRowsOf(options, cache, b) ?? (kvBatch === 1 && b > 1 ? new Array<number>(b).fill(0) : null);
      if (!rows && kvBatch !== b) {
        throw new VlError('SHAPE_MISMATCH', `keys/values have batch ${kvBatch} but the queries ${b}`, {
          subject: 'MultiHeadAttention.forward',
          hint: 'pass contextRows to say which context row each query row reads',
        });
      }
      let out = nativeAttention({
        q,
        qView,
        k,
        kView,
        v,
        vView,
        kvBatch,
        kvRows: rows,
        mask,
        maskByKvRow,
        batch: b,
        queryLength: tq,
        keyLength: tk,
        heads: this.numHeads,
        headDim: dh,
        scale: this.scale,
      });
      if (this.innerNorm) out = this.innerNorm(out, route);
      if (this.toOut) out = this.toOut(out, route);
      return out;
    });
  }

  /** [B, T, D] → [B, H, T, Dh] */
  private splitHeads(x: tf.Tensor): tf.Tensor {
    const [b, t] = x.shape as [number, number, number];
    return tf.transpose(tf.reshape(x, [b, t, this.numHeads, this.headDim]), [0, 2, 1, 3]);
  }

  forward(x: tf.Tensor, options: AttentionForwardOptions = {}): AttentionOutput {
    if (x.rank !== 3 || x.shape[2] !== this.hiddenSize) {
      throw new VlError('SHAPE_MISMATCH', `attention input must be [B, T, ${this.hiddenSize}], got [${x.shape}]`, {
        subject: 'MultiHeadAttention.forward',
      });
    }
    const route = options.route;
    const cache = options.cache ?? null;
    const context = options.context ?? null;
    if (this.multiway && context) {
      throw new VlError('INVALID_ARGUMENT', 'multiway attention is self-attention only: a route names the tokens of x', {
        subject: 'MultiHeadAttention.forward',
        hint: 'use shared projections for cross-attention',
      });
    }
    if (cache && (cache.kind === 'self' ? context !== null : context === null && !cache.filled)) {
      throw new VlError('INVALID_ARGUMENT', `a ${cache.kind}-attention cache was passed to ${context ? 'cross' : 'self'}-attention`, {
        subject: 'MultiHeadAttention.forward',
        hint: 'pass layerCache.self to self-attention and layerCache.cross (with the context) to cross-attention',
      });
    }
    if (this.nativeAllowed(x, options)) {
      const out = this.forwardNative(x, options);
      if (out) return { output: out };
    }
    return tf.tidy(() => {
      const [b, tq] = x.shape as [number, number, number];
      let q: tf.Tensor;
      let k: tf.Tensor;
      let v: tf.Tensor;
      if (cache?.kind === 'cross' && cache.filled) {
        // Image keys/values were projected at the first step; only the query is new.
        q = this.splitHeads(this.toQ(x, route)); // [B, H, Tq, Dh]
        k = cache.key as tf.Tensor; // [B, H, Tk, Dh]
        v = cache.value as tf.Tensor;
      } else {
        if (!context && this.toQkv) {
          const [q2, k2, v2] = tf.split(this.toQkv(x), 3, 2); // 3 × [B, T, D]
          q = this.splitHeads(q2 as tf.Tensor);
          k = this.splitHeads(k2 as tf.Tensor);
          v = this.splitHeads(v2 as tf.Tensor);
        } else {
          const src = context ?? x;
          q = this.splitHeads(this.toQ(x, route)); // [B, H, Tq, Dh]
          k = this.splitHeads(this.toK(src, route)); // [B, H, Tk, Dh]
          v = this.splitHeads(this.toV(src, route));
        }
        if (cache) [k, v] = cache.update(k, v);
      }
      let mask = options.mask ?? null;
      const rows = contextRowsOf(options, cache, b);
      if (rows && !options.causal) {
        const shared = attendSharedContext(q, k, v, options.mask ?? null, rows, this.scale, (p) => this.dropout.forward(p, options.rng));
        if (shared) {
          let out = tf.reshape(shared.weighted, [b, tq, this.hiddenSize]); // [B, Tq, D]
          if (this.innerNorm) out = this.innerNorm(out, route);
          if (this.toOut) out = this.toOut(out, route);
          return options.outputAttentions ? { output: out, attentions: shared.probs() } : { output: out };
        }
        if (!(rows.length === k.shape[0] && contextGroupSize(rows, rows.length) === 1)) {
          // Rows in no regular grouping (or a per-query mask): copy each row's keys/values.
          const idx = tf.tensor1d(rows as number[], 'int32');
          if (mask && mask.shape[0] === k.shape[0] && mask.shape[0] !== 1) mask = tf.gather(mask, idx);
          k = tf.gather(k, idx);
          v = tf.gather(v, idx);
        }
      }
      const tk = k.shape[2] as number;
      let scores = tf.mul(tf.matMul(q, k, false, true), this.scale); // [B, H, Tq, Tk]
      if (options.causal) {
        const value = options.maskValue ?? BERT_MASK_VALUE;
        const allowed = tf.reshape(causalAllowed(tq, tk), [1, 1, tq, tk]); // [1, 1, Tq, Tk]
        const blocked = tf.mul(tf.sub(1, allowed), value);
        // Select rather than add: a key masked twice keeps `value` (twice the float32 minimum
        // overflows to -inf), and a bias passed in `mask` keeps its sign where allowed.
        mask = mask ? tf.add(tf.mul(mask, allowed), blocked) : blocked;
      }
      if (mask) scores = tf.add(scores, mask);
      const probs = softmaxLastAxis(scores); // [B, H, Tq, Tk]
      const weighted = tf.matMul(this.dropout.forward(probs, options.rng), v); // [B, H, Tq, Dh]
      let out = tf.reshape(tf.transpose(weighted, [0, 2, 1, 3]), [b, tq, this.hiddenSize]); // [B, Tq, D]
      if (this.innerNorm) out = this.innerNorm(out, route);
      if (this.toOut) out = this.toOut(out, route);
      return options.outputAttentions ? { output: out, attentions: probs } : { output: out };
    });
  }
}
