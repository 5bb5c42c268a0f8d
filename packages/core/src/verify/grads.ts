// Gradient parity against a reference: a gradients file holds, for each loss on its own, the
// gradient of every parameter the loss reaches, keyed `<loss>/<official parameter name>`
// (fixtures/*/README.md "Gradients"). A model package replays each loss (GradientReplay); this file
// computes the gradients with tf.variableGrads (as the Trainer does), maps the official names onto
// the module's parameters through the model's key map, compares every tensor, and reports in the
// ParityReport format of parity.ts: one summary row per loss (its worst tensor), plus a row for
// each tensor out of tolerance or present on one side only. Browser-safe: node/grads-file.ts reads the file.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import type { HostTensor } from '../io/safetensors.js';
import type { KeyMap, StateEntry } from '../model/contract.js';
import type { Module } from '../nn/module.js';
import type { ActualOutput, OutputCheck } from './parity.js';

/** A reference gradients file: per loss, official parameter name → gradient; the losses' values when known. */
export interface ReferenceGradients {
  /** Loss name → (official parameter name → gradient), in file order. */
  losses: Map<string, Map<string, HostTensor>>;
  /** The reference's loss values (grads.json → losses), when the file comes with them. */
  values: Record<string, number>;
  /** grads.json → tolerance_max_abs, when given. */
  tolerance?: number;
  /** Where the gradients came from, for messages. */
  source: string;
}

/** Splits `<loss>/<name>` keys into one map per loss. */
export function splitLossGradients(tensors: ReadonlyMap<string, HostTensor>, subject: string): Map<string, Map<string, HostTensor>> {
  const out = new Map<string, Map<string, HostTensor>>();
  for (const [key, t] of tensors) {
    const slash = key.indexOf('/');
    if (slash <= 0 || slash === key.length - 1) {
      throw new VlError('DATA_INVALID', `gradient key '${key}' is not '<loss>/<parameter name>'`, {
        subject,
        hint: 'a gradients file keys each tensor by the loss and the official parameter name, e.g. itm/itm_head.weight',
      });
    }
    if (t.dtype !== 'float32') throw new VlError('DATA_INVALID', `gradient '${key}' is ${t.dtype}, not a float tensor`, { subject });
    const loss = key.slice(0, slash);
    let m = out.get(loss);
    if (!m) out.set(loss, (m = new Map()));
    m.set(key.slice(slash + 1), t);
  }
  if (out.size === 0) throw new VlError('DATA_INVALID', 'the gradients file holds no tensors', { subject });
  return out;
}

/**
 * The gradient of `loss()` with respect to every trainable parameter of `model` that it reaches,
 * keyed by state-dict name (tf.variableGrads over the trainable parameters, as the Trainer takes them).
 * Returns host copies: no tensor outlives the call.
 */
export function parameterGradients(model: Module, loss: () => tf.Scalar): { value: number; grads: Map<string, ActualOutput> } {
  const named = model.namedParameters().filter(([, p]) => p.trainable);
  const nameOfVar = new Map(named.map(([name, p]) => [p.name, name]));
  const { value, grads } = tf.variableGrads(
    loss,
    named.map(([, p]) => p),
  );
  try {
    const out = new Map<string, ActualOutput>();
    for (const [varName, g] of Object.entries(grads)) {
      out.set(nameOfVar.get(varName) ?? varName, { shape: [...g.shape], data: g.dataSync().slice() });
    }
    return { value: value.dataSync()[0]!, grads: out };
  } finally {
    value.dispose();
    tf.dispose(Object.values(grads));
  }
}

/**
 * The central difference (f(θ + ε) − f(θ − ε)) / 2ε of `loss` in one element of a parameter: a
 * check of gradients where no reference exists (other seeds and shapes). The parameter is restored
 * exactly afterwards. In float32 expect agreement to about 1e-2 relative, not 1e-4: the loss rounds
 * to ~1e-7 relative and the step adds an O(ε²) curvature term. A loss that treats a quantity as a
 * constant (a stop-gradient, e.g. ALBEF's momentum soft targets, which depend on `temp`) has a
 * gradient that the difference of the full function does not match, by design.
 */
export function centralDifference(parameter: tf.Variable, index: number, loss: () => number, eps: number): number {
  const original = parameter.dataSync().slice();
  if (!Number.isInteger(index) || index < 0 || index >= original.length) {
    throw new VlError('INVALID_ARGUMENT', `element ${index} is outside a parameter of ${original.length}`, { subject: parameter.name });
  }
  const set = (delta: number) =>
    tf.tidy(() => {
      const moved = original.slice();
      moved[index] = (moved[index] as number) + delta;
      parameter.assign(tf.tensor(moved, parameter.shape, parameter.dtype));
    });
  try {
    set(eps);
    const plus = loss();
    set(-eps);
    const minus = loss();
    return (plus - minus) / (2 * eps);
  } finally {
    set(0);
  }
}

/**
 * Our state-dict key → official key, for naming rows: each official entry of `keyMap.toOfficial`
 * mapped back alone (a rename map; entries that map to nothing alone, e.g. tied duplicates, are skipped).
 */
export function officialNames<M extends Module>(model: M, keyMap: Pick<KeyMap<M>, 'fromOfficial' | 'toOfficial'>): Map<string, string> {
  const out = new Map<string, string>();
  for (const [official, t] of keyMap.toOfficial(model)) {
    let ours: Map<string, StateEntry>;
    try {
      ours = keyMap.fromOfficial(new Map([[official, t]]), official);
    } catch {
      continue;
    }
    if (ours.size === 1) {
      const [key] = ours.keys();
      if (!out.has(key!)) out.set(key!, official);
    }
  }
  return out;
}

export interface CompareGradientsInput {
  loss: string;
  /** The reference's gradients of this loss, under official names. */
  expected: ReadonlyMap<string, HostTensor>;
  /** Ours, by state-dict name: the parameters the loss reaches. */
  actual: ReadonlyMap<string, ActualOutput>;
  /** Every trainable parameter (state-dict name → shape); one the loss does not reach has gradient zero. */
  parameters: ReadonlyMap<string, readonly number[]>;
  /** Maps the official names onto ours (the model's key map). */
  fromOfficial: KeyMap['fromOfficial'];
  /** Our name → official name, for the rows (ours when absent). */
  officialName?: ReadonlyMap<string, string>;
  tolerance: number;
  /** The loss values, ours and the reference's (a row when both are known). */
  actualValue?: number;
  expectedValue?: number;
}

function maxAbsDiff(a: ArrayLike<number> | null, b: ArrayLike<number> | null, n: number): number {
  let m = 0;
  for (let i = 0; i < n; i++) {
    const x = a ? (a[i] as number) : 0;
    const y = b ? (b[i] as number) : 0;
    const d = x === y ? 0 : Math.abs(x - y);
    m = Number.isNaN(d) ? Infinity : Math.max(m, d);
  }
  return m;
}

/**
 * Compares one loss's gradients, every parameter: rows `<loss> loss` (the value), `<loss> gradients`
 * (how many tensors were compared and the worst one; it fails when any row below it fails), and
 * `<loss>/<official name>` for each tensor past the tolerance or that cannot be compared. A parameter
 * one side gives no gradient has gradient zero there (the reference file omits what a loss does not
 * reach); a gradient in the file for a parameter the model lacks, or of another shape, fails.
 */
export function compareGradients(input: CompareGradientsInput): OutputCheck[] {
  const { loss, tolerance: tol } = input;
  const rows: OutputCheck[] = [];
  const failures: OutputCheck[] = [];
  const nameOf = (ours: string) => input.officialName?.get(ours) ?? ours;
  if (input.actualValue !== undefined && input.expectedValue !== undefined) {
    const d = Math.abs(input.actualValue - input.expectedValue);
    const diff = Number.isNaN(d) ? Infinity : d;
    rows.push({ name: `${loss} loss`, kind: 'float', shape: [], maxAbsDiff: diff, tolerance: tol, passed: diff <= tol });
  }
  // Official → ours, one entry at a time so that each row can name the official key.
  const expected = new Map<string, { official: string; tensor: StateEntry }>();
  for (const [official, tensor] of input.expected) {
    const mapped = input.fromOfficial(new Map([[official, tensor]]), `${loss}/${official}`);
    if (mapped.size === 0) {
      failures.push({
        name: `${loss}/${official}`,
        kind: 'float',
        shape: [...tensor.shape],
        maxAbsDiff: Infinity,
        tolerance: tol,
        passed: false,
        note: 'the key map drops this key: its gradient belongs under the parameter it duplicates',
      });
      continue;
    }
    for (const [ours, t] of mapped) expected.set(ours, { official, tensor: t });
  }
  let worst = 0;
  let worstName = '';
  let compared = 0;
  // Tensors only one side has, compared with zero (within tolerance they pass, but the note counts them).
  let onlyReference = 0;
  let onlyOurs = 0;
  const consider = (name: string, shape: readonly number[], diff: number, note?: string) => {
    compared++;
    if (worstName === '' || diff > worst) {
      worst = diff;
      worstName = name;
    }
    if (!(diff <= tol)) failures.push({ name, kind: 'float', shape: [...shape], maxAbsDiff: diff, tolerance: tol, passed: false, note });
  };
  for (const [ours, exp] of expected) {
    const shape = input.parameters.get(ours);
    const name = `${loss}/${exp.official}`;
    if (!shape) {
      failures.push({
        name,
        kind: 'float',
        shape: [...exp.tensor.shape],
        maxAbsDiff: Infinity,
        tolerance: tol,
        passed: false,
        note: `only in the reference: the model has no trainable parameter '${ours}'`,
      });
      continue;
    }
    if (shape.join() !== exp.tensor.shape.join()) {
      failures.push({
        name,
        kind: 'float',
        shape: [...exp.tensor.shape],
        maxAbsDiff: Infinity,
        tolerance: tol,
        passed: false,
        note: `the parameter is [${shape}]`,
      });
      continue;
    }
    const act = input.actual.get(ours);
    const n = exp.tensor.data.length;
    if (!act) onlyReference++;
    consider(name, shape, maxAbsDiff(act?.data ?? null, exp.tensor.data, n), act ? undefined : 'ours: no gradient (zero)');
  }
  for (const [ours, act] of input.actual) {
    if (expected.has(ours)) continue;
    const shape = input.parameters.get(ours) ?? act.shape;
    const n = act.shape.reduce((a, b) => a * b, 1);
    onlyOurs++;
    consider(`${loss}/${nameOf(ours)}`, shape, maxAbsDiff(act.data, null, n), 'only ours: the reference has no gradient (zero)');
  }
  rows.push({
    name: `${loss} gradients`,
    kind: 'float',
    shape: [],
    maxAbsDiff: worst,
    tolerance: tol,
    passed: failures.length === 0,
    note: [
      `${compared} tensors`,
      `worst ${worstName || '-'}`,
      onlyReference ? `${onlyReference} with no gradient of ours (zero)` : '',
      onlyOurs ? `${onlyOurs} with no gradient in the reference (zero)` : '',
      failures.length ? `${failures.length} listed below` : '',
    ]
      .filter(Boolean)
      .join('; '),
  });
  return [...rows, ...failures];
}

/** How a model package replays the reference's losses. */
export interface GradientReplay<M extends Module> {
  /** The losses this replay computes (the reference file's names), e.g. ['ita', 'itm', 'mlm']. */
  losses: readonly string[];
  /** A freshly loaded model: each loss runs from its own, as the reference back-propagates each from a fresh model. */
  load(): Promise<M>;
  /** The loss as a scalar; runs inside tf.variableGrads (keep state changes such as queue updates out of it, or load afresh). */
  loss(model: M, name: string): tf.Scalar;
  /** The model's key map: `fromOfficial` maps the reference's names onto ours; `toOfficial` names the rows of ours. */
  keyMap: Pick<KeyMap<M>, 'fromOfficial'> & Partial<Pick<KeyMap<M>, 'toOfficial'>>;
  /**
   * Our parameter → the one the reference ties it to (state-dict names). Where the reference holds one tensor
   * for two of our parameters (BLIP's LM head weight is its word embeddings), that tensor's gradient is the sum
   * of both of ours: the first is added onto the second, of the same shape, before comparing.
   */
  tied?: Readonly<Record<string, string>>;
}

/** Adds each tied parameter's gradient onto its partner's (or moves it there when the partner has none). */
export function mergeTiedGradients(
  grads: Map<string, ActualOutput>,
  parameters: Map<string, readonly number[]>,
  tied: Readonly<Record<string, string>>,
): void {
  for (const [from, to] of Object.entries(tied)) {
    const a = grads.get(from);
    const target = parameters.get(to);
    const shape = parameters.get(from);
    if (!target || !shape || target.join() !== shape.join()) {
      throw new VlError('INVALID_ARGUMENT', `cannot tie '${from}' [${shape ?? '?'}] to '${to}' [${target ?? '?'}]`, {
        subject: 'GradientReplay.tied',
        hint: 'both must be trainable parameters of one shape',
      });
    }
    parameters.delete(from);
    if (!a) continue;
    grads.delete(from);
    const b = grads.get(to);
    if (!b) {
      grads.set(to, a);
      continue;
    }
    const sum = Float32Array.from(b.data as ArrayLike<number>);
    for (let i = 0; i < sum.length; i++) sum[i] = (sum[i] as number) + (a.data[i] as number);
    grads.set(to, { shape: b.shape, data: sum });
  }
}

/**
 * Replays every loss the reference file holds and compares every gradient. A loss in the file that
 * the replay does not compute fails (it cannot be checked); the model is disposed after each loss.
 */
export async function checkGradients<M extends Module>(
  replay: GradientReplay<M>,
  reference: ReferenceGradients,
  tolerance: number,
): Promise<OutputCheck[]> {
  const rows: OutputCheck[] = [];
  for (const [loss, expected] of reference.losses) {
    if (!replay.losses.includes(loss)) {
      rows.push({
        name: `${loss} gradients`,
        kind: 'float',
        shape: [],
        maxAbsDiff: Infinity,
        tolerance,
        passed: false,
        note: `not computed: this model replays ${replay.losses.join(', ')}`,
      });
      continue;
    }
    const model = await replay.load();
    try {
      const parameters = new Map(
        model
          .namedParameters()
          .filter(([, p]) => p.trainable)
          .map(([k, p]) => [k, p.shape] as const),
      );
      const { value, grads } = parameterGradients(model, () => replay.loss(model, loss));
      if (replay.tied) mergeTiedGradients(grads, parameters, replay.tied);
      rows.push(
        ...compareGradients({
          loss,
          expected,
          actual: grads,
          parameters,
          fromOfficial: (official, subject) => replay.keyMap.fromOfficial(official, subject),
          officialName: replay.keyMap.toOfficial
            ? officialNames(model, { ...replay.keyMap, toOfficial: replay.keyMap.toOfficial })
            : undefined,
          tolerance,
          actualValue: value,
          expectedValue: reference.values[loss],
        }),
      );
    } finally {
      model.dispose();
    }
  }
  return rows;
}
