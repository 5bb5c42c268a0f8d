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
