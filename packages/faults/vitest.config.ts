import { defineProject } from 'vitest/config';

export const config = defineProject({
  test: { name: 'faults', include: ['test/**/*.test.ts'], testTimeout: 30_000 },
});

// eslint-disable-next-line no-restricted-syntax -- vitest loads the default export
export default config;
