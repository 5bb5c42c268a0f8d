// config.json I/O: zod validation with JSON-path errors, strict parsing, pretty atomic writes, CONFIG_INVALID everywhere.
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJsonText, validateConfig } from '../json-config.js';
import { readJsonFile, writeJsonFile } from '../../node/json-file.js';
import { catchVlError, catchVlErrorAsync, FIXTURE_CHECKPOINTS, makeTempDir } from './helpers.js';

/** The part of a Hugging Face BLIP config.json these tests look at; unknown keys pass through. */
const BlipConfigSchema = z.object({
  model_type: z.literal('blip'),
  projection_dim: z.number().int().positive(),
  text_config: z.object({
    vocab_size: z.number().int().positive(),
    hidden_size: z.number().int().positive(),
    layer_norm_eps: z.number().positive(),
    is_decoder: z.boolean().default(false),
  }),
  vision_config: z.object({
    hidden_size: z.number().int().positive(),
    image_size: z.number().int().positive(),
    patch_size: z.number().int().positive(),
  }),
});

describe('readJsonFile', () => {
  let tmp: { dir: string; cleanup: () => Promise<void> };
  beforeAll(async () => {
    tmp = await makeTempDir('json');
  });
  afterAll(async () => {
    await tmp.cleanup();
  });

  it('reads and validates the BLIP fixture config.json, typed', async () => {
    const config = await readJsonFile(join(FIXTURE_CHECKPOINTS.blipCaptioning, 'config.json'), BlipConfigSchema);
    expect(config.text_config).toEqual({ vocab_size: 99, hidden_size: 32, layer_norm_eps: 1e-12, is_decoder: true });
    expect(config.vision_config.image_size / config.vision_config.patch_size).toBe(4);
    const hidden: number = config.text_config.hidden_size; // typed by the schema
    expect(hidden).toBe(32);
  });

  it('lists every invalid field by JSON path and names the file', async () => {
    const path = join(tmp.dir, 'bad-config.json');
    const raw = JSON.parse(await readFile(join(FIXTURE_CHECKPOINTS.blipCaptioning, 'config.json'), 'utf8')) as Record<
      string,
      Record<string, unknown>
    >;
    raw['text_config']!['hidden_size'] = '32';
    raw['vision_config']!['patch_size'] = -8;
    delete raw['text_config']!['vocab_size'];
    await writeFile(path, JSON.stringify(raw));
    const err = await catchVlErrorAsync(() => readJsonFile(path, BlipConfigSchema), 'CONFIG_INVALID');
    expect(err.subject).toBe(path);
    expect(err.message).toContain('3 invalid fields');
    expect(err.message).toMatch(/\$\.text_config\.vocab_size: .*expected number/);
    expect(err.message).toMatch(/\$\.text_config\.hidden_size: .*expected number, received string/);
    expect(err.message).toMatch(/\$\.vision_config\.patch_size: .*>0/);
    expect(err.hint).toMatch(/JSON paths/);
  });

  it('names each unknown key of a strict schema', () => {
    const err = catchVlError(() => parseJsonText('{"a":1,"b":2,"c.d":3}', '<test>', z.strictObject({ a: z.number() })), 'CONFIG_INVALID');
    expect(err.message).toContain('$.b: Unrecognized keys');
    expect(err.message).toContain('$["c.d"]: Unrecognized keys');
  });

  it('reports syntax errors with line, column and path', async () => {
    const path = join(tmp.dir, 'syntax.json');
    await writeFile(path, '{\n  "text_config": {\n    "hidden_size": 32,\n  }\n}\n');
    const err = await catchVlErrorAsync(() => readJsonFile(path), 'CONFIG_INVALID');
    expect(err.subject).toBe(path);
    expect(err.message).toMatch(/not valid JSON: expected a string key, found character "}" at line 4 column 3 \(\$\.text_config\)/);
  });

  it('rejects duplicate keys (JSON.parse would silently keep the last)', async () => {
    const path = join(tmp.dir, 'dup.json');
    await writeFile(path, '{"num_hidden_layers": 2, "num_hidden_layers": 12}');
    const err = await catchVlErrorAsync(() => readJsonFile(path), 'CONFIG_INVALID');
    expect(err.message).toContain('duplicate key "num_hidden_layers"');
    expect(err.message).toContain('$.num_hidden_layers');
  });

  it('accepts a UTF-8 BOM; rejects invalid UTF-8 and missing files', async () => {
    const bom = join(tmp.dir, 'bom.json');
    await writeFile(bom, '\uFEFF{"a":1}');
    expect(await readJsonFile(bom)).toEqual({ a: 1 });
    const bad = join(tmp.dir, 'latin1.json');
    await writeFile(bad, Buffer.from([0x7b, 0x22, 0xe9, 0x22, 0x3a, 0x31, 0x7d]));
    expect((await catchVlErrorAsync(() => readJsonFile(bad), 'CONFIG_INVALID')).message).toContain('not valid UTF-8');
    const missing = join(tmp.dir, 'nope.json');
    const err = await catchVlErrorAsync(() => readJsonFile(missing), 'CONFIG_INVALID');
    expect(err.subject).toBe(missing);
    expect(err.message).toMatch(/cannot read: ENOENT/);
  });

  it('validateConfig returns the schema output (defaults applied)', () => {
    expect(validateConfig({ a: 1 }, z.object({ a: z.number(), b: z.string().default('x') }), '<test>')).toEqual({ a: 1, b: 'x' });
  });
});

describe('writeJsonFile', () => {
  let tmp: { dir: string; cleanup: () => Promise<void> };
  beforeAll(async () => {
    tmp = await makeTempDir('json-write');
  });
  afterAll(async () => {
    await tmp.cleanup();
  });

  it('writes pretty JSON with a trailing newline, atomically, and reads back', async () => {
    const path = join(tmp.dir, 'config.json');
    const value = { model_type: 'blip', text_config: { hidden_size: 32, layer_norm_eps: 1e-12 }, sizes: [1, 2], note: null };
    await writeJsonFile(path, value);
    expect(await readFile(path, 'utf8')).toBe(`${JSON.stringify(value, null, 2)}\n`);
    expect(await readJsonFile(path)).toEqual(value);
    await writeJsonFile(path, { replaced: true });
    expect(await readJsonFile(path)).toEqual({ replaced: true });
    expect(await readdir(tmp.dir)).toEqual(['config.json']);
  });

  it.each<[string, unknown, string]>([
    ['NaN', { a: [1, NaN] }, '$.a[1]: NaN'],
    ['Infinity', { text_config: { layer_norm_eps: Infinity } }, '$.text_config.layer_norm_eps: Infinity'],
    ['bigint', { step: 3n }, '$.step: bigint 3'],
    ['undefined in an array', { a: [undefined] }, '$.a[0]: undefined'],
    ['a function', { f: () => 1 }, '$.f: a function'],
    ['undefined at the top', undefined, '$: undefined'],
    ['quoted keys', { 'a.b': -Infinity }, '$["a.b"]: -Infinity'],
  ])('rejects %s, naming its path, and writes nothing', async (_label, value, message) => {
    const path = join(tmp.dir, 'rejected.json');
    const err = await catchVlErrorAsync(() => writeJsonFile(path, value), 'CONFIG_INVALID');
    expect(err.subject).toBe(path);
    expect(err.message).toContain(message);
    expect(await readdir(tmp.dir)).not.toContain('rejected.json');
  });

  it('rejects cycles and unwritable paths with CONFIG_INVALID', async () => {
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect((await catchVlErrorAsync(() => writeJsonFile(join(tmp.dir, 'c.json'), cyclic), 'CONFIG_INVALID')).message).toMatch(/circular/);
    const missing = join(tmp.dir, 'no/dir/c.json');
    const err = await catchVlErrorAsync(() => writeJsonFile(missing, {}), 'CONFIG_INVALID');
    expect(err.subject).toBe(missing);
    expect(err.message).toMatch(/write failed: ENOENT/);
  });

  it('omits undefined object fields, as JSON does, and applies toJSON', async () => {
    const path = join(tmp.dir, 'omit.json');
    await writeJsonFile(path, { a: 1, b: undefined, when: new Date(0) });
    expect(await readJsonFile(path)).toEqual({ a: 1, when: '1970-01-01T00:00:00.000Z' });
  });
});
