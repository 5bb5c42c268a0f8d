// Strict JSON parser: JSON.parse's grammar and results, plus duplicate-key errors, a depth limit, and
// errors that give the line, column and JSON path (JSON.parse silently keeps the last duplicate).

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

export interface StrictJsonOptions {
  /** Deepest nesting of arrays and objects accepted; bounds the parser's recursion. */
  maxDepth?: number;
}

/** A syntax error, a duplicate key or too deep a nesting, with where it happened. */
export class JsonParseError extends Error {
  /** UTF-16 offset into the text. */
  readonly offset: number;
  readonly line: number;
  readonly column: number;
  /** JSON path of the value being parsed, `$.text_config.hidden_size` style. */
  readonly jsonPath: string;
  /** The problem without the position, for callers that build their own message. */
  readonly problem: string;

  constructor(problem: string, text: string, offset: number, jsonPath: string) {
    const { line, column } = lineColumn(text, offset);
    super(`${problem} at line ${line} column ${column} (${jsonPath})`);
    this.name = 'JsonParseError';
    this.problem = problem;
    this.offset = offset;
    this.line = line;
    this.column = column;
    this.jsonPath = jsonPath;
  }
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/**
 * Appends a key or index to a JSON path: `$` → `$.vision_config` → `$.vision_config.layers[0]`.
 * Keys that are not identifiers (checkpoint names have dots) are quoted: `$["encoder.layer.0"]`.
 */
export function jsonPathJoin(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  return IDENTIFIER.test(key) ? `${parent}.${key}` : `${parent}[${JSON.stringify(key)}]`;
}

/** Formats a path given as keys (zod's `issue.path`) the same way. */
export function formatJsonPath(path: readonly PropertyKey[]): string {
  let out = '$';
  for (const key of path) out = jsonPathJoin(out, typeof key === 'number' ? key : String(key));
  return out;
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(offset, text.length);
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 0x0a) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: end - lineStart + 1 };
}

/** Sets an own property even for `__proto__`, as JSON.parse does (assignment would change the prototype). */
function defineOwn(target: JsonObject, key: string, value: JsonValue): void {
  if (key === '__proto__') {
    Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
  } else {
    target[key] = value;
  }
}

const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

class Parser {
  private pos = 0;

  constructor(
    private readonly text: string,
    private readonly maxDepth: number,
  ) {}

  parse(): JsonValue {
    const value = this.value('$', 0);
    this.skipWhitespace();
    if (this.pos < this.text.length) this.fail(`unexpected ${this.found()} after the JSON value`, '$');
    return value;
  }

  private fail(problem: string, path: string, at = this.pos): never {
    throw new JsonParseError(problem, this.text, at, path);
  }

  private skipWhitespace(): void {
    const t = this.text;
    let p = this.pos;
    for (;;) {
      const c = t.charCodeAt(p);
      // JSON whitespace is exactly these four; JSON.parse rejects others (e.g. a BOM or NBSP).
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) p++;
      else break;
    }
    this.pos = p;
  }

  /** What sits at the cursor, for messages: `end of input` or `character "x"`. */
  private found(): string {
    if (this.pos >= this.text.length) return 'end of input';
    return `character ${JSON.stringify(this.text[this.pos])}`;
  }

  private describeHere(): string {
    return `unexpected ${this.found()}`;
  }

  private value(path: string, depth: number): JsonValue {
    this.skipWhitespace();
    const c = this.text.charCodeAt(this.pos);
    switch (c) {
      case 0x7b: // {
        return this.object(path, depth + 1);
      case 0x5b: // [
        return this.array(path, depth + 1);
      case 0x22: // "
        return this.string(path);
      case 0x74: // t
        return this.literal('true', true, path);
      case 0x66: // f
        return this.literal('false', false, path);
      case 0x6e: // n
        return this.literal('null', null, path);
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number(path);
        return this.fail(this.describeHere(), path);
    }
  }

  private literal<T extends JsonValue>(word: string, value: T, path: string): T {
    if (!this.text.startsWith(word, this.pos)) this.fail(this.describeHere(), path);
    this.pos += word.length;
    return value;
  }

  private object(path: string, depth: number): JsonObject {
    if (depth > this.maxDepth) this.fail(`nested deeper than ${this.maxDepth} levels`, path);
    this.pos++; // {
    const out: JsonObject = {};
    const seen = new Set<string>();
    this.skipWhitespace();
    if (this.text.charCodeAt(this.pos) === 0x7d) {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipWhitespace();
      const keyAt = this.pos;
      if (this.text.charCodeAt(this.pos) !== 0x22) this.fail(`expected a string key, found ${this.found()}`, path);
      const key = this.string(path);
      if (seen.has(key)) this.fail(`duplicate key ${JSON.stringify(key)}`, jsonPathJoin(path, key), keyAt);
      seen.add(key);
      this.skipWhitespace();
      if (this.text.charCodeAt(this.pos) !== 0x3a) this.fail(`expected ':' after key, found ${this.found()}`, path);
      this.pos++;
      defineOwn(out, key, this.value(jsonPathJoin(path, key), depth));
      this.skipWhitespace();
      const c = this.text.charCodeAt(this.pos);
      if (c === 0x2c) {
        this.pos++;
        continue;
      }
      if (c === 0x7d) {
        this.pos++;
        return out;
      }
      this.fail(`expected ',' or '}', found ${this.found()}`, path);
    }
  }

  private array(path: string, depth: number): JsonValue[] {
    if (depth > this.maxDepth) this.fail(`nested deeper than ${this.maxDepth} levels`, path);
    this.pos++; // [
    const out: JsonValue[] = [];
    this.skipWhitespace();
    if (this.text.charCodeAt(this.pos) === 0x5d) {
      this.pos++;
      return out;
    }
    for (;;) {
      out.push(this.value(jsonPathJoin(path, out.length), depth));
      this.skipWhitespace();
      const c = this.text.charCodeAt(this.pos);
      if (c === 0x2c) {
        this.pos++;
        continue;
      }
      if (c === 0x5d) {
        this.pos++;
        return out;
      }
      this.fail(`expected ',' or ']', found ${this.found()}`, path);
    }
  }

  private string(path: string): string {
    const t = this.text;
    const start = this.pos;
    let p = start + 1; // after the opening quote
    let out = '';
    let chunkStart = p;
    for (;;) {
      if (p >= t.length) this.fail('unterminated string', path, start);
      const c = t.charCodeAt(p);
      if (c === 0x22) {
        out += t.slice(chunkStart, p);
        this.pos = p + 1;
        return out;
      }
      if (c < 0x20) this.fail('control character in string (escape it)', path, p);
      if (c !== 0x5c) {
        p++;
        continue;
      }
      out += t.slice(chunkStart, p);
      const e = t[p + 1];
      if (e === 'u') {
        const hex = t.slice(p + 2, p + 6);
        if (!/^[0-9A-Fa-f]{4}$/.test(hex)) this.fail('invalid \\u escape', path, p);
        out += String.fromCharCode(parseInt(hex, 16));
        p += 6;
      } else if (e !== undefined && Object.prototype.hasOwnProperty.call(ESCAPES, e)) {
        out += ESCAPES[e];
        p += 2;
      } else {
        this.fail('invalid escape in string', path, p);
      }
      chunkStart = p;
    }
  }

  private number(path: string): number {
    const t = this.text;
    const start = this.pos;
    let p = start;
    const digits = (): number => {
      const from = p;
      while (p < t.length && t.charCodeAt(p) >= 0x30 && t.charCodeAt(p) <= 0x39) p++;
      return p - from;
    };
    if (t.charCodeAt(p) === 0x2d) p++;
    // Integer part: a single 0, or a non-zero digit followed by digits (JSON forbids leading zeros).
    if (t.charCodeAt(p) === 0x30) p++;
    else if (digits() === 0) this.fail('invalid number', path, start);
    if (t.charCodeAt(p) === 0x2e) {
      p++;
      if (digits() === 0) this.fail('invalid number', path, start);
    }
    const e = t.charCodeAt(p);
    if (e === 0x65 || e === 0x45) {
      p++;
      const s = t.charCodeAt(p);
      if (s === 0x2b || s === 0x2d) p++;
      if (digits() === 0) this.fail('invalid number', path, start);
    }
    this.pos = p;
    return Number(t.slice(start, p));
  }
}

/**
 * Parses JSON text exactly as JSON.parse would, but rejects duplicate keys (which JSON.parse
 * resolves silently to the last one) and nesting deeper than `maxDepth` (default 256), and throws
 * `JsonParseError` with line, column and JSON path.
 */
export function parseJsonStrict(text: string, options: StrictJsonOptions = {}): JsonValue {
  return new Parser(text, options.maxDepth ?? 256).parse();
}
