// Shared loss primitives (PyTorch `F.cross_entropy` semantics: ignore_index -100, label smoothing)
// and the `{ loss, losses, metrics }` contract every pretraining forward returns.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';

/** Label value that contributes nothing to a loss; the same -100 as PyTorch / Hugging Face. */
export const IGNORE_INDEX = -100;

/** Labels may live on the host (the data pipeline makes them) or in a tensor (read once, synchronously). */
export type Labels = Int32Array | readonly number[] | tf.Tensor;

export function labelsToHost(labels: Labels): Int32Array {
  if (labels instanceof tf.Tensor) return Int32Array.from(labels.dataSync());
  return labels instanceof Int32Array ? labels : Int32Array.from(labels);
}

export interface CrossEntropyOptions {
  /** Rows whose label equals this are skipped (default -100). */
  ignoreIndex?: number;
  /** ε of PyTorch's label smoothing: target = (1-ε)·onehot + ε/V. Default 0. */
  labelSmoothing?: number;
  /**
   * 'mean' over non-ignored rows (PyTorch default), 'sum', or 'none' (one value per row, 0 where
   * ignored). With every row ignored 'mean' returns 0 rather than PyTorch's NaN, so a batch
   * without a masked token does not trip the non-finite guard.
   */
  reduction?: 'mean' | 'sum' | 'none';
}

/**
 * Cross-entropy of logits [N, V] against integer labels [N]. Only the rows that count are
 * gathered before the softmax: for MLM that is ~15% of the positions, which saves most of the
 * work over a 30k vocabulary.
 */
export function crossEntropy(logits: tf.Tensor, labels: Labels, options: CrossEntropyOptions = {}): tf.Tensor {
  const ignoreIndex = options.ignoreIndex ?? IGNORE_INDEX;
  const eps = options.labelSmoothing ?? 0;
  const reduction = options.reduction ?? 'mean';
  if (logits.rank !== 2) {
    throw new VlError('SHAPE_MISMATCH', `crossEntropy expects logits [N, V], got [${logits.shape}]`, { subject: 'crossEntropy' });
  }
  const [n, v] = logits.shape as [number, number];
  const host = labelsToHost(labels);
  if (host.length !== n) {
    throw new VlError('SHAPE_MISMATCH', `crossEntropy: ${n} logit rows but ${host.length} labels`, { subject: 'crossEntropy' });
  }
  const rows: number[] = [];
  const targets: number[] = [];
  for (let i = 0; i < n; i++) {
    const y = host[i]!;
    if (y === ignoreIndex) continue;
    if (!(y >= 0 && y < v)) {
      throw new VlError('INVALID_ARGUMENT', `label ${y} at row ${i} is outside [0, ${v})`, {
        subject: 'crossEntropy',
        hint: `use ${ignoreIndex} for positions that should not count`,
      });
    }
    rows.push(i);
    targets.push(y);
  }
  if (rows.length === 0) return reduction === 'none' ? tf.zeros([n]) : tf.scalar(0);
  return tf.tidy(() => {
    const all = rows.length === n;
    if (reduction === 'none') {
      if (all) return rowCrossEntropy(logits, targets, eps);
      // Every row, ignored ones with a stand-in label 0, then zeroed by a mask (tfjs has no
      // ScatterNd gradient, so the counted rows cannot be scattered back into place).
      const safe = Array.from(host, (y) => (y === ignoreIndex ? 0 : y));
      const keep = tf.tensor1d(
        Array.from(host, (y) => (y === ignoreIndex ? 0 : 1)),
        'float32',
      );
      return tf.mul(rowCrossEntropy(logits, safe, eps), keep);
    }
    const picked = all ? logits : tf.gather(logits, tf.tensor1d(rows, 'int32'));
    const perRow = rowCrossEntropy(picked, targets, eps); // [M]
    return reduction === 'mean' ? tf.mean(perRow) : tf.sum(perRow);
  });
}

/** Per-row −log p[y] smoothed as PyTorch: (1-ε)·nll + ε·mean_c(−log p_c). */
function rowCrossEntropy(logits: tf.Tensor, targets: number[], eps: number): tf.Tensor {
  const [m, v] = logits.shape as [number, number];
  const logp = tf.logSoftmax(logits); // [M, V]
  // A flat 1-D gather (row·V + y) keeps the gradient on tfjs' plain GatherV2 path.
  const flatIdx = new Int32Array(m);
  for (let i = 0; i < m; i++) flatIdx[i] = i * v + targets[i]!;
  const nll = tf.neg(tf.gather(tf.reshape(logp, [-1]), tf.tensor1d(flatIdx, 'int32'))); // [M]
  if (eps === 0) return nll;
  const smooth = tf.neg(tf.mean(logp, 1)); // [M]
  return tf.add(tf.mul(nll, 1 - eps), tf.mul(smooth, eps));
}

/**
 * −Σ_c target_c · log softmax(logits)_c per row (the distillation loss of ALBEF for ITC and MLM).
 * targets are probabilities with the same shape as logits; rank ≥ 1, reduced over the last axis.
 */
export function softCrossEntropy(logits: tf.Tensor, targets: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), targets), -1)));
}

/** Fraction of rows whose argmax equals the label (ignored rows skipped); a host number for metrics. */
export function logitsAccuracy(logits: tf.Tensor, labels: Labels, ignoreIndex = IGNORE_INDEX): number {
  const host = labelsToHost(labels);
  const pred = tf.tidy(() => tf.argMax(logits, -1));
  const p = pred.dataSync();
  pred.dispose();
  let hit = 0;
  let count = 0;
  for (let i = 0; i < host.length; i++) {
    if (host[i] === ignoreIndex) continue;
    count++;
    if (p[i] === host[i]) hit++;
  }
  return count === 0 ? 0 : hit / count;
}

// ---------------------------------------------------------------------------------------------
// The forward contract: { loss, losses, metrics }, objectives switched and weighted by config.

/** What a pretraining forward returns: the weighted total, each objective's loss, host metrics. */
export interface ForwardResult {
  /** Scalar: Σ weight·loss over the enabled objectives. */
  loss: tf.Scalar;
  /** Unweighted scalar loss per enabled objective (`itc`, `itm`, `mlm`, …). */
  losses: Record<string, tf.Scalar>;
  /** Host numbers for logging (accuracies, temperature, alpha, …). */
  metrics: Record<string, number>;
}

/** One objective's switch and weight; absent means enabled with weight 1. */
export interface ObjectiveSwitch {
  enabled?: boolean;
  weight?: number;
}

export type ObjectivesConfig = Record<string, ObjectiveSwitch | undefined>;

export function objectiveEnabled(config: ObjectivesConfig | undefined, name: string): boolean {
  const entry = config?.[name];
  // A zero weight also switches an objective off so its forward work is skipped, not just zeroed.
  return (entry?.enabled ?? true) && (entry?.weight ?? 1) !== 0;
}

export function objectiveWeight(config: ObjectivesConfig | undefined, name: string): number {
  return config?.[name]?.weight ?? 1;
}

/**
 * Combines per-objective losses into a `ForwardResult`. Objectives that are absent (undefined) or
 * switched off by config are left out of both the total and `losses`. Takes ownership of the
 * losses it is given: disabled ones are disposed.
 */
export function combineLosses(
  parts: Record<string, tf.Scalar | undefined>,
  config?: ObjectivesConfig,
  metrics: Record<string, number> = {},
): ForwardResult {
  const losses: Record<string, tf.Scalar> = {};
  const weighted: tf.Scalar[] = [];
  for (const [name, value] of Object.entries(parts)) {
    if (!value) continue;
    if (!objectiveEnabled(config, name)) {
      value.dispose();
      continue;
    }
    if (value.rank !== 0) {
      throw new VlError('SHAPE_MISMATCH', `loss '${name}' must be a scalar, got shape [${value.shape}]`, { subject: name });
    }
    losses[name] = value;
    const w = objectiveWeight(config, name);
    weighted.push(w === 1 ? value : tf.mul(value, w));
  }
  if (weighted.length === 0) {
    throw new VlError('CONFIG_INVALID', 'every objective is switched off: nothing to train', {
      subject: Object.keys(parts).join(', '),
      hint: 'enable at least one objective with a non-zero weight',
    });
  }
  const loss = (weighted.length === 1 ? tf.clone(weighted[0]!) : tf.addN(weighted)) as tf.Scalar;
  for (const w of weighted) if (!Object.values(losses).includes(w)) w.dispose();
  return { loss, losses, metrics };
}
