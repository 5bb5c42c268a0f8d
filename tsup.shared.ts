// One tsup factory for every package: ESM + CJS + .d.ts, node target, deps left external. No sourcemaps unless
// VL_SOURCEMAP=1: they held the TypeScript sources again and were about 60% of every tarball, and the output is
// readable, unminified JavaScript (nx.json lists VL_SOURCEMAP among the build inputs, so the cache tells them apart).
import { defineConfig, type Options } from 'tsup';

export function vlTsupConfig(entry: Record<string, string>, extra: Partial<Options> = {}) {
  return defineConfig({
    entry,
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: process.env.VL_SOURCEMAP === '1',
    clean: true,
    target: 'node20',
    platform: 'node',
    splitting: false,
    shims: true,
    // Dependencies stay imports: bundling tfjs would create a second engine instance.
    skipNodeModulesBundle: true,
    ...extra,
  });
}
