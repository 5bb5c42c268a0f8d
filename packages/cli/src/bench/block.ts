// A BERT/ViT-base-size pre-LN transformer block built from nn/functional and tf ops, the unit
// the bench times forward and forward+backward (weights as plain tensors, no Module).
import * as tf from '@tensorflow/tfjs-core';
import { gelu, layerNorm, linear } from '@vl/core';

export interface BlockShape {
  /** Model width (768 in BERT/ViT-base). */
  hidden: number;
  heads: number;
  /** MLP width (3072 = 4 × hidden in base models). */
  ffn: number;
  /** Sequences per step (8 images). */
  batch: number;
  /** Tokens per sequence (197 = 14×14 patches + [CLS] for ViT-B/16 at 224 px). */
  tokens: number;
}

export const BASE_BLOCK: BlockShape = { hidden: 768, heads: 12, ffn: 3072, batch: 8, tokens: 197 };

/** Parameter names in PyTorch order, so the gradient list reads like a state dict. */
const PARAM_NAMES = ['ln1w', 'ln1b', 'wq', 'bq', 'wk', 'bk', 'wv', 'bv', 'wo', 'bo', 'ln2w', 'ln2b', 'w1', 'b1', 'w2', 'b2'] as const;
type ParamName = (typeof PARAM_NAMES)[number];
export type BlockParams = Record<ParamName, tf.Tensor>;

function paramShape(name: ParamName, s: BlockShape): number[] {
  switch (name) {
    case 'w1':
      return [s.ffn, s.hidden]; // Linear weights [out, in], as PyTorch
    case 'b1':
      return [s.ffn];
    case 'w2':
      return [s.hidden, s.ffn];
    case 'wq':
    case 'wk':
    case 'wv':
    case 'wo':
      return [s.hidden, s.hidden];
    default:
      return [s.hidden];
  }
}

/** Seeded weights at BERT's init scale (std 0.02), LayerNorm at identity. */
export function createBlockParams(shape: BlockShape, seed = 0): BlockParams {
  const params = {} as BlockParams;
  PARAM_NAMES.forEach((name, i) => {
    const dims = paramShape(name, shape);
    params[name] = name.startsWith('ln')
      ? name.endsWith('w')
        ? tf.ones(dims)
        : tf.zeros(dims)
      : tf.randomUniform(dims, -0.035, 0.035, 'float32', seed + i); // uniform with std 0.02
  });
  return params;
}

export function disposeBlockParams(params: BlockParams): void {
  tf.dispose(Object.values(params));
}

/** y = h + MLP(LN2(h)), h = x + Attn(LN1(x)); x: [B, T, D]. */
export function blockForward(x: tf.Tensor, p: BlockParams, shape: BlockShape): tf.Tensor {
  return tf.tidy(() => {
    const { batch: B, tokens: T, hidden: D, heads: H } = shape;
    const Dh = D / H;
    const toHeads = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [B, T, H, Dh]), [0, 2, 1, 3]); // [B, H, T, Dh]
    const ln1 = layerNorm(x, p.ln1w, p.ln1b, 1e-12);
    const q = toHeads(linear(ln1, p.wq, p.bq));
    const k = toHeads(linear(ln1, p.wk, p.bk));
    const v = toHeads(linear(ln1, p.wv, p.bv));
    const scores = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(Dh)); // [B, H, T, T]
    const context = tf.reshape(tf.transpose(tf.matMul(tf.softmax(scores), v), [0, 2, 1, 3]), [B, T, D]);
    const h = tf.add(x, linear(context, p.wo, p.bo));
    const mlp = linear(gelu(linear(layerNorm(h, p.ln2w, p.ln2b, 1e-12), p.w1, p.b1)), p.w2, p.b2);
    return tf.add(h, mlp);
  });
}

/** Gradients of Σ(y·dy) with respect to x and every parameter: one full backward pass. */
export function blockForwardBackward(x: tf.Tensor, p: BlockParams, shape: BlockShape, dy: tf.Tensor): tf.Tensor[] {
  const values = PARAM_NAMES.map((name) => p[name]);
  const grad = tf.grads((input: tf.Tensor, ...weights: tf.Tensor[]) => {
    const named = Object.fromEntries(PARAM_NAMES.map((name, i) => [name, weights[i] as tf.Tensor])) as BlockParams;
    return blockForward(input, named, shape);
  });
  return grad([x, ...values], dy);
}

/** Matmul FLOPs of one forward (2·m·k·n each); element-wise work is not counted. */
export function blockForwardFlops(s: BlockShape): number {
  const tokens = s.batch * s.tokens;
  const projections = 2 * tokens * (4 * s.hidden * s.hidden + 2 * s.hidden * s.ffn);
  const attention = 2 * 2 * s.batch * s.tokens * s.tokens * s.hidden; // QKᵀ and P·V over all heads
  return projections + attention;
}
