// Module: a named tree of parameters and buffers whose state dict uses PyTorch's dotted keys.
//
// Keys are the contract with checkpoints: `registerModule('LayerNorm', …)` and
// `registerModuleList('layer', …)` produce `encoder.layer.0.LayerNorm.weight` exactly as
// PyTorch does, whatever the TypeScript property is called.
import * as tf from '@tensorflow/tfjs-core';
import { VlError } from '../errors.js';
import { writeHostInPlace } from './host-write.js';
import { dropInt8Weight } from './int8-weights.js';

/** How a tensor is stored in a checkpoint file when it differs from its tfjs dtype (int64 buffers). */
export type StoredDtype = 'F32' | 'F16' | 'BF16' | 'I64' | 'I32';

interface BufferEntry {
  tensor: tf.Tensor;
  /** Persistent buffers are part of the state dict (PyTorch's `persistent=True`). */
  persistent: boolean;
  storedDtype?: StoredDtype;
}

/** Anything `loadStateDict` accepts as a value: a tensor, or host data with a shape. */
export interface StateValue {
  shape: number[];
  dtype: 'float32' | 'int32';
  data: Float32Array | Int32Array;
  /** Present on values still in their file (DeferredHostTensor): writes `data`'s bytes into `dst`. */
  readInto?: (dst: Uint8Array) => void;
}

export type StateDictInput = Map<string, tf.Tensor | StateValue> | Record<string, tf.Tensor | StateValue>;

export interface LoadReport {
  missing: string[];
  unexpected: string[];
  mismatched: { key: string; expected: number[]; got: number[] }[];
  loaded: number;
}

export interface LoadOptions {
  /** Default true: any missing, unexpected or mis-shaped key throws, listing all of them. */
  strict?: boolean;
  /** Keys to ignore when checking for missing entries (e.g. tied weights absent from a file). */
  allowMissing?: (key: string) => boolean;
  /** Where the dict came from, for error messages. */
  source?: string;
}

export type NamePattern = string | RegExp;

/** `*` matches within one dotted segment, `**` across segments; a RegExp is used as is. */
export function compilePattern(pattern: NamePattern): RegExp {
  if (pattern instanceof RegExp) return pattern;
  const escaped = pattern
    .split('**')
    .map((part) =>
      part
        .split('*')
        .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
        .join('[^.]*'),
    )
    .join('.*');
  return new RegExp(`^${escaped}$`);
}

export abstract class Module {
  /** Training mode switches dropout and drop-path on; `eval()` switches them off. */
  training = true;
  private readonly params = new Map<string, tf.Variable>();
  private readonly buffers = new Map<string, BufferEntry>();
  private readonly children = new Map<string, Module>();

  /** Adds a trainable parameter; takes ownership of `value`. */
  protected registerParameter(name: string, value: tf.Tensor): tf.Variable {
    this.assertFreeName(name);
    const variable = tf.variable(value, true);
    value.dispose();
    this.params.set(name, variable);
    return variable;
  }

  /** Adds a non-trainable tensor (position ids, queues, EMA state); takes ownership of `value`. */
  protected registerBuffer(name: string, value: tf.Tensor, options: { persistent?: boolean; storedDtype?: StoredDtype } = {}): tf.Tensor {
    this.assertFreeName(name);
    const tensor = tf.keep(value);
    this.buffers.set(name, { tensor, persistent: options.persistent ?? true, storedDtype: options.storedDtype });
    return tensor;
  }

  /** Replaces a buffer's tensor (disposing the old one) and returns the kept new one. */
  protected setBuffer(name: string, value: tf.Tensor): tf.Tensor {
    const entry = this.buffers.get(name);
    if (!entry) throw new VlError('INVALID_ARGUMENT', `no buffer named '${name}'`, { subject: this.constructor.name });
    if (entry.tensor !== value) {
      entry.tensor.dispose();
      entry.tensor = tf.keep(value);
    }
    return entry.tensor;
  }

  protected getBuffer(name: string): tf.Tensor {
    const entry = this.buffers.get(name);
    if (!entry) throw new VlError('INVALID_ARGUMENT', `no buffer named '${name}'`, { subject: this.constructor.name });
    return entry.tensor;
  }

  registerModule<T extends Module>(name: string, module: T): T {
    this.assertFreeName(name);
    this.children.set(name, module);
    return module;
  }

  registerModuleList<T extends Module>(name: string, modules: readonly T[]): ModuleList<T> {
    return this.registerModule(name, new ModuleList(modules));
  }

  private assertFreeName(name: string): void {
    if (!name || name.includes('.')) {
      throw new VlError('INVALID_ARGUMENT', `invalid name '${name}': names are one non-empty dotted segment`, {
        subject: this.constructor.name,
      });
    }
    if (this.params.has(name) || this.buffers.has(name) || this.children.has(name)) {
      throw new VlError('INVALID_ARGUMENT', `name '${name}' is registered twice`, { subject: this.constructor.name });
    }
  }

  /** Direct children, in registration order. */
  namedChildren(): [string, Module][] {
    return [...this.children];
  }

  /** Every module in the tree with its dotted path ('' for this one). */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [name, child] of this.children) out.push(...child.namedModules(join(prefix, name)));
    return out;
  }

  namedParameters(prefix = ''): [string, tf.Variable][] {
    const out: [string, tf.Variable][] = [];
    for (const [name, p] of this.params) out.push([join(prefix, name), p]);
    for (const [name, child] of this.children) out.push(...child.namedParameters(join(prefix, name)));
    return out;
  }

  namedBuffers(prefix = '', persistentOnly = false): [string, tf.Tensor][] {
    const out: [string, tf.Tensor][] = [];
    for (const [name, b] of this.buffers) if (!persistentOnly || b.persistent) out.push([join(prefix, name), b.tensor]);
    for (const [name, child] of this.children) out.push(...child.namedBuffers(join(prefix, name), persistentOnly));
    return out;
  }

  /** Parameters that receive gradients (not frozen). */
  trainableParameters(): tf.Variable[] {
    return this.namedParameters()
      .filter(([, p]) => p.trainable)
      .map(([, p]) => p);
  }

  /** The checkpoint file dtype of each buffer that needs one (e.g. int64 position ids). */
  storedDtypes(prefix = ''): Map<string, StoredDtype> {
    const out = new Map<string, StoredDtype>();
    for (const [name, b] of this.buffers) if (b.persistent && b.storedDtype) out.set(join(prefix, name), b.storedDtype);
    for (const [name, child] of this.children) for (const [k, v] of child.storedDtypes(join(prefix, name))) out.set(k, v);
    return out;
  }

  /**
   * Parameters and persistent buffers under PyTorch dotted keys. The tensors are the live ones
   * (not copies): read them, do not dispose them.
   */
  stateDict(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const [k, p] of this.namedParameters()) out.set(k, p);
    for (const [k, b] of this.namedBuffers('', true)) out.set(k, b);
    return out;
  }

  /**
   * Copies values into parameters and buffers. Checks every key first and reports all problems
   * at once; nothing is changed when a strict load fails.
   */
  loadStateDict(dict: StateDictInput, options: LoadOptions = {}): LoadReport {
    const strict = options.strict ?? true;
    const entries = dict instanceof Map ? dict : new Map(Object.entries(dict));
    const targets = new Map<string, { assign: (t: tf.Tensor) => void; shape: number[]; dtype: tf.DataType; variable?: tf.Variable }>();
    for (const [k, p] of this.namedParameters())
      targets.set(k, { assign: (t) => p.assign(t), shape: p.shape, dtype: p.dtype, variable: p });
    for (const [path, module] of this.namedModules()) {
      for (const [name, b] of module.buffers) {
        if (!b.persistent) continue;
        targets.set(join(path, name), {
          assign: (t) => module.setBuffer(name, tf.clone(t)),
          shape: b.tensor.shape,
          dtype: b.tensor.dtype,
        });
      }
    }
    const report: LoadReport = { missing: [], unexpected: [], mismatched: [], loaded: 0 };
    for (const [key, value] of entries) {
      const target = targets.get(key);
      if (!target) report.unexpected.push(key);
      else if (!sameShape(target.shape, value.shape)) report.mismatched.push({ key, expected: target.shape, got: [...value.shape] });
    }
    for (const key of targets.keys()) {
      if (!entries.has(key) && !(options.allowMissing?.(key) ?? false)) report.missing.push(key);
    }
    const problems = report.missing.length + report.unexpected.length + report.mismatched.length;
    if (strict && problems > 0) {
      throw new VlError('STATE_DICT_MISMATCH', describeLoadProblems(report), {
        subject: options.source ?? this.constructor.name,
        hint: 'check the checkpoint matches this model and config, or pass { strict: false } to load what matches',
      });
    }
    const mismatchedKeys = new Set(report.mismatched.map((m) => m.key));
    for (const [key, value] of entries) {
      const target = targets.get(key);
      if (!target || mismatchedKeys.has(key)) continue;
      // Host data into a parameter on wasm: straight over the variable's own heap memory (see host-write.ts).
      if (target.variable && !isTensor(value) && writeHostInPlace(target.variable, value)) {
        // The variable keeps its data id, so an int8 copy of the old values would still look current.
        dropInt8Weight(target.variable);
        report.loaded++;
        continue;
      }
      tf.tidy(() => {
        const tensor = isTensor(value) ? value : tf.tensor(value.data, value.shape, value.dtype);
        target.assign(tensor.dtype === target.dtype ? tensor : tf.cast(tensor, target.dtype));
      });
      report.loaded++;
    }
    return report;
  }

  /** Sets training mode on the whole tree. */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Stops gradients for parameters whose dotted name matches any pattern; returns the names. */
  freeze(patterns: NamePattern | NamePattern[]): string[] {
    return this.setTrainable(patterns, false);
  }

  unfreeze(patterns: NamePattern | NamePattern[]): string[] {
    return this.setTrainable(patterns, true);
  }

  private setTrainable(patterns: NamePattern | NamePattern[], trainable: boolean): string[] {
    const regexps = (Array.isArray(patterns) ? patterns : [patterns]).map(compilePattern);
    const changed: string[] = [];
    for (const [name, p] of this.namedParameters()) {
      if (regexps.some((r) => r.test(name))) {
        p.trainable = trainable;
        changed.push(name);
      }
    }
    return changed;
  }

  /** Number of parameter scalars (all, or only trainable ones). */
  numParameters(options: { trainableOnly?: boolean } = {}): number {
    let n = 0;
    for (const [, p] of this.namedParameters()) if (!options.trainableOnly || p.trainable) n += p.size;
    return n;
  }

  /** Frees every parameter and buffer in the tree. */
  dispose(): void {
    for (const p of this.params.values()) {
      dropInt8Weight(p);
      p.dispose();
    }
    for (const b of this.buffers.values()) b.tensor.dispose();
    for (const c of this.children.values()) c.dispose();
    this.params.clear();
    this.buffers.clear();
  }
}

/** An indexed list of modules; children are named '0', '1', … as in torch.nn.ModuleList. */
export class ModuleList<T extends Module> extends Module implements Iterable<T> {
  private readonly items: T[] = [];

  constructor(modules: readonly T[] = []) {
    super();
    for (const m of modules) this.push(m);
  }

  push(module: T): void {
    this.registerModule(String(this.items.length), module);
    this.items.push(module);
  }

  get length(): number {
    return this.items.length;
  }

  at(index: number): T {
    const m = this.items[index < 0 ? this.items.length + index : index];
    if (!m) throw new RangeError(`ModuleList index ${index} out of range (length ${this.items.length})`);
    return m;
  }

  [Symbol.iterator](): Iterator<T> {
    return this.items[Symbol.iterator]();
  }
}

function join(prefix: string, name: string): string {
  return prefix ? `${prefix}.${name}` : name;
}

/**
 * A tensor rather than host data. A value with `readInto` (still in its file) is host data, and is
 * told apart first: tfjs' `instanceof Tensor` reads `.data`, which would read it from the file.
 */
function isTensor(value: tf.Tensor | StateValue): value is tf.Tensor {
  return typeof (value as StateValue).readInto !== 'function' && value instanceof tf.Tensor;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

export function describeLoadProblems(report: LoadReport): string {
  const parts: string[] = [];
  const list = (keys: string[]) => keys.slice(0, 50).join(', ') + (keys.length > 50 ? `, … (${keys.length - 50} more)` : '');
  if (report.missing.length) parts.push(`${report.missing.length} missing: ${list(report.missing)}`);
  if (report.unexpected.length) parts.push(`${report.unexpected.length} unexpected: ${list(report.unexpected)}`);
  if (report.mismatched.length) {
    const items = report.mismatched.map((m) => `${m.key} expected [${m.expected}] got [${m.got}]`);
    parts.push(`${report.mismatched.length} mis-shaped: ${list(items)}`);
  }
  return parts.join('; ');
}
