import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // The shared package-shape and declared-dependency tests (../../test-support) run against this package too.
    include: ['src/**/*.test.ts', '../../test-support/*.test.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
