// The published shape of @vl/accel: the exports map resolves for import and require, and names real files.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string;
  exports: Record<string, { types: string; import: string; require: string } | string>;
  files: string[];
  scripts: Record<string, string>;
};

describe('@vl/accel package', () => {
  it('has an exports map whose types/import/require files exist after the build', () => {
    const main = pkg.exports['.'];
    expect(typeof main).toBe('object');
    for (const file of Object.values(main as Record<string, string>)) expect(existsSync(join(root, file))).toBe(true);
  });

  it('loads through both module systems', async () => {
    const esm = (await import(pkg.name)) as Record<string, unknown>;
    const cjs = createRequire(import.meta.url)(pkg.name) as Record<string, unknown>;
    expect(Object.keys(esm).length).toBeGreaterThan(0);
    expect(Object.keys(cjs).sort()).toEqual(
      Object.keys(esm)
        .filter((k) => k !== 'default')
        .sort(),
    );
  });

  it('ships what a build from source needs, and an install step that cannot fail the install', () => {
    for (const file of ['binding.gyp', 'src/native', 'scripts/install.mjs', 'scripts/openblas.mjs', 'prebuilds']) {
      expect(pkg.files).toContain(file);
    }
    for (const file of ['binding.gyp', 'src/native/addon.c', 'src/native/kernels.c', 'src/native/pool.c', 'scripts/install.mjs']) {
      expect(existsSync(join(root, file)), file).toBe(true);
    }
    // An explicit install script: with only binding.gyp, npm would run a bare `node-gyp rebuild`
    // that fails the whole install on a machine without a compiler.
    expect(pkg.scripts.install).toBe('node scripts/install.mjs');
  });
});
