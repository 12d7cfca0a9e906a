import { defineConfig } from 'vitest/config';

export const config = defineConfig({
  test: {
    projects: ['packages/*'],
    coverage: {
      provider: 'v8',
      include: ['packages/*/src/**'],
      thresholds: { lines: 70, functions: 70, branches: 60, statements: 70 },
    },
  },
});

// eslint-disable-next-line no-restricted-syntax -- vitest loads the default export
export default config;
