// Typed errors: every failure carries a stable code, what it concerns (file, record, key) and what to do.

export type VlErrorCode =
  | 'BACKEND_UNAVAILABLE'
  | 'WASM_HEAP_LIMIT'
  | 'STATE_DICT_MISMATCH'
  | 'SAFETENSORS_INVALID'
  | 'CHECKPOINT_INVALID'
  | 'CHECKPOINT_UNSAFE'
  | 'CHECKPOINT_UNSUPPORTED'
  | 'CONFIG_INVALID'
  | 'SHAPE_MISMATCH'
  | 'INVALID_ARGUMENT'
  | 'ROUTE_INVALID'
  | 'DATA_INVALID'
  | 'IMAGE_INVALID'
  | 'NON_FINITE_LOSS'
  | 'IMAGE_TOO_LARGE'
  | 'OUTPUT_LOCKED'
  | 'OUTPUT_CONFLICT'
  | 'RESUME_MISMATCH'
  | 'QUEUE_UNREACHABLE'
  | 'WRITE_FAILED'
  | 'MODEL_UNKNOWN'
  | 'TASK_UNSUPPORTED';

export interface VlErrorDetails {
  /** The file, record or key the error is about. */
  subject?: string;
  /** What the user can do about it. */
  hint?: string;
  cause?: unknown;
}

/** Marks a VlError of any copy of @vl/core (ESM and CJS builds, two installed versions): `instanceof` checks it. */
const BRAND = Symbol.for('vl.error');

export class VlError extends Error {
  readonly code: VlErrorCode;
  readonly subject?: string;
  readonly hint?: string;

  /** True for a VlError made by any copy of @vl/core in the process, not only this copy's class. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this !== VlError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as { [BRAND]?: unknown })[BRAND] === true;
  }

  constructor(code: VlErrorCode, message: string, details: VlErrorDetails = {}) {
    const where = details.subject ? ` [${details.subject}]` : '';
    const hint = details.hint ? ` — ${details.hint}` : '';
    super(`${code}${where}: ${message}${hint}`, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'VlError';
    Object.defineProperty(this, BRAND, { value: true });
    this.code = code;
    this.subject = details.subject;
    this.hint = details.hint;
  }
}

export function isVlError(err: unknown, code?: VlErrorCode): err is VlError {
  return err instanceof VlError && (code === undefined || err.code === code);
}
