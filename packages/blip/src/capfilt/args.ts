// CapFilt's own argument parsing (node:util parseArgs), kept while its hardened option checks (issue 14)
// are wired into @vl/core/cli's declarative options: `vl capfilt blip` passes its arguments through here.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { type BackendChoice, initRuntime, type Io } from '@vl/core';

export type { Io };
export const processIo: Io = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
};

export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;
export type Parsed = { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] };

export function parse(argv: string[], options: Options, allowPositionals = false): Parsed {
  try {
    return parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals,
      strict: true,
    }) as Parsed;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export function str(p: Parsed, name: string, required = false): string | undefined {
  const v = p.values[name];
  if (v === undefined) {
    if (required) throw new UsageError(`--${name} is required`);
    return undefined;
  }
  return String(v);
}

export function num(p: Parsed, name: string, fallback: number, check: { int?: boolean; min?: number } = {}): number {
  const raw = p.values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || (check.int && !Number.isInteger(n)) || (check.min !== undefined && n < check.min)) {
    const what = `${check.int ? 'an integer' : 'a number'}${check.min !== undefined ? ` ≥ ${check.min}` : ''}`;
    throw new UsageError(`--${name} must be ${what}, got '${String(raw)}'`);
  }
  return n;
}

const BACKENDS = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'];

export async function startRuntime(p: Parsed): Promise<void> {
  const b = str(p, 'backend');
  if (b !== undefined && !BACKENDS.includes(b)) throw new UsageError(`--backend must be one of ${BACKENDS.join(', ')}`);
  await initRuntime(b ? { backend: b as BackendChoice } : {});
}

export const backendOpt: Options = { backend: { type: 'string' } };
