import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // TF.js keeps one global engine per process: run test files in forks so
    // that backend choice and memory accounting stay per file.
    pool: 'forks',
    setupFiles: ['test/setup.ts'],
  },
});
