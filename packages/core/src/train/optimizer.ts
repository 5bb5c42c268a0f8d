// AdamW with decoupled weight decay, numerically as PyTorch's `torch.optim.AdamW`, with the
// usual exemption of norms, biases and scalars from decay; its state saves and loads exactly.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import { compilePattern, type NamePattern } from '../nn/module.js';
import { assertFitsWasmHeap } from '../runtime/memory.js';

export interface AdamWOptions {
  /** Base learning rate; a schedule passes the current one to `step`. ALBEF 1e-4, BLIP 3e-4 (pretraining). */
  lr?: number;
  betas?: [number, number];
  eps?: number;
  /** Decoupled decay λ: p ← p·(1 − lr·λ) before the Adam update. PyTorch default 0.01; ALBEF 0.02, BLIP 0.05. */
  weightDecay?: number;
  /**
   * Which parameters get no decay. Default rule, as timm's `add_weight_decay` used by ALBEF:
   * rank ≤ 1 (biases, LayerNorm/BatchNorm weights, the ITC temperature) or a name ending in
   * `.bias`, plus any name matching these patterns (`*`/`**` as in `Module.freeze`), e.g.
   * `['**.cls_token', '**.pos_embed']` for the ViT tokens timm exempts.
   */
  noDecay?: NamePattern[];
  /** Replace the rank ≤ 1 rule (e.g. `() => false` to decay everything not matched by name). */
  noDecayRule?: (name: string, param: tf.Variable) => boolean;
}

interface ParamState {
  expAvg: tf.Tensor;
  expAvgSq: tf.Tensor;
  step: number;
}

/** The optimizer's state for checkpoints: moment tensors by key plus JSON-able numbers. */
export interface OptimizerState {
  tensors: Map<string, tf.Tensor>;
  meta: { steps: Record<string, number>; hyper: Required<Omit<AdamWOptions, 'noDecay' | 'noDecayRule'>> };
}

export class AdamW {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private readonly params: Map<string, tf.Variable>;
  private readonly decay = new Map<string, boolean>();
  private readonly state = new Map<string, ParamState>();

  /** params: named trainable parameters, e.g. `model.namedParameters().filter(([, p]) => p.trainable)`. */
  constructor(params: Iterable<[string, tf.Variable]>, options: AdamWOptions = {}) {
    this.lr = options.lr ?? 1e-4;
    [this.beta1, this.beta2] = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.01;
    this.params = new Map(params);
    // Two moment buffers and a gradient per weight are still to come; on wasm an allocation past
    // the heap fails silently, so refuse up front with what to do instead.
    let numParams = 0;
    for (const p of this.params.values()) numParams += p.size;
    assertFitsWasmHeap(numParams * 3 * 4, `AdamW over ${numParams.toLocaleString('en')} parameters`);
    const patterns = (options.noDecay ?? []).map(compilePattern);
    const rule = options.noDecayRule ?? ((name: string, p: tf.Variable) => p.rank <= 1 || name === 'bias' || name.endsWith('.bias'));
    for (const [name, p] of this.params) this.decay.set(name, !(rule(name, p) || patterns.some((r) => r.test(name))));
  }

  /** Names of the parameters that are decayed (for logs and tests). */
  decayedParameters(): string[] {
    return [...this.decay].filter(([, d]) => d).map(([n]) => n);
  }

  /**
   * One update from gradients keyed by parameter name. Parameters without a gradient are left
   * alone, moments and step included (PyTorch skips `p.grad is None`). Gradients are not disposed.
   */
  step(grads: Map<string, tf.Tensor>, lr = this.lr): void {
    for (const name of grads.keys()) {
      if (!this.params.has(name)) throw new VlError('INVALID_ARGUMENT', `gradient for unknown parameter '${name}'`, { subject: 'AdamW' });
    }
    for (const [name, p] of this.params) {
      const g = grads.get(name);
      if (!g) continue;
      let s = this.state.get(name);
      if (!s) {
        s = { expAvg: tf.keep(tf.zerosLike(p)), expAvgSq: tf.keep(tf.zerosLike(p)), step: 0 };
        this.state.set(name, s);
      }
      s.step += 1;
      const st = s;
      const wd = this.decay.get(name) ? this.weightDecay : 0;
      const [b1, b2] = [this.beta1, this.beta2];
      const bc1 = 1 - b1 ** st.step;
      const bc2Sqrt = Math.sqrt(1 - b2 ** st.step);
      const [m, v] = tf.tidy(() => {
        const m = tf.add(tf.mul(st.expAvg, b1), tf.mul(g, 1 - b1));
        const v = tf.add(tf.mul(st.expAvgSq, b2), tf.mul(tf.square(g), 1 - b2));
        // PyTorch order: decay first, then p -= (lr / bc1) · m / (sqrt(v) / sqrt(bc2) + eps).
        const decayed = wd === 0 ? p : tf.mul(p, 1 - lr * wd);
        const denom = tf.add(tf.div(tf.sqrt(v), bc2Sqrt), this.eps);
        p.assign(tf.sub(decayed, tf.mul(tf.div(m, denom), lr / bc1)));
        return [tf.keep(m), tf.keep(v)];
      });
      st.expAvg.dispose();
      st.expAvgSq.dispose();
      st.expAvg = m;
      st.expAvgSq = v;
    }
  }

  /** Moments under `exp_avg.<name>` / `exp_avg_sq.<name>` (live tensors) and per-parameter step counts. */
  stateDict(): OptimizerState {
    const tensors = new Map<string, tf.Tensor>();
    const steps: Record<string, number> = {};
    for (const [name, s] of this.state) {
      tensors.set(`exp_avg.${name}`, s.expAvg);
      tensors.set(`exp_avg_sq.${name}`, s.expAvgSq);
      steps[name] = s.step;
    }
    return {
      tensors,
      meta: { steps, hyper: { lr: this.lr, betas: [this.beta1, this.beta2], eps: this.eps, weightDecay: this.weightDecay } },
    };
  }

  /** Restores moments and steps; every key must name a known parameter with the right shape. */
  loadStateDict(state: {
    tensors: Map<string, tf.Tensor | { data: Float32Array | Int32Array; shape: number[] }>;
    meta: { steps: Record<string, number> };
  }): void {
    const problems: string[] = [];
    const next = new Map<string, ParamState>();
    for (const [name, step] of Object.entries(state.meta.steps)) {
      const p = this.params.get(name);
      const m = state.tensors.get(`exp_avg.${name}`);
      const v = state.tensors.get(`exp_avg_sq.${name}`);
      if (!p) problems.push(`unknown parameter '${name}'`);
      else if (!m || !v) problems.push(`moments missing for '${name}'`);
      else if (m.shape.join() !== p.shape.join() || v.shape.join() !== p.shape.join()) problems.push(`moments of '${name}' are mis-shaped`);
      else next.set(name, { expAvg: toKeptFloat(m), expAvgSq: toKeptFloat(v), step });
    }
    if (problems.length) {
      for (const s of next.values()) {
        s.expAvg.dispose();
        s.expAvgSq.dispose();
      }
      throw new VlError('STATE_DICT_MISMATCH', `optimizer state does not fit: ${problems.join('; ')}`, { subject: 'AdamW' });
    }
    this.disposeState();
    for (const [k, s] of next) this.state.set(k, s);
  }

  private disposeState(): void {
    for (const s of this.state.values()) {
      s.expAvg.dispose();
      s.expAvgSq.dispose();
    }
    this.state.clear();
  }

  dispose(): void {
    this.disposeState();
  }
}

function toKeptFloat(t: tf.Tensor | { data: Float32Array | Int32Array; shape: number[] }): tf.Tensor {
  if (t instanceof tf.Tensor) return tf.keep(tf.clone(t));
  return tf.keep(tf.tensor(Float32Array.from(t.data), t.shape, 'float32'));
}
