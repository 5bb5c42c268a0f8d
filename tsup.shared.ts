// One tsup factory for every package: ESM + CJS + .d.ts, node target, deps left external.
import { defineConfig, type Options } from 'tsup';

export function vlTsupConfig(entry: Record<string, string>, extra: Partial<Options> = {}) {
  return defineConfig({
    entry,
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
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
