// The model registry: model name → ModelSpec. Each model package registers itself when its entry is
// imported (a declared side effect); `vl` looks models up here. Held on globalThis so the ESM and CJS
// copies of @vl/core (both can load in one process) share one registry.
import { VlError } from '../errors.js';
import type { AnyModelSpec } from './contract.js';

const KEY = Symbol.for('@vl/core/model-registry');
type Store = Map<string, AnyModelSpec>;

function store(): Store {
  const g = globalThis as { [KEY]?: Store };
  g[KEY] ??= new Map();
  return g[KEY];
}

const NAME = /^[a-z][a-z0-9-]*$/;

/**
 * Registers a model. Registering the same spec object again is a no-op (a package imported through
 * both module systems); another spec under a taken name is an error.
 */
export function registerModel(spec: AnyModelSpec): void {
  if (!NAME.test(spec.name))
    throw new VlError('INVALID_ARGUMENT', `model name '${spec.name}' must be lower case letters, digits and dashes`, {
      subject: spec.packageName,
    });
  const existing = store().get(spec.name);
  if (existing && existing !== spec && existing.packageName !== spec.packageName) {
    throw new VlError('INVALID_ARGUMENT', `model '${spec.name}' is already registered by ${existing.packageName}`, {
      subject: spec.packageName,
    });
  }
  if (!existing) store().set(spec.name, spec);
}

/** Removes a model (tests). */
export function unregisterModel(name: string): boolean {
  return store().delete(name);
}

/** Registered models, by name. */
export function listModels(): AnyModelSpec[] {
  return [...store().values()].sort((a, b) => a.name.localeCompare(b.name));
}

export function findModel(name: string): AnyModelSpec | undefined {
  return store().get(name);
}

/** The model registered as `name`; a typed error that says what exists otherwise. */
export function getModel(name: string): AnyModelSpec {
  const spec = store().get(name);
  if (spec) return spec;
  const known =
    listModels()
      .map((m) => m.name)
      .join(', ') || 'none';
  throw new VlError('MODEL_UNKNOWN', `unknown model '${name}'`, { subject: name, hint: `models available: ${known}` });
}

/** The model, which must have `capability` (e.g. 'verify', 'train', 'ablation'); a typed error otherwise. */
export function getModelWith<K extends keyof AnyModelSpec>(name: string, capability: K): AnyModelSpec & Required<Pick<AnyModelSpec, K>> {
  const spec = getModel(name);
  if (spec[capability] === undefined) {
    const have =
      listModels()
        .filter((m) => m[capability] !== undefined)
        .map((m) => m.name)
        .join(', ') || 'none';
    throw new VlError('TASK_UNSUPPORTED', `model '${name}' does not support ${String(capability)}`, {
      subject: name,
      hint: `models that do: ${have}`,
    });
  }
  return spec as AnyModelSpec & Required<Pick<AnyModelSpec, K>>;
}
