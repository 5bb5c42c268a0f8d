// The published shape of the package under test (vitest's root): every entry of its exports map
// (`.` and subpaths such as `@vl/core/node`) resolves for import and require, and names real files.
// Every package's vitest config includes this file.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = process.cwd();
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string;
  exports: Record<string, { types: string; import: string; require: string } | string>;
};

/** Code entries: `.` and `./sub` with conditions (not `./package.json`). */
const entries = Object.entries(pkg.exports).filter(
  (e): e is [string, { types: string; import: string; require: string }] => typeof e[1] === 'object',
);

describe(`${pkg.name} package`, () => {
  it('has a main entry', () => {
    expect(entries.map(([subpath]) => subpath)).toContain('.');
  });

  for (const [subpath, conditions] of entries) {
    const specifier = subpath === '.' ? pkg.name : `${pkg.name}/${subpath.slice(2)}`;

    it(`${specifier}: types/import/require files exist after the build`, () => {
      expect(Object.keys(conditions).sort()).toEqual(['import', 'require', 'types']);
      for (const file of Object.values(conditions)) expect(existsSync(join(root, file)), file).toBe(true);
    });

    it(`${specifier}: loads through both module systems with the same names`, async () => {
      const esm = (await import(specifier)) as Record<string, unknown>;
      const cjs = createRequire(join(root, 'package.json'))(specifier) as Record<string, unknown>;
      expect(Object.keys(esm).length).toBeGreaterThan(0);
      expect(Object.keys(cjs).sort()).toEqual(
        Object.keys(esm)
          .filter((k) => k !== 'default')
          .sort(),
      );
    });
  }
});
