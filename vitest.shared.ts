// One vitest config for every package (each package's vitest.config.ts re-exports it).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // The shared package-shape test lives at the repo root and runs against this package (cwd).
    include: ['src/**/*.test.ts', '../../test-support/*.test.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
