// Parity checks against reference outputs: the fixture tensor JSON format
// (`{dtype, shape, data: nested lists}`), per-output max abs diff, and a readable report.
// Model packages build their `verify` commands and parity tests on this.
import { readFile } from 'node:fs/promises';
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
    let diff = 0;
    for (let i = 0; i < exp.data.length; i++) {
      const a = act.data[i] as number;
      const e = exp.data[i] as number;
      const d = a === e ? 0 : Math.abs(a - e);
      diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
    }
    checks.push({ name, kind: exp.kind, shape: exp.shape, maxAbsDiff: diff, tolerance: tol, passed: diff <= tol });
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
  lines.push(report.passed ? 'all outputs within tolerance' : `${report.checks.filter((c) => !c.passed).length} output(s) out of tolerance`);
  return lines.join('\n');
}

/** Reads a JSON file of tensors (`inputs.json`), decoding every tensor-shaped entry and keeping the rest. */
export async function readTensorJsonFile(
  path: string,
): Promise<{ tensors: Record<string, DecodedTensor>; other: Record<string, unknown> }> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new VlError('DATA_INVALID', `cannot read JSON: ${(err as Error).message}`, { subject: path, cause: err });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new VlError('DATA_INVALID', 'expected a JSON object of named tensors', { subject: path });
  }
  const tensors: Record<string, DecodedTensor> = {};
  const other: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (isTensorJson(v)) tensors[k] = decodeTensorJson(v, `${path}: ${k}`);
    else other[k] = v;
  }
  return { tensors, other };
}

/** Reads an `expected.json` (`{ meta, outputs: {name: tensor} }`), decoding the outputs. */
export async function readExpectedFile(path: string): Promise<{ meta: Record<string, unknown>; outputs: Record<string, DecodedTensor> }> {
  const { tensors, other } = await readTensorJsonFile(path);
  const rawOutputs = other.outputs;
  if (typeof rawOutputs !== 'object' || rawOutputs === null) {
    throw new VlError('DATA_INVALID', "no 'outputs' object", { subject: path, hint: 'expected.json holds { meta, outputs: { name: tensor } }' });
  }
  const outputs: Record<string, DecodedTensor> = { ...tensors };
  for (const [k, v] of Object.entries(rawOutputs)) {
    if (isTensorJson(v)) outputs[k] = decodeTensorJson(v, `${path}: outputs.${k}`);
    else if (typeof v === 'number') outputs[k] = { kind: 'float', shape: [], data: Float32Array.of(v) };
    else throw new VlError('DATA_INVALID', `outputs.${k} is neither a tensor nor a number`, { subject: path });
  }
  const meta = typeof other.meta === 'object' && other.meta !== null ? (other.meta as Record<string, unknown>) : {};
  return { meta, outputs };
}
