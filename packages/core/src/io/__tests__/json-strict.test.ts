// Strict JSON parser: same results as JSON.parse (differential fuzz), plus duplicate keys, depth and positions.
import { describe, expect, it } from 'vitest';
import { Rng } from '../../runtime/rng.js';
import { formatJsonPath, JsonParseError, jsonPathJoin, parseJsonStrict, type JsonValue } from '../json-strict.js';

function parseError(text: string, maxDepth?: number): JsonParseError {
  try {
    parseJsonStrict(text, { maxDepth });
  } catch (err) {
    expect(err).toBeInstanceOf(JsonParseError);
    return err as JsonParseError;
  }
  throw new Error(`expected ${JSON.stringify(text)} to fail`);
}

describe('parseJsonStrict', () => {
  it('parses what JSON.parse parses, to the same values', () => {
    const samples = [
      '{"a":1,"b":[true,false,null],"c":{"d":"e\\n\\u00e9\\ud83d\\ude00\\"\\\\\\/"},"f":-0.5e-3,"g":1E+2}',
      ' [ ] ',
      '"lone \\ud800 surrogate"',
      '0',
      '-0',
      '1e400',
      '{"":{"":[]}}',
    ];
    for (const s of samples) expect(parseJsonStrict(s)).toEqual(JSON.parse(s));
  });

  it('keeps __proto__ as an own key, like JSON.parse', () => {
    const value = parseJsonStrict('{"__proto__":{"polluted":true}}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.keys(value)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('rejects duplicate keys with their path and position', () => {
    const err = parseError('{\n  "text_config": {\n    "hidden_size": 32,\n    "hidden_size": 64\n  }\n}');
    expect(err.problem).toBe('duplicate key "hidden_size"');
    expect(err.jsonPath).toBe('$.text_config.hidden_size');
    expect([err.line, err.column]).toEqual([4, 5]);
  });

  it('limits nesting', () => {
    expect(parseJsonStrict('[[[1]]]', { maxDepth: 3 })).toEqual([[[1]]]);
    expect(parseError('[[[[1]]]]', 3).problem).toBe('nested deeper than 3 levels');
    // The default bound stops pathological nesting before the stack does.
    expect(parseError('['.repeat(100_000)).problem).toMatch(/nested deeper than 256/);
  });

  it.each([
    ['{"a":1,}', 'expected a string key, found character "}"'],
    ['[1,]', 'unexpected character "]"'],
    ['{"a" 1}', 'expected \':\' after key, found character "1"'],
    ['{"a":1 "b":2}', "expected ',' or '}', found character \"\\\"\""],
    ['01', 'unexpected character "1" after the JSON value'],
    ['1.', 'invalid number'],
    ['-', 'invalid number'],
    ['.5', 'unexpected character "."'],
    ['"a\tb"', 'control character in string (escape it)'],
    ['"\\x"', 'invalid escape in string'],
    ['"\\u12G4"', 'invalid \\u escape'],
    ['"abc', 'unterminated string'],
    ['tru', 'unexpected character "t"'],
    ['NaN', 'unexpected character "N"'],
    ['', 'unexpected end of input'],
    ['\uFEFF{}', 'unexpected character "\uFEFF"'],
  ])('rejects %j: %s', (text, problem) => {
    expect(parseError(text).problem).toBe(problem);
  });

  it('formats paths for identifiers, quoted keys and indices', () => {
    expect(jsonPathJoin(jsonPathJoin('$', 'vision_config'), 'layers')).toBe('$.vision_config.layers');
    expect(jsonPathJoin('$', 'encoder.layer.0.weight')).toBe('$["encoder.layer.0.weight"]');
    expect(formatJsonPath(['a', 0, 'b c'])).toBe('$.a[0]["b c"]');
    expect(parseError('{"x":[1,{"y":tru}]}').jsonPath).toBe('$.x[1].y');
  });
});

/** A random JSON value with awkward strings (any UTF-16 unit) and numbers (exponents, extremes). */
function randomValue(rng: Rng, depth: number): unknown {
  const kind = rng.int(depth > 3 ? 4 : 6);
  if (kind === 0) return [null, true, false][rng.int(3)];
  if (kind === 1) {
    const pick = rng.int(4);
    if (pick === 0) return rng.int(1000) - 500;
    if (pick === 1) return (rng.uniform() - 0.5) * 10 ** (rng.int(600) - 300);
    if (pick === 2) return [Number.MAX_VALUE, Number.MIN_VALUE, 2 ** 53 + 1, -1e-7][rng.int(4)];
    return rng.uniform();
  }
  if (kind === 2 || kind === 3) {
    let s = '';
    for (let i = rng.int(8); i > 0; i--) s += String.fromCharCode(rng.int(3) === 0 ? rng.int(0x10000) : 0x20 + rng.int(95));
    return s;
  }
  if (kind === 4) return Array.from({ length: rng.int(4) }, () => randomValue(rng, depth + 1));
  const obj: Record<string, unknown> = {};
  for (let i = rng.int(4); i > 0; i--) obj[String(randomValue(rng, 99))] = randomValue(rng, depth + 1);
  return obj;
}

describe('parseJsonStrict against JSON.parse (seeded differential fuzz)', () => {
  it('agrees on 400 random documents', () => {
    const rng = new Rng(1234);
    for (let c = 0; c < 400; c++) {
      const text = JSON.stringify(randomValue(rng, 0), null, rng.int(2) === 0 ? undefined : 2);
      expect(parseJsonStrict(text), text).toEqual(JSON.parse(text) as JsonValue);
    }
  });

  it('agrees on accept/reject for 1500 mutated documents (only duplicates differ)', () => {
    const rng = new Rng(99);
    const base = JSON.stringify({ a: [1, -2.5e-3, 'x\\y"z', { b: null, c: true }], d: { e: 'f', g: [[], {}] } });
    const alphabet = '{}[],:"\\-+.eE0123456789 \ntfnulrsa';
    let rejected = 0;
    for (let c = 0; c < 1500; c++) {
      let text = base;
      for (let k = 1 + rng.int(3); k > 0; k--) {
        const at = rng.int(text.length + 1);
        const ch = alphabet[rng.int(alphabet.length)]!;
        const op = rng.int(3);
        text =
          op === 0
            ? text.slice(0, at) + ch + text.slice(at)
            : op === 1
              ? text.slice(0, at) + text.slice(at + 1)
              : text.slice(0, at) + ch + text.slice(at + 1);
      }
      let expected: unknown;
      let reference = true;
      try {
        expected = JSON.parse(text);
      } catch {
        reference = false;
      }
      try {
        const value = parseJsonStrict(text);
        expect(reference, text).toBe(true);
        expect(value, text).toEqual(expected);
      } catch (err) {
        if (!(err instanceof JsonParseError)) throw err;
        // A document JSON.parse accepts may only be rejected for a duplicate key.
        if (reference) expect(err.problem, text).toMatch(/^duplicate key/);
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(300);
  });
});
