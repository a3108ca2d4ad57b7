import { defineConfig } from 'vitest/config';

// Four projects: `unit` runs anywhere without privileges; `package` packs the
// working tree and installs the package as a machine would (no privileges, no
// namespaces, slow: it builds the native addon once per package); `netns`
// builds network namespaces and needs root, as does `netns-beside` (below).
// The namespace tests run one file
// at a time because they share the testbed's fixed names; those that run
// distnat as an unprivileged user run the installed package, as a unit does
// (test/helpers/package.ts, a global set-up of both projects).
/**
 * Long namespace tests whose testbeds have names of their own (see the
 * netns-beside project): the lease timers and state loss, which mostly wait
 * on real lease clocks, and the soak and the malformed-packet run, which make
 * their own `bn<pid>-` testbed through scripts/bench.
 */
const BESIDE_TESTS = [
  'test/netns/pap-lease-timers.test.ts',
  'test/netns/pap-state-loss.test.ts',
  'test/netns/soak.test.ts',
  'test/netns/malformed-volume.test.ts',
];

/**
 * Vitest queues the files of every project that runs one file at a time
 * (maxWorkers 1: the default on a 2-core machine, and `netns`) in one
 * sequential queue, after the projects with more workers. `unit` and
 * `netns-beside` share a pool of this many: the long namespace files run
 * while the unit tests do, and both are done before the namespace tests.
 */
const SHARED_WORKERS = 3;

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          maxWorkers: SHARED_WORKERS,
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'package',
          include: ['test/package/**/*.test.ts'],
          globalSetup: ['test/helpers/package.ts'],
          testTimeout: 60_000,
          // One worker: with the namespace tests in the sequential queue, not
          // in SHARED_WORKERS's group (vitest refuses one group of two sizes).
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'netns',
          globalSetup: ['test/helpers/package.ts'],
          include: ['test/netns/**/*.test.ts'],
          exclude: BESIDE_TESTS,
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
          pool: 'forks',
        },
      },
      {
        // The lease timers with real clocks spend minutes waiting out leases,
        // hold-offs and RFC 6888's 120 s quarantine, with little to do; the
        // soak runs for two minutes. They build testbeds under names of their
        // own, so they run beside the unit tests (SHARED_WORKERS) instead of
        // adding their minutes to the one-at-a-time namespace queue.
        test: {
          name: 'netns-beside',
          include: BESIDE_TESTS,
          testTimeout: 300_000,
          hookTimeout: 120_000,
          maxWorkers: SHARED_WORKERS,
          pool: 'forks',
        },
      },
    ],
  },
});
