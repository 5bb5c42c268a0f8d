// What the package under test (vitest's root) imports is what its package.json declares: every bare import in
// the files it publishes (dist/*.js, *.cjs, *.d.ts, *.d.cts and bin/) names a dependency or peerDependency, and
// every dependency is imported somewhere. An undeclared import works in the monorepo (npm hoists everything to
// the root) and fails in a strict install (pnpm with hoist=false: ERR_MODULE_NOT_FOUND). Every package's vitest
// config includes this file.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = process.cwd();
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
};

/** `@scope/name/sub` → `@scope/name`, `name/sub` → `name`. */
function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return (specifier.startsWith('@') ? parts.slice(0, 2) : parts.slice(0, 1)).join('/');
}

/** Literal specifiers of import/export/require/import() (and `import("x")` types in .d.ts), from TypeScript's own scanner. */
function importsOf(text: string): string[] {
  return ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
}

const PUBLISHED = /\.(js|cjs|mjs|d\.ts|d\.cts|d\.mts)$/;

function publishedFiles(): string[] {
  return ['dist', 'bin'].flatMap((dir) =>
    existsSync(join(root, dir))
      ? readdirSync(join(root, dir))
          .filter((f) => PUBLISHED.test(f))
          .map((f) => join(dir, f))
      : [],
  );
}

/** Package name → the published files that import it (bare specifiers only, Node builtins and the package itself left out). */
function bareImports(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const file of publishedFiles()) {
    for (const specifier of importsOf(readFileSync(join(root, file), 'utf8'))) {
      if (specifier.startsWith('.') || specifier.startsWith('/') || isBuiltin(specifier)) continue;
      const name = packageOf(specifier);
      if (name === pkg.name) continue;
      found.set(name, [...(found.get(name) ?? []), file]);
    }
  }
  return found;
}

describe(`${pkg.name} declared dependencies`, () => {
  it('finds imports the way a resolver sees them', () => {
    expect(importsOf(`import a from "x"; export * from '@s/y/z'; const b = require("w"); await import('v'); import(name);`)).toEqual([
      'x',
      '@s/y/z',
      'w',
      'v',
    ]);
    expect(importsOf(`import type { T } from 'zod';\nexport declare const f: (x: import("sharp").Sharp) => void;`)).toEqual([
      'zod',
      'sharp',
    ]);
    expect(['fs', 'node:fs', 'fs/promises'].every((s) => isBuiltin(s))).toBe(true);
    expect(packageOf('@vl/core/node')).toBe('@vl/core');
  });

  it('has been built (dist holds the files it publishes)', () => {
    expect(publishedFiles().filter((f) => f.startsWith('dist')).length).toBeGreaterThan(0);
  });

  it('declares every package its published files import', () => {
    const declared = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})]);
    const undeclared = [...bareImports()]
      .filter(([name]) => !declared.has(name))
      .map(([name, files]) => `${name} (imported by ${[...new Set(files)].join(', ')})`);
    expect(undeclared, 'add these to dependencies (or peerDependencies) in package.json').toEqual([]);
  });

  it('imports every package it lists in dependencies', () => {
    const imported = bareImports();
    const unused = Object.keys(pkg.dependencies ?? {}).filter((name) => !imported.has(name));
    expect(unused, 'no published file imports these: remove them from dependencies').toEqual([]);
  });
});
