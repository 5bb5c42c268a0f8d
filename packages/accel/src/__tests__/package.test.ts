// What @vl/accel ships for a build from source. The exports map (per-condition types, both module systems) is
// checked by the shared ../../test-support/package-shape.test.ts, which this package's vitest config includes.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  files: string[];
  scripts: Record<string, string>;
};

describe('@vl/accel package', () => {
  it('ships what a build from source needs, and an install step that cannot fail the install', () => {
    for (const file of ['binding.gyp', 'src/native', 'scripts/install.mjs', 'scripts/openblas.mjs', 'scripts/platform.mjs']) {
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
