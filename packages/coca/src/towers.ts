// The towers CoCa and CLIP share, ported from open_clip v3.3.0 `transformer.py`: the ViT
// (`VisionTransformer`, with CoCa's attentional pooler), the text transformer (`TextTransformer`,
// causal; CoCa appends a CLS after the text and masks pads with open_clip's legacy shifted mask) and
// CoCa's captioning decoder (`MultimodalTransformer`: self-attention blocks interleaved with
// cross-attention blocks to the image tokens). Every block is core's pre-LN TransformerLayer under
// open_clip's names (ln_1, attn.in_proj_weight, ln_2, mlp.c_fc, mlp.c_proj; ln_1_kv for cross blocks),
// LayerNorm eps 1e-5, exact-erf GELU unless the config says quick_gelu.
import * as tf from '@tensorflow/tfjs-core';
import {
  type Activation,
  AttentionPooler,
  Embedding,
  type KVCache,
  LayerNorm,
  type Module,
  type ModuleList,
  normal,
  OPEN_CLIP_LAYER_NAMES,
  PatchEmbedding,
  PathModule,
  type Rng,
  TransformerLayer,
  VlError,
} from '@vl/core';
import type { MultimodalCfg, TextCfg, VisionCfg } from './config.js';

/** open_clip's masks are additive -inf; a large finite value gives the same softmax and no 0·∞ = NaN. */
export const MASK_VALUE = -1e9;
const EPS = 1e-5;

/** 1/0 [Tq, Tk]: query i (at position Tk − Tq + i) sees keys ≤ its position. */
export function causalAllowed(tq: number, tk: number): tf.Tensor2D {
  const past = tk - tq;
  const data = new Float32Array(tq * tk);
  for (let i = 0; i < tq; i++) for (let j = 0; j <= past + i; j++) data[i * tk + j] = 1;
  return tf.tensor2d(data, [tq, tk]);
}

function openClipLayer(d: number, heads: number, mlp: number, activation: Activation, rng: Rng, cross = false): TransformerLayer {
  return new TransformerLayer(
    {
      hiddenSize: d,
      numHeads: heads,
      intermediateSize: mlp,
      layerNormEps: EPS,
      activation,
      qkvLayout: 'in_proj',
      attentionKind: cross ? 'cross' : 'self',
      names: OPEN_CLIP_LAYER_NAMES,
    },
    rng,
  );
}

/** `x[:, i]` of [B, T, D] → [B, D]. */
function token(x: tf.Tensor, i: number): tf.Tensor2D {
  const [b, , d] = x.shape as [number, number, number];
  return tf.reshape(tf.slice(x, [0, i, 0], [b, 1, d]), [b, d]);
}

export type VisionOutput = {
  /** [B, embedDim], not normalised: CoCa's pooled query 0 / CLIP's CLS, after ln_post, @ proj. */
  latent: tf.Tensor2D;
  /** CoCa: the captioning tokens [B, Q − 1, embedDim] (ln_post, no projection); CLIP: absent. */
  tokens?: tf.Tensor3D;
};

/** open_clip `VisionTransformer` (the `visual.*` keys). */
export class VisionTower extends PathModule {
  readonly conv1: PatchEmbedding;
  readonly classEmbedding: tf.Variable;
  readonly positionalEmbedding: tf.Variable;
  readonly lnPre: LayerNorm;
  readonly blocks: ModuleList<TransformerLayer>;
  readonly attnPool: AttentionPooler | null;
  readonly lnPost: LayerNorm;
  readonly proj: tf.Variable;
  /** The pooling ablation's own head ('mean' / 'cls' contrastive pooling); null for open_clip's models. */
  readonly contrastiveLn: LayerNorm | null = null;
  readonly contrastiveProj: tf.Variable | null = null;

  constructor(
    readonly cfg: VisionCfg,
    readonly embedDim: number,
    activation: Activation,
    rng: Rng,
  ) {
    super();
    const w = cfg.width;
    const grid = cfg.imageSize / cfg.patchSize;
    const scale = w ** -0.5;
    this.conv1 = this.registerModule('conv1', new PatchEmbedding(3, cfg.patchSize, w, rng, { bias: false }));
    this.classEmbedding = this.placeParameter('class_embedding', normal([w], rng, scale));
    this.positionalEmbedding = this.placeParameter('positional_embedding', normal([grid * grid + 1, w], rng, scale));
    this.lnPre = this.registerModule('ln_pre', new LayerNorm(w, EPS));
    const heads = w / cfg.headWidth;
    const mlp = Math.trunc(w * cfg.mlpRatio);
    this.blocks = this.placeModuleList(
      'transformer.resblocks',
      Array.from({ length: cfg.layers }, () => openClipLayer(w, heads, mlp, activation, rng)),
    );
    // With the pooler, ln_post and proj act on embedDim-wide pooled tokens; without, on the CLS of width W.
    this.attnPool = cfg.attentionalPool
      ? this.registerModule(
          'attn_pool',
          new AttentionPooler(
            { dModel: embedDim, contextDim: w, numHeads: cfg.attnPoolerHeads, numQueries: cfg.attnPoolerQueries, layerNormEps: EPS },
            rng,
          ),
        )
      : null;
    const outWidth = this.attnPool ? embedDim : w;
    this.lnPost = this.registerModule('ln_post', new LayerNorm(outWidth, EPS));
    this.proj = this.placeParameter('proj', normal([outWidth, embedDim], rng, outWidth ** -0.5));
    const mode = cfg.contrastivePool ?? 'attn';
    if (mode !== 'attn') {
      if (!this.attnPool) {
        throw new VlError('CONFIG_INVALID', `contrastive_pool '${mode}' is a CoCa ablation: it needs the attentional pooler`, {
          subject: 'vision_cfg',
        });
      }
      this.contrastiveLn = this.registerModule('contrastive_ln', new LayerNorm(w, EPS));
      this.contrastiveProj = this.placeParameter('contrastive_proj', normal([w, embedDim], rng, w ** -0.5));
    }
  }

  /** `_embeds`: patches (conv1, no bias) → [CLS; patches] + positions → ln_pre. [B, 1 + g², W]. */
  embeds(pixels: tf.Tensor): tf.Tensor3D {
    const expected = this.cfg.imageSize;
    if (pixels.rank !== 4 || pixels.shape[2] !== expected || pixels.shape[3] !== expected) {
      throw new VlError('SHAPE_MISMATCH', `image must be [B, 3, ${expected}, ${expected}], got [${pixels.shape}]`, {
        subject: 'VisionTower',
        hint: 'resize and normalise images first (the config’s image_size)',
      });
    }
    return tf.tidy(() => {
      const { patches } = this.conv1.forward(pixels); // [B, N, W]
      const [b, , w] = patches.shape as [number, number, number];
      const cls = tf.broadcastTo(tf.reshape(this.classEmbedding, [1, 1, w]), [b, 1, w]);
      const x = tf.add(tf.concat([cls, patches], 1), this.positionalEmbedding); // [B, 1 + N, W]
      return this.lnPre.forward(x) as tf.Tensor3D;
    });
  }

  /** `transformer(_embeds(x))`: the trunk tokens before any pooling or ln_post. [B, 1 + g², W]. */
  trunk(pixels: tf.Tensor, rng?: Rng): tf.Tensor3D {
    return tf.tidy(() => {
      let x: tf.Tensor = this.embeds(pixels);
      for (const block of this.blocks) x = block.forward(x, { rng }).hidden;
      return x as tf.Tensor3D;
    });
  }

  /** The pooler's raw output [B, Q, embedDim] (before ln_post); CoCa only. */
  pool(trunk: tf.Tensor): tf.Tensor3D {
    if (!this.attnPool) throw new VlError('INVALID_ARGUMENT', 'this vision tower has no attentional pooler', { subject: 'VisionTower' });
    return this.attnPool.forward(trunk).pooled as tf.Tensor3D;
  }

  forward(pixels: tf.Tensor, rng?: Rng): VisionOutput {
    return tf.tidy(() => {
      const x = this.trunk(pixels, rng);
      if (!this.attnPool) {
        const latent = tf.matMul(this.lnPost.forward(token(x, 0)), this.proj) as tf.Tensor2D;
        return { latent };
      }
      const pooled = this.lnPost.forward(this.pool(x)); // [B, Q, E]
      const [b, q, e] = pooled.shape as [number, number, number];
      let latent: tf.Tensor2D;
      if (this.contrastiveLn && this.contrastiveProj) {
        // Pooling ablation: the trunk's mean token or its CLS instead of pooler query 0.
        const src = this.cfg.contrastivePool === 'mean' ? (tf.mean(x, 1) as tf.Tensor2D) : token(x, 0);
        latent = tf.matMul(this.contrastiveLn.forward(src), this.contrastiveProj) as tf.Tensor2D;
      } else {
        latent = tf.matMul(token(pooled, 0), this.proj) as tf.Tensor2D;
      }
      const tokens = tf.slice(pooled, [0, 1, 0], [b, q - 1, e]) as tf.Tensor3D;
      return { latent, tokens };
    });
  }
}

/**
 * The additive self-attention mask of the text tower, [B or 1, 1, T, T]: causal, plus for CoCa the
 * key-padding mask built as open_clip v3 builds it (`correct_cls_mask=False`): valid = [True] +
 * (ids ≠ pad), so key j ≥ 1 is hidden from every query iff ids[j − 1] is a pad.
 */
export function textAttentionMask(ids: tf.Tensor2D, withCls: boolean, padId: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, l] = ids.shape;
    const t = l + (withCls ? 1 : 0);
    let allowed: tf.Tensor = tf.reshape(causalAllowed(t, t), [1, 1, t, t]);
    if (withCls) {
      const valid = tf.concat([tf.ones([b, 1]), tf.cast(tf.notEqual(ids, padId), 'float32')], 1); // [B, L + 1]
      allowed = tf.mul(allowed, tf.reshape(valid, [b, 1, 1, t]));
    }
    return tf.mul(tf.sub(1, allowed), MASK_VALUE) as tf.Tensor4D;
  });
}

export type TextOutput = {
  /** [B, embedDim], not normalised. */
  latent: tf.Tensor2D;
  /** CoCa: the decoder's input tokens x[:, :L] (no ln_final) [B, L, D]; CLIP: absent. */
  tokens?: tf.Tensor3D;
};

/** How an owner module registers a tower's tensors at dotted paths (PathModule's protected helpers). */
export interface Placer {
  param(path: string, value: tf.Tensor): tf.Variable;
  module<T extends Module>(path: string, m: T): T;
  list<T extends Module>(path: string, ms: readonly T[]): ModuleList<T>;
}

/**
 * open_clip `TextTransformer`. CoCa keeps it under `text.*` with a `cls_emb`; CLIP keeps the same tensors
 * at the top level of the state dict (OpenAI's names), so the owner passes the prefix.
 */
export class TextTower {
  readonly tokenEmbedding: Embedding;
  readonly positionalEmbedding: tf.Variable;
  readonly clsEmb: tf.Variable | null;
  readonly blocks: ModuleList<TransformerLayer>;
  readonly lnFinal: LayerNorm;
  readonly textProjection: tf.Variable;

  constructor(
    readonly cfg: TextCfg,
    readonly embedDim: number,
    parts: {
      tokenEmbedding: Embedding;
      positionalEmbedding: tf.Variable;
      clsEmb: tf.Variable | null;
      blocks: ModuleList<TransformerLayer>;
      lnFinal: LayerNorm;
      textProjection: tf.Variable;
    },
  ) {
    this.tokenEmbedding = parts.tokenEmbedding;
    this.positionalEmbedding = parts.positionalEmbedding;
    this.clsEmb = parts.clsEmb;
    this.blocks = parts.blocks;
    this.lnFinal = parts.lnFinal;
    this.textProjection = parts.textProjection;
  }

  /** Builds the tower's parameters under `owner` at `prefix` ('text.' for CoCa, '' for CLIP). */
  static place(place: Placer, prefix: string, cfg: TextCfg, embedDim: number, activation: Activation, rng: Rng): TextTower {
    const w = cfg.width;
    const numPos = cfg.contextLength + (cfg.embedCls ? 1 : 0);
    const tokenEmbedding = place.module(
      `${prefix}token_embedding`,
      new Embedding(cfg.vocabSize, w, rng, { init: (s, r) => normal(s, r, 0.02) }),
    );
    const positionalEmbedding = place.param(`${prefix}positional_embedding`, normal([numPos, w], rng, 0.01));
    const clsEmb = cfg.embedCls ? place.param(`${prefix}cls_emb`, normal([w], rng, 0.01)) : null;
    const mlp = Math.trunc(w * cfg.mlpRatio);
    const blocks = place.list(
      `${prefix}transformer.resblocks`,
      Array.from({ length: cfg.layers }, () => openClipLayer(w, cfg.heads, mlp, activation, rng)),
    );
    const lnFinal = place.module(`${prefix}ln_final`, new LayerNorm(w, EPS));
    const textProjection = place.param(`${prefix}text_projection`, normal([w, embedDim], rng, w ** -0.5));
    return new TextTower(cfg, embedDim, { tokenEmbedding, positionalEmbedding, clsEmb, blocks, lnFinal, textProjection });
  }

  private checkIds(ids: tf.Tensor): void {
    const l = ids.shape[1] as number;
    if (ids.rank !== 2 || l < 1) {
      throw new VlError('SHAPE_MISMATCH', `text must be [B, L] token ids, got [${ids.shape}]`, { subject: 'TextTower' });
    }
    const max = this.cfg.contextLength;
    if (this.clsEmb ? l > max : l !== max) {
      throw new VlError(
        'SHAPE_MISMATCH',
        this.clsEmb
          ? `text has ${l} tokens, more than the context length ${max}`
          : `CLIP text must be exactly ${max} tokens (the context length), got ${l}`,
        { subject: 'TextTower', hint: 'tokenize with fitText(), which truncates and pads as open_clip’s tokenizer does' },
      );
    }
  }

  /** Embeddings + positions (+ CLS) and the mask: the input of the blocks. */
  private embeds(ids: tf.Tensor2D): { x: tf.Tensor3D; mask: tf.Tensor4D } {
    return tf.tidy(() => {
      const b = ids.shape[0];
      let x = this.tokenEmbedding.forward(ids); // [B, L, W]
      const w = x.shape[2] as number;
      if (this.clsEmb) x = tf.concat([x, tf.broadcastTo(tf.reshape(this.clsEmb, [1, 1, w]), [b, 1, w])], 1); // [B, L + 1, W]
      const t = x.shape[1] as number;
      x = tf.add(x, tf.slice(this.positionalEmbedding, [0, 0], [t, w]));
      return { x: x as tf.Tensor3D, mask: textAttentionMask(ids, this.clsEmb !== null, this.cfg.padId) };
    });
  }

  forward(ids: tf.Tensor2D, rng?: Rng): TextOutput {
    this.checkIds(ids);
    return tf.tidy(() => {
      const { x: x0, mask } = this.embeds(tf.cast(ids, 'int32') as tf.Tensor2D);
      let x: tf.Tensor = x0;
      for (const block of this.blocks) x = block.forward(x, { mask, rng }).hidden;
      const [b, t, w] = x.shape as [number, number, number];
      if (this.clsEmb) {
        // CoCa: ln_final on the CLS only; the decoder reads the raw tokens.
        const latent = tf.matMul(this.lnFinal.forward(token(x, t - 1)), this.textProjection) as tf.Tensor2D;
        return { latent, tokens: tf.slice(x, [0, 0, 0], [b, t - 1, w]) as tf.Tensor3D };
      }
      // CLIP: ln_final everywhere, the feature at the first position of the highest id (the eot).
      const normed = this.lnFinal.forward(x);
      const at = tf.argMax(ids, 1); // first maximum, as torch.argmax
      const rows = tf.add(tf.range(0, b * t, t, 'int32'), tf.cast(at, 'int32')); // flat index b·T + pos
      const pooled = tf.gather(tf.reshape(normed, [b * t, w]), rows); // [B, W]
      return { latent: tf.matMul(pooled, this.textProjection) as tf.Tensor2D };
    });
  }

  /**
   * Cached step: the tokens `ids` [B, T] at positions past..past+T−1 given the cache of the earlier ones,
   * with `prevIds` [B, past + T] all ids so far (the shifted pad mask of key j reads id j − 1). Returns
   * the raw token states [B, T, W]; the CLS is never computed (no text token attends to it).
   */
  stepTokens(ids: tf.Tensor2D, allIds: tf.Tensor2D, cache: KVCache): tf.Tensor3D {
    return tf.tidy(() => {
      const [b, tNew] = ids.shape;
      const past = cache.length;
      const total = past + tNew;
      if (total > this.positionalEmbedding.shape[0]) {
        throw new VlError('SHAPE_MISMATCH', `text of ${total} tokens exceeds the context length`, { subject: 'TextTower.stepTokens' });
      }
      let x: tf.Tensor = this.tokenEmbedding.forward(tf.cast(ids, 'int32'));
      const w = x.shape[2] as number;
      x = tf.add(x, tf.slice(this.positionalEmbedding, [past, 0], [tNew, w]));
      let allowed: tf.Tensor = tf.reshape(causalAllowed(tNew, total), [1, 1, tNew, total]);
      if (this.clsEmb) {
        const prev = tf.slice(allIds, [0, 0], [b, total - 1]);
        const valid = tf.concat([tf.ones([b, 1]), tf.cast(tf.notEqual(prev, this.cfg.padId), 'float32')], 1); // [B, total]
        allowed = tf.mul(allowed, tf.reshape(valid, [b, 1, 1, total]));
      }
      const mask = tf.mul(tf.sub(1, allowed), MASK_VALUE);
      for (let i = 0; i < this.blocks.length; i++) x = this.blocks.at(i).forward(x, { mask, cache: cache.layer(i).self }).hidden;
      return x as tf.Tensor3D;
    });
  }
}

/** open_clip `MultimodalTransformer` (the `text_decoder.*` keys). */
export class MultimodalDecoder extends PathModule {
  readonly resblocks: ModuleList<TransformerLayer>;
  readonly crossAttn: ModuleList<TransformerLayer>;
  readonly lnFinal: LayerNorm;
  readonly textProjection: tf.Variable;

  constructor(
    readonly cfg: MultimodalCfg,
    activation: Activation,
    rng: Rng,
  ) {
    super();
    const d = cfg.width;
    // open_clip's MultimodalTransformer always uses mlp_ratio 4 (MultimodalCfg.mlp_ratio is ignored).
    const make = (cross: boolean) => Array.from({ length: cfg.layers }, () => openClipLayer(d, cfg.heads, 4 * d, activation, rng, cross));
    this.resblocks = this.placeModuleList('resblocks', make(false));
    this.crossAttn = this.placeModuleList('cross_attn', make(true));
    this.lnFinal = this.registerModule('ln_final', new LayerNorm(d, EPS));
    this.textProjection = this.placeParameter('text_projection', normal([d, cfg.vocabSize], rng, d ** -0.5));
  }

  /** image tokens [B, S, D], text tokens [B, T, D] → logits [B, T, V]; with a cache, T new tokens after the cached ones. */
  forward(imageEmbs: tf.Tensor, textEmbs: tf.Tensor, options: { cache?: KVCache | null; rng?: Rng } = {}): tf.Tensor3D {
    return tf.tidy(() => {
      const cache = options.cache ?? null;
      let x: tf.Tensor = textEmbs;
      const tq = textEmbs.shape[1] as number;
      const past = cache ? cache.length : 0;
      const mask = tf.reshape(tf.mul(tf.sub(1, causalAllowed(tq, past + tq)), MASK_VALUE), [1, 1, tq, past + tq]);
      for (let i = 0; i < this.resblocks.length; i++) {
        const layerCache = cache ? cache.layer(i) : null;
        x = this.resblocks.at(i).forward(x, { mask, cache: layerCache?.self, rng: options.rng }).hidden;
        x = this.crossAttn.at(i).forward(x, { context: imageEmbs, cache: layerCache?.cross, rng: options.rng }).hidden;
      }
      const [b, t, d] = x.shape as [number, number, number];
      const logits = tf.matMul(tf.reshape(this.lnFinal.forward(x), [b * t, d]), this.textProjection); // [B·T, V]
      return tf.reshape(logits, [b, t, this.cfg.vocabSize]) as tf.Tensor3D;
    });
  }
}
