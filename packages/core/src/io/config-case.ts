// Key casing at the config.json boundary: checkpoint files keep the original code's snake_case
// (`hidden_size`), TypeScript configs use camelCase (`hiddenSize`). Both directions are exact inverses
// on every key either accepts, so unknown keys (`transformers_version`, `_name_or_path`) survive
// load → save and the saved file still loads in the original code.
import { VlError } from '../errors.js';

/** snake_case words (digits allowed after the first letter, or as a whole word), optionally with leading underscores. */
const SNAKE_KEY = /^(_*)([a-z][a-z0-9]*(?:_[a-z0-9]+)*)$/;
/** What SNAKE_KEY becomes: an upper-case letter only where `_` + letter was. */
const CAMEL_KEY = /^(_*)([a-z][a-z0-9]*(?:(?:_[0-9][a-z0-9]*)|[A-Z][a-z0-9]*)*)$/;

/** Maps whose keys are data (labels, ids), not field names: their keys are never recased. */
export const OPAQUE_CONFIG_KEYS: readonly string[] = ['id2label', 'label2id'];

export interface ConfigCaseOptions {
  /** Keys whose values are copied as they are (default OPAQUE_CONFIG_KEYS). */
  opaque?: readonly string[];
  /** Names the source in errors (a file path). */
  subject?: string;
}

/** `layer_norm_eps` → `layerNormEps`, `_name_or_path` → `_nameOrPath`, `layer_2_norm` → `layer_2Norm`; other keys as they are. */
export function camelKey(key: string): string {
  const m = SNAKE_KEY.exec(key);
  if (!m) return key;
  return (m[1] as string) + (m[2] as string).replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** The inverse of camelKey: `layerNormEps` → `layer_norm_eps`; keys camelKey would not produce stay as they are. */
export function snakeKey(key: string): string {
  const m = CAMEL_KEY.exec(key);
  if (!m) return key;
  return (m[1] as string) + (m[2] as string).replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function recase(
  value: unknown,
  map: (key: string) => string,
  back: (key: string) => string,
  options: ConfigCaseOptions,
  path: string,
): unknown {
  if (Array.isArray(value)) return value.map((item, i) => recase(item, map, back, options, `${path}[${i}]`));
  if (typeof value !== 'object' || value === null) return value;
  const opaque = options.opaque ?? OPAQUE_CONFIG_KEYS;
  const out: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
    const mapped = map(key);
    // A key the other direction would not restore (`fooBar` in a snake_case file) would be renamed by a save.
    if (back(mapped) !== key) {
      throw new VlError('CONFIG_INVALID', `${path}.${key}: this key cannot be converted between snake_case and camelCase and back`, {
        subject: options.subject,
        hint: `rename it (to '${back(mapped)}' or '${mapped}'), or remove it`,
      });
    }
    if (Object.prototype.hasOwnProperty.call(out, mapped)) {
      throw new VlError('CONFIG_INVALID', `${path}: keys '${key}' and another one both map to '${mapped}'`, {
        subject: options.subject,
        hint: 'keep only one of them',
      });
    }
    const converted = opaque.includes(key) ? structuredClone(child) : recase(child, map, back, options, `${path}.${key}`);
    Object.defineProperty(out, mapped, { value: converted, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** Deep copy of a parsed config.json with every field name in camelCase (arrays included, opaque maps copied). */
export function camelizeKeys<T = unknown>(value: unknown, options: ConfigCaseOptions = {}): T {
  return recase(value, camelKey, snakeKey, options, '$') as T;
}

/** Deep copy of a TypeScript config with every field name in snake_case, ready to write as config.json. */
export function snakifyKeys<T = unknown>(value: unknown, options: ConfigCaseOptions = {}): T {
  return recase(value, snakeKey, camelKey, options, '$') as T;
}
