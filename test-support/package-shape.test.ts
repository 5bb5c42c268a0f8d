// The published shape of the package under test (vitest's root): every entry of its exports map (`.` and
// subpaths such as `@vl/core/node`) has per-condition types (`import` → .d.ts + .js, `require` → .d.cts + .cjs,
// so CommonJS users under moduleResolution node16 get CommonJS types, not "masquerading as ESM"), resolves for
// import and require, and names real files; main/module/types and typesVersions (for moduleResolution node10)
// agree with it. Every package's vitest config includes this file.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

interface Target {
  types: string;
  default: string;
}
interface Conditions {
  import: Target;
  require: Target;
}

const root = process.cwd();
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string;
  main?: string;
  module?: string;
  types?: string;
  typesVersions?: Record<string, Record<string, string[]>>;
  exports: Record<string, Conditions | string>;
};

/**
 * Packages still on the flat map (`types`/`import`/`require` side by side), owned by a branch in flight: they are
 * checked for resolving only. Remove a name when its package.json moves to the per-condition form.
 */
const FLAT_EXPORTS_PENDING = new Set<string>([]);

/** Code entries: `.` and `./sub` with conditions (not `./package.json`). */
const entries = Object.entries(pkg.exports).filter((e): e is [string, Conditions] => typeof e[1] === 'object');

describe(`${pkg.name} package`, () => {
  it('has a main entry', () => {
    expect(entries.map(([subpath]) => subpath)).toContain('.');
  });

  if (!FLAT_EXPORTS_PENDING.has(pkg.name)) {
    it('main, module and types name the `.` entry (types: the CommonJS declarations, as main is CommonJS)', () => {
      const dot = pkg.exports['.'] as Conditions;
      expect({ main: pkg.main, module: pkg.module, types: pkg.types }).toEqual({
        main: dot.require.default,
        module: dot.import.default,
        types: dot.require.types,
      });
    });

    it('typesVersions maps every subpath to its CommonJS declarations (moduleResolution node10 ignores exports)', () => {
      const subpaths = entries.filter(([s]) => s !== '.');
      const expected = Object.fromEntries(subpaths.map(([s, c]) => [s.slice(2), [c.require.types]]));
      expect(pkg.typesVersions?.['*'] ?? {}).toEqual(expected);
    });
  }

  for (const [subpath, conditions] of entries) {
    const specifier = subpath === '.' ? pkg.name : `${pkg.name}/${subpath.slice(2)}`;

    if (!FLAT_EXPORTS_PENDING.has(pkg.name)) {
      it(`${specifier}: import → .d.ts + .js, require → .d.cts + .cjs, and the files exist after the build`, () => {
        expect(Object.keys(conditions)).toEqual(['import', 'require']);
        const base = conditions.import.default.replace(/\.js$/, '');
        expect(conditions).toEqual({
          import: { types: `${base}.d.ts`, default: `${base}.js` },
          require: { types: `${base}.d.cts`, default: `${base}.cjs` },
        });
        for (const file of [conditions.import, conditions.require].flatMap((t) => [t.types, t.default]))
          expect(existsSync(join(root, file)), file).toBe(true);
      });
    }

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
