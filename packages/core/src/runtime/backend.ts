// Backend choice: tfjs-node-gpu > tfjs-node > wasm > cpu, by what is installed; VL_BACKEND overrides;
// `webgl` on request. Browser-safe: the native packages and @vl/accel are probed only under Node,
// through `import(name)` with a computed name that bundlers leave alone (they are optional peers
// whose install downloads libtensorflow or builds C++, so their absence is the normal case and is
// reported, not thrown). In a browser the native candidates are reported as "needs Node.js".
import * as tf from '@tensorflow/tfjs-core';
// The union package registers every gradient with the one tfjs-core engine (tfjs-core's own
// gradient files are ESM-only deep imports that do not load in Node) and the cpu backend.
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { VlError } from '../errors.js';
import { runtimeSlot } from './state.js';
import { installWasmKernels, type InstalledKernels } from './wasm-kernels.js';

export type BackendChoice = 'tfjs-node-gpu' | 'tfjs-node' | 'wasm' | 'cpu' | 'webgl';
/** The order `auto` tries. webgl is not in it: core's kernels and the parity fixtures target wasm/cpu numerics. */
export const BACKEND_PREFERENCE: readonly BackendChoice[] = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'];
const BACKEND_NAMES: readonly BackendChoice[] = [...BACKEND_PREFERENCE, 'webgl'];

export interface BackendCandidate {
  choice: BackendChoice;
  available: boolean;
  note: string;
}

export interface RuntimeInfo {
  /** What was chosen, in `BackendChoice` terms. */
  choice: BackendChoice;
  /** The tfjs backend name that is active (`tensorflow` for both native packages). */
  backend: string;
  /** One sentence: why this backend. */
  reason: string;
  candidates: BackendCandidate[];
  /** Kernels core registered on the chosen backend (replacements and fallbacks). */
  kernels: InstalledKernels;
  /** What the caller asked for ('auto' unless forced). */
  requested: BackendChoice | 'auto';
  /** The optional native kernels (@vl/accel) on wasm: whether they are registered (and on how many threads), or why not. */
  accel: AccelInfo;
}

export interface InitRuntimeOptions {
  /** Force a backend; default: `VL_BACKEND` if set, else the best installed one. */
  backend?: BackendChoice | 'auto';
  /** Register core's wasm kernels (fast BatchMatMul, missing training kernels). Default true. */
  wasmKernels?: boolean;
  /** Register @vl/accel's native kernels on wasm when installed. Default: on unless VL_ACCEL=0. */
  accel?: boolean;
  /** Print the choice to stderr. Default false. */
  verbose?: boolean;
}

const NATIVE_PACKAGES: Record<'tfjs-node-gpu' | 'tfjs-node', string> = {
  'tfjs-node-gpu': '@tensorflow/tfjs-node-gpu',
  'tfjs-node': '@tensorflow/tfjs-node',
};

type ProcessListener = (...args: unknown[]) => void;

/** The slice of Node's `process` the runtime uses. */
interface NodeProcess {
  versions?: { node?: string };
  env: Record<string, string | undefined>;
  stderr: { write(text: string): unknown };
  listeners?(event: string): ProcessListener[];
  removeListener?(event: string, listener: ProcessListener): unknown;
}

/** Node's `process`, or undefined in a browser or worker (read through globalThis so bundlers inject no shim). */
function nodeProcess(): NodeProcess | undefined {
  const p = (globalThis as { process?: NodeProcess }).process;
  return p?.versions?.node ? p : undefined;
}

function envVar(name: string): string | undefined {
  return nodeProcess()?.env[name];
}

type Loaded = { ok: true; module: unknown } | { ok: false; missing: boolean; message: string };

/**
 * Imports an optional Node package by name. The specifier is a variable and the comments tell
 * webpack and vite to leave the call alone, so no bundler tries to resolve or inline it; a browser
 * never reaches it (callers check `nodeProcess()` first).
 */
async function importOptional(pkg: string): Promise<Loaded> {
  try {
    const specifier = pkg;
    return { ok: true, module: await import(/* webpackIgnore: true */ /* @vite-ignore */ specifier) };
  } catch (err) {
    const message = String((err as { message?: string }).message ?? err).split('\n')[0] ?? '';
    // "Not installed" is the package itself unresolvable: Node (ESM `Cannot find package 'p'`, CJS
    // `Cannot find module 'p'`) and vite (`Could not resolve "p"`) quote the bare name. A missing
    // file inside it (say the native binding) is a broken install: that message quotes a path.
    const missing = message.includes(`'${pkg}'`) || message.includes(`"${pkg}"`);
    return { ok: false, missing, message };
  }
}

async function tryLoadNative(choice: 'tfjs-node-gpu' | 'tfjs-node'): Promise<BackendCandidate> {
  const pkg = NATIVE_PACKAGES[choice];
  if (!nodeProcess()) return { choice, available: false, note: `${pkg} needs Node.js` };
  const loaded = await importOptional(pkg);
  if (loaded.ok) return { choice, available: true, note: `${pkg} loaded` };
  if (loaded.missing) return { choice, available: false, note: `${pkg} is not installed (optional)` };
  return { choice, available: false, note: `${pkg} is installed but failed to load: ${loaded.message}` };
}

function webglCandidate(): BackendCandidate {
  const hasWebgl = tf.findBackendFactory('webgl') !== null && !nodeProcess();
  return {
    choice: 'webgl',
    available: hasWebgl,
    note: hasWebgl ? '@tensorflow/tfjs-backend-webgl is bundled' : 'webgl needs a browser with WebGL',
  };
}

export interface AccelInfo {
  active: boolean;
  note: string;
  /** Size of accel's thread pool when active; null otherwise. */
  threads: number | null;
}

/** The slice of @vl/accel the runtime uses (an optional peer: imported by name at run time). */
interface AccelModule {
  registerAccelKernels(engine: typeof tf): { active: boolean; note: string };
  unregisterAccelKernels(engine: typeof tf): void;
  accelStatus?(): { info?: { threads?: number } };
}
const ACCEL_PACKAGE = '@vl/accel';

/** What `initRuntime` chose and registered, shared by every copy of core in the process (see state.ts). */
interface BackendState {
  current: RuntimeInfo | null;
  accelModule: AccelModule | null;
  accelWanted: boolean;
}
const state = runtimeSlot<BackendState>('backend', () => ({ current: null, accelModule: null, accelWanted: false }));

/** Registers @vl/accel's kernels on wasm (after core's, which become their fallbacks), or says why not. */
async function loadAccel(wanted: boolean, why: string): Promise<AccelInfo> {
  const off = (note: string): AccelInfo => ({ active: false, note, threads: null });
  if (!wanted) return off(why);
  if (!nodeProcess()) return off(`${ACCEL_PACKAGE} needs Node.js`);
  if (!state.accelModule) {
    const loaded = await importOptional(ACCEL_PACKAGE);
    if (!loaded.ok) {
      return off(
        loaded.missing
          ? `${ACCEL_PACKAGE} is not installed (optional)`
          : `${ACCEL_PACKAGE} is installed but failed to load: ${loaded.message}`,
      );
    }
    state.accelModule = loaded.module as AccelModule;
  }
  const accelModule = state.accelModule;
  try {
    const { active, note } = accelModule.registerAccelKernels(tf);
    return { active, note, threads: active ? (accelModule.accelStatus?.().info?.threads ?? null) : null };
  } catch (err) {
    return off(`${ACCEL_PACKAGE} failed to register: ${(err as Error).message.split('\n')[0]}`);
  }
}

/** The process events Emscripten's Node glue (tfjs-backend-wasm's module) listens to. */
const EMSCRIPTEN_EVENTS = ['uncaughtException', 'unhandledRejection'] as const;

/** Emscripten's two listeners, as tfjs-backend-wasm 4.x ships them: rethrow anything but its own ExitStatus; rethrow a rejection. */
const EMSCRIPTEN_LISTENER = [/\binstanceof ExitStatus\b[\s\S]*\bthrow\b/, /^function\s*\(\s*(\w+)\s*\)\s*\{\s*throw\s+\1\s*;?\s*\}$/];

function processListeners(): Map<string, ProcessListener[]> {
  const p = nodeProcess();
  return new Map(EMSCRIPTEN_EVENTS.map((event) => [event, p?.listeners?.(event) ?? []]));
}

/**
 * Removes the process listeners Emscripten's glue adds when the wasm backend initialises under Node: its
 * `uncaughtException` listener rethrows from inside the listener, so any uncaught error (a bug, an EPIPE on
 * stdout) ends the process with code 7 and a stack that starts in tf-backend-wasm.node.js, and its
 * `unhandledRejection` listener turns every rejection into that. Without them Node reports the error where it
 * was thrown and exits with 1. Removed: listeners of Emscripten's shape (the backend may have initialised before
 * `initRuntime`), and, when `before` is given (the lists from just before the wasm backend initialised), any
 * listener of those events that appeared meanwhile (a minified glue has other names). Node only.
 */
function detachEmscriptenHandlers(before: Map<string, ProcessListener[]> | null): void {
  const p = nodeProcess();
  if (!p?.listeners || !p.removeListener) return;
  for (const event of EMSCRIPTEN_EVENTS) {
    const earlier = before ? new Set(before.get(event) ?? []) : null;
    for (const listener of p.listeners(event)) {
      const added = earlier !== null && !earlier.has(listener);
      if (!added && !EMSCRIPTEN_LISTENER.some((shape) => shape.test(Function.prototype.toString.call(listener)))) continue;
      p.removeListener(event, listener);
    }
  }
}

function parseChoice(value: string, source: string): BackendChoice | 'auto' {
  const v = value.trim().toLowerCase();
  if (v === 'auto' || v === '') return 'auto';
  if ((BACKEND_NAMES as readonly string[]).includes(v)) return v as BackendChoice;
  if (v === 'tensorflow' || v === 'node') return 'tfjs-node';
  throw new VlError('BACKEND_UNAVAILABLE', `unknown backend '${value}'`, {
    subject: source,
    hint: `use one of ${BACKEND_NAMES.join(', ')} or auto`,
  });
}

/**
 * Picks and activates the compute backend and reports what it chose and why. Calling it again
 * with the same request returns the same info; a different request switches backend.
 */
export async function initRuntime(options: InitRuntimeOptions = {}): Promise<RuntimeInfo> {
  const envValue = envVar('VL_BACKEND');
  const requested =
    options.backend !== undefined
      ? parseChoice(options.backend, 'initRuntime({ backend })')
      : envValue !== undefined
        ? parseChoice(envValue, 'VL_BACKEND')
        : 'auto';
  const wantKernels = options.wasmKernels ?? true;
  const wantAccel = options.accel ?? envVar('VL_ACCEL') !== '0';
  const { current } = state;
  if (current && requested === current.requested && current.kernels.enabled === wantKernels && state.accelWanted === wantAccel) {
    return current;
  }

  const candidates: BackendCandidate[] = [];
  for (const choice of requested === 'auto' ? BACKEND_PREFERENCE : [requested]) {
    if (choice === 'tfjs-node-gpu' || choice === 'tfjs-node') {
      candidates.push(await tryLoadNative(choice));
    } else if (choice === 'webgl') {
      candidates.push(webglCandidate());
    } else {
      candidates.push({ choice, available: true, note: `@tensorflow/tfjs-backend-${choice} is bundled` });
    }
  }
  const picked = candidates.find((c) => c.available);
  if (!picked) {
    throw new VlError('BACKEND_UNAVAILABLE', candidates.map((c) => c.note).join('; '), {
      subject: requested === 'auto' ? 'auto' : requested,
      hint: 'install the package, or set VL_BACKEND=wasm (always available)',
    });
  }
  const tfName = picked.choice === 'tfjs-node-gpu' || picked.choice === 'tfjs-node' ? 'tensorflow' : picked.choice;
  const listenersBefore = processListeners();
  const ok = await tf.setBackend(tfName);
  if (!ok) {
    throw new VlError('BACKEND_UNAVAILABLE', `tfjs could not initialise the '${tfName}' backend`, {
      subject: picked.choice,
      hint: 'set VL_BACKEND=cpu to fall back to the pure-JS backend',
    });
  }
  await tf.ready();
  detachEmscriptenHandlers(tfName === 'wasm' ? listenersBefore : null);
  if (tfName === 'cpu') {
    // The cpu backend prints an advert for tfjs-node on first use; we already report the choice.
    (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
  }
  // accel's kernels come off first (restoring core's or the stock ones), so core installs over a
  // known state, and go back on top: core's kernels are then their fallbacks.
  state.accelModule?.unregisterAccelKernels(tf);
  const kernels = installWasmKernels(tfName === 'wasm' && wantKernels);
  state.accelWanted = wantAccel;
  const accel = await loadAccel(
    tfName === 'wasm' && wantKernels && wantAccel,
    tfName !== 'wasm'
      ? `only for the wasm backend`
      : !wantKernels
        ? 'off with wasmKernels: false'
        : 'disabled (VL_ACCEL=0 or accel: false)',
  );
  const skipped = candidates.filter((c) => c !== picked && !c.available).map((c) => c.note);
  const why =
    requested === 'auto'
      ? `best installed backend${skipped.length ? ` (${skipped.join('; ')})` : ''}`
      : `requested by ${options.backend !== undefined ? 'initRuntime({ backend })' : 'VL_BACKEND'}`;
  const info: RuntimeInfo = {
    choice: picked.choice,
    backend: tfName,
    reason: `${picked.note}; ${why}`,
    candidates,
    kernels,
    requested,
    accel,
  };
  state.current = info;
  if (options.verbose) nodeProcess()?.stderr.write(`[vl] backend ${picked.choice}: ${info.reason}; accel: ${accel.note}\n`);
  return info;
}

/** The info of the last `initRuntime` call (by any copy of @vl/core in the process), or null before it. */
export function runtimeInfo(): RuntimeInfo | null {
  return state.current;
}

/**
 * The active runtime, initialised with defaults on first use. Library code calls this (not
 * `initRuntime()`), so it never overrides a backend the application chose.
 */
export async function ensureRuntime(): Promise<RuntimeInfo> {
  return state.current ?? initRuntime();
}
