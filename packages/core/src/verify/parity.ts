// Parity checks against reference outputs: the fixture tensor JSON format
// (`{dtype, shape, data: nested lists}`), per-output max abs diff, and a readable report.
// Model packages build their `verify` commands and parity tests on this; node/parity-file.ts reads the files.
import { VlError } from '../errors.js';

export type TensorJsonDtype = 'float32' | 'float64' | 'int64' | 'int32' | 'bool';

/** A tensor as the reference scripts wrote it. */
export interface TensorJson {
  dtype: TensorJsonDtype;
  shape: number[];
  data: unknown;
}

/** Decoded: floats as Float32Array (exact for float32 JSON), integers as Int32Array (range-checked). */
export interface DecodedTensor {
  kind: 'float' | 'int';
  shape: number[];
  data: Float32Array | Int32Array;
}

export function isTensorJson(value: unknown): value is TensorJson {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.dtype === 'string' && Array.isArray(v.shape) && 'data' in v;
}

/** Flattens nested lists in row-major order, checking that they match `shape` exactly. */
export function decodeTensorJson(t: TensorJson, subject: string): DecodedTensor {
  const shape = t.shape;
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new VlError('DATA_INVALID', `shape [${shape}] is not a list of non-negative integers`, { subject });
  }
  const size = shape.reduce((a, b) => a * b, 1);
  const kind = t.dtype === 'float32' || t.dtype === 'float64' ? 'float' : 'int';
  const data = kind === 'float' ? new Float32Array(size) : new Int32Array(size);
  let k = 0;
  const walk = (node: unknown, depth: number): void => {
    if (depth === shape.length) {
      const v = typeof node === 'boolean' ? Number(node) : node;
      if (typeof v !== 'number' || (kind === 'int' && !Number.isInteger(v))) {
        throw new VlError('DATA_INVALID', `element ${k} is ${JSON.stringify(node)}, not a ${t.dtype}`, { subject });
      }
      if (kind === 'int' && (v > 2147483647 || v < -2147483648)) {
        throw new VlError('DATA_INVALID', `element ${k} = ${v} does not fit int32`, { subject });
      }
      data[k++] = v;
      return;
    }
    if (!Array.isArray(node) || node.length !== shape[depth]) {
      throw new VlError('DATA_INVALID', `nesting at depth ${depth} does not match shape [${shape}]`, { subject });
    }
    for (const child of node) walk(child, depth + 1);
  };
  walk(t.data, 0);
  return { kind, shape: [...shape], data };
}

export interface OutputCheck {
  name: string;
  kind: 'float' | 'int';
  shape: number[];
  /** Max |actual − expected|; Infinity when shapes differ or a value is not finite where the other is. */
  maxAbsDiff: number;
  /** The tolerance applied (0 for integer outputs such as token ids: they must match exactly). */
  tolerance: number;
  passed: boolean;
  note?: string;
}

export interface ParityReport {
  checks: OutputCheck[];
  passed: boolean;
}

export interface ActualOutput {
  shape: number[];
  data: ArrayLike<number>;
  /**
   * Which elements count (1) and which the reference says not to compare (0), one per element; for
   * outputs only partly defined, such as the logits of beam-search steps an image no longer takes
   * part in. Absent: every element is compared.
   */
  compareWhere?: ArrayLike<number>;
}

/** Compares every expected output with the actual one of the same name. */
export function compareOutputs(
  expected: Record<string, DecodedTensor>,
  actual: Record<string, ActualOutput | undefined>,
  tolerance: number,
): ParityReport {
  const checks: OutputCheck[] = [];
  for (const [name, exp] of Object.entries(expected)) {
    const act = actual[name];
    const tol = exp.kind === 'int' ? 0 : tolerance;
    if (!act) {
      checks.push({ name, kind: exp.kind, shape: exp.shape, maxAbsDiff: Infinity, tolerance: tol, passed: false, note: 'not computed' });
      continue;
    }
    if (act.shape.length !== exp.shape.length || act.shape.some((d, i) => d !== exp.shape[i])) {
      checks.push({
        name,
        kind: exp.kind,
        shape: exp.shape,
        maxAbsDiff: Infinity,
        tolerance: tol,
        passed: false,
        note: `shape [${act.shape}] ≠ expected [${exp.shape}]`,
      });
      continue;
    }
    const where = act.compareWhere;
    if (where && where.length !== exp.data.length) {
      checks.push({
        name,
        kind: exp.kind,
        shape: exp.shape,
        maxAbsDiff: Infinity,
        tolerance: tol,
        passed: false,
        note: `compareWhere has ${where.length} entries for ${exp.data.length} elements`,
      });
      continue;
    }
    let diff = 0;
    let compared = 0;
    for (let i = 0; i < exp.data.length; i++) {
      if (where && !where[i]) continue;
      compared++;
      const a = act.data[i] as number;
      const e = exp.data[i] as number;
      const d = a === e ? 0 : Math.abs(a - e);
      diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
    }
    const note = where ? `compared at ${compared} of ${exp.data.length} elements` : undefined;
    checks.push({
      name,
      kind: exp.kind,
      shape: exp.shape,
      maxAbsDiff: diff,
      tolerance: tol,
      passed: diff <= tol,
      ...(note ? { note } : {}),
    });
  }
  return { checks, passed: checks.every((c) => c.passed) };
}

export function formatParityReport(report: ParityReport): string {
  const width = Math.max(6, ...report.checks.map((c) => c.name.length));
  const lines = [`${'output'.padEnd(width)}  ${'shape'.padEnd(14)}  max abs diff  tol      result`];
  for (const c of report.checks) {
    const diff = Number.isFinite(c.maxAbsDiff) ? c.maxAbsDiff.toExponential(2) : 'inf';
    lines.push(
      `${c.name.padEnd(width)}  ${`[${c.shape}]`.padEnd(14)}  ${diff.padEnd(12)}  ${String(c.tolerance).padEnd(7)}  ${c.passed ? 'ok' : 'FAIL'}${c.note ? ` (${c.note})` : ''}`,
    );
  }
  lines.push(
    report.passed ? 'all outputs within tolerance' : `${report.checks.filter((c) => !c.passed).length} output(s) out of tolerance`,
  );
  return lines.join('\n');
}
