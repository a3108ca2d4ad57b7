import { defineConfig } from 'vitest/config';

// Two projects: `unit` runs anywhere without privileges; `netns` builds network
// namespaces and needs root. The namespace tests run one file at a time because
// they share the testbed's fixed names.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'netns',
          include: ['test/netns/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
          pool: 'forks',
        },
      },
    ],
  },
});
