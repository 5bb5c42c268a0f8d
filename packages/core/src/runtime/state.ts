// The runtime's process-wide state (the chosen backend, the kernels installed on it), held on globalThis under
// `Symbol.for('vl.runtime')` as the model registry is: every copy of @vl/core in a process (its ESM and CJS
// builds, or two installed versions) drives the one tfjs engine, so they must agree on what they did to it.
// Each file keeps its own slot; a slot's fields are a contract between versions (add fields, never change one).

const KEY = Symbol.for('vl.runtime');

/** The slot `name` of the shared runtime state, created by `init` on first use in the process. */
export function runtimeSlot<T extends object>(name: string, init: () => T): T {
  const g = globalThis as { [KEY]?: Record<string, object> };
  const store = (g[KEY] ??= {});
  return (store[name] ??= init()) as T;
}
