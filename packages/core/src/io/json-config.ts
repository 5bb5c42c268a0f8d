// config.json text: strict parse (duplicate keys are errors), optional zod validation, checked pretty
// printing; every failure is VlError('CONFIG_INVALID') naming the source and the JSON path of the field.
import type { z } from 'zod';
import { VlError, isVlError } from '../errors.js';
import { formatJsonPath, JsonParseError, jsonPathJoin, parseJsonStrict, type JsonValue } from './json-strict.js';

/** The issue fields we print; zod 4's `$ZodIssue` has them all. */
interface SchemaIssue {
  path: readonly PropertyKey[];
  message: string;
  keys?: readonly string[];
}

/** One line per issue: `$.text_config.hidden_size: Invalid input: expected number, received string`. */
export function formatSchemaIssues(issues: readonly SchemaIssue[], keyName: (key: string) => string = (k) => k): string {
  return issues
    .map((issue) => {
      const path = formatJsonPath(issue.path.map((p) => (typeof p === 'string' ? keyName(p) : p)));
      // zod reports unknown keys on the parent object; name each key so the path is exact.
      if (issue.keys && issue.keys.length > 0) {
        return issue.keys.map((k) => `${jsonPathJoin(path, keyName(k))}: ${issue.message}`).join('\n');
      }
      return `${path}: ${issue.message}`;
    })
    .join('\n');
}

/**
 * Validates a parsed value with a zod schema; on failure throws CONFIG_INVALID listing every bad
 * field by JSON path. Returns the schema's output (defaults filled in, unknown keys as the schema says).
 * `keyName` spells path keys as the file does (snakeKey for a config.json camelized on reading).
 */
export function validateConfig<T>(value: unknown, schema: z.ZodType<T>, subject: string, keyName?: (key: string) => string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues as readonly SchemaIssue[];
  throw new VlError(
    'CONFIG_INVALID',
    `${issues.length} invalid field${issues.length === 1 ? '' : 's'}:\n${formatSchemaIssues(issues, keyName)}`,
    {
      subject,
      hint: 'fix the fields listed (paths are JSON paths into the file)',
      cause: result.error,
    },
  );
}

/**
 * Parses JSON text strictly (see parseJsonStrict) and, given a schema, validates it. `subject`
 * names the source in errors (a file path, `<argv>`, …).
 */
export function parseJsonText<T = unknown>(text: string, subject: string, schema?: z.ZodType<T>): T {
  // A UTF-8 BOM is common from Windows editors and carries no meaning; JSON.parse would reject it.
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  let value: JsonValue;
  try {
    value = parseJsonStrict(body);
  } catch (cause) {
    if (cause instanceof JsonParseError) {
      throw new VlError(
        'CONFIG_INVALID',
        `not valid JSON: ${cause.problem} at line ${cause.line} column ${cause.column} (${cause.jsonPath})`,
        {
          subject,
          hint: 'fix the JSON syntax at the position given',
          cause,
        },
      );
    }
    throw cause;
  }
  return schema ? validateConfig(value, schema, subject) : (value as T);
}

/**
 * Pretty JSON (2-space indent, trailing newline), refusing values JSON.stringify would silently
 * change (NaN/±Infinity → null, undefined in an array → null) or reject (bigint, cycles), each named
 * by JSON path in a CONFIG_INVALID error about `subject`.
 */
export function stringifyJson(value: unknown, subject: string): string {
  const paths = new WeakMap<object, string>();
  const fail = (path: string, what: string): never => {
    throw new VlError('CONFIG_INVALID', `${path}: ${what} cannot be written as JSON`, {
      subject,
      hint: 'replace it with a finite number, string, null or a plain object',
    });
  };
  let text: string | undefined;
  try {
    text = JSON.stringify(
      value,
      function (this: unknown, key: string, v: unknown): unknown {
        const holder = this as object;
        const parentPath = paths.get(holder);
        const isArray = Array.isArray(holder);
        const path = parentPath === undefined ? '$' : jsonPathJoin(parentPath, isArray ? Number(key) : key);
        if (typeof v === 'number' && !Number.isFinite(v)) fail(path, String(v));
        if (typeof v === 'bigint') fail(path, `bigint ${v}`);
        if (typeof v === 'function' || typeof v === 'symbol') fail(path, `a ${typeof v}`);
        if (v === undefined && (isArray || parentPath === undefined)) fail(path, 'undefined');
        if (typeof v === 'object' && v !== null) paths.set(v, path);
        return v;
      },
      2,
    );
  } catch (cause) {
    if (isVlError(cause)) throw cause;
    throw new VlError('CONFIG_INVALID', `cannot be written as JSON: ${(cause as Error).message}`, {
      subject,
      hint: 'remove cycles and non-JSON values',
      cause,
    });
  }
  // Only undefined at the top level gives no text, and the replacer rejected that.
  return `${text ?? 'null'}\n`;
}
