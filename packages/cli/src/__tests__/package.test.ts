// The published shape of @vl/cli: the exports map resolves for import and require, and names real files.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string;
  exports: Record<string, { types: string; import: string; require: string } | string>;
};

describe('@vl/cli package', () => {
  it('has an exports map whose types/import/require files exist after the build', () => {
    const main = pkg.exports['.'];
    expect(typeof main).toBe('object');
    for (const file of Object.values(main as Record<string, string>)) expect(existsSync(join(root, file))).toBe(true);
  });

  it('loads through both module systems', async () => {
    const esm = (await import(pkg.name)) as Record<string, unknown>;
    const cjs = createRequire(import.meta.url)(pkg.name) as Record<string, unknown>;
    expect(Object.keys(esm).length).toBeGreaterThan(0);
    expect(Object.keys(cjs).sort()).toEqual(Object.keys(esm).filter((k) => k !== 'default').sort());
  });
});
