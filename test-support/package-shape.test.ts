// The published shape of the package under test (vitest's root): its exports map resolves for
// import and require, and names real files. Every package's vitest config includes this file.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = process.cwd();
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string;
  exports: Record<string, { types: string; import: string; require: string } | string>;
};

describe(`${pkg.name} package`, () => {
  it('has an exports map whose types/import/require files exist after the build', () => {
    const main = pkg.exports['.'];
    expect(typeof main).toBe('object');
    for (const file of Object.values(main as Record<string, string>)) expect(existsSync(join(root, file))).toBe(true);
  });

  it('loads through both module systems', async () => {
    const esm = (await import(pkg.name)) as Record<string, unknown>;
    const cjs = createRequire(join(root, 'package.json'))(pkg.name) as Record<string, unknown>;
    expect(Object.keys(esm).length).toBeGreaterThan(0);
    expect(Object.keys(cjs).sort()).toEqual(Object.keys(esm).filter((k) => k !== 'default').sort());
  });
});
