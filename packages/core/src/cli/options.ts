// Declarative options (OptionSpec) → commander options with checked values. Every `vl` command and
// every model alias parses through here, so a flag means the same everywhere.
import { InvalidArgumentError, Option } from 'commander';
import type { OptionSpec } from '../model/contract.js';

function number(spec: OptionSpec, int: boolean) {
  return (raw: string): number => {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n) || (int && !Number.isInteger(n)) || (spec.min !== undefined && n < spec.min)) {
      throw new InvalidArgumentError(
        `must be ${int ? 'an integer' : 'a number'}${spec.min !== undefined ? ` ≥ ${spec.min}` : ''}, got '${raw}'`,
      );
    }
    return n;
  };
}

/** A repeatable option: `--text a --text b` → ['a', 'b']. */
const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

export function toOption(spec: OptionSpec): Option {
  const o = new Option(spec.flags, spec.description);
  if (spec.choices) o.choices(spec.choices);
  switch (spec.kind ?? (o.required || o.optional ? 'string' : 'boolean')) {
    case 'int':
      o.argParser(number(spec, true));
      break;
    case 'number':
      o.argParser(number(spec, false));
      break;
    case 'strings':
      o.argParser(collect);
      break;
    default:
      break;
  }
  if (spec.default !== undefined) o.default(spec.default);
  return o;
}

/** Options that mean the same on every command that has them. */
export const COMMON = {
  checkpoint: { flags: '--checkpoint <dir>', description: 'model folder (config.json + weights)' },
  backend: {
    flags: '--backend <name>',
    description: 'tfjs backend (default: VL_BACKEND, else the best installed)',
    choices: ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'],
  },
  quiet: { flags: '--quiet', description: 'no progress bars' },
  json: { flags: '--json', description: 'print JSON instead of text' },
} satisfies Record<string, OptionSpec>;

/** `--model DIR`, kept on the model aliases' commands as the old name of `--checkpoint`. */
export const MODEL_ALIAS: OptionSpec = { flags: '--model <dir>', description: 'same as --checkpoint' };
