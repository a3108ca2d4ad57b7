import { defineConfig } from 'vitest/config';

// Three projects: `unit` runs anywhere without privileges; `package` packs the
// working tree and installs the package as a machine would (no privileges, no
// namespaces, slow: it builds the native addon once per package); `netns`
// builds network namespaces and needs root. The namespace tests run one file
// at a time because they share the testbed's fixed names; those that run
// distnat as an unprivileged user run the installed package, as a unit does
// (test/helpers/package.ts, a global set-up of both projects).
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
          name: 'package',
          include: ['test/package/**/*.test.ts'],
          globalSetup: ['test/helpers/package.ts'],
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'netns',
          globalSetup: ['test/helpers/package.ts'],
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
