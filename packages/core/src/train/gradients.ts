// Gradient utilities: global-norm clipping (PyTorch `clip_grad_norm_`) and accumulation over
// micro-batches so that k micro-batches step like one batch k times as large.
import * as tf from '@tensorflow/tfjs-core';

/** √(Σ‖g‖²) over all gradients, a scalar tensor. */
export function globalNorm(grads: Iterable<tf.Tensor>): tf.Scalar {
  return tf.tidy(() => {
    const squares = [...grads].map((g) => tf.sum(tf.square(g)));
    return (squares.length === 0 ? tf.scalar(0) : tf.sqrt(tf.addN(squares))) as tf.Scalar;
  });
}

/**
 * Scales every gradient by min(1, maxNorm / (norm + 1e-6)) as PyTorch's `clip_grad_norm_`, and
 * returns the norm before clipping (for the log). Returns new tensors; the inputs are not disposed.
 */
export function clipByGlobalNorm(grads: Map<string, tf.Tensor>, maxNorm: number): { grads: Map<string, tf.Tensor>; norm: tf.Scalar } {
  const norm = globalNorm(grads.values());
  const out = new Map<string, tf.Tensor>();
  tf.tidy(() => {
    const coef = tf.minimum(tf.div(maxNorm, tf.add(norm, 1e-6)), 1);
    for (const [k, g] of grads) out.set(k, tf.keep(tf.mul(g, coef)));
  });
  return { grads: out, norm };
}

/**
 * Sums micro-batch gradients and hands back their mean. With micro-batches of equal size and a
 * forward whose loss is a batch mean, the mean of k micro-batch gradients is the gradient of the
 * big batch. A short last group (end of epoch) is averaged over the micro-batches it has.
 */
export class GradientAccumulator {
  private sums = new Map<string, tf.Tensor>();
  private n = 0;

  /** Adds one micro-batch's gradients (the accumulator keeps its own copy; inputs are not disposed). */
  add(grads: Map<string, tf.Tensor>): void {
    for (const [k, g] of grads) {
      const prev = this.sums.get(k);
      const next = tf.keep(prev ? tf.add(prev, g) : tf.clone(g));
      prev?.dispose();
      this.sums.set(k, next);
    }
    this.n++;
  }

  get count(): number {
    return this.n;
  }

  /** The mean gradients so far (caller owns them); the accumulator is empty afterwards. */
  take(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const [k, s] of this.sums) {
      out.set(k, this.n === 1 ? s : tf.keep(tf.tidy(() => tf.div(s, this.n))));
      if (this.n !== 1) s.dispose();
    }
    this.sums = new Map();
    this.n = 0;
    return out;
  }

  reset(): void {
    for (const s of this.sums.values()) s.dispose();
    this.sums = new Map();
    this.n = 0;
  }
}
