import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';

// Four projects: `unit` runs anywhere without privileges; `package` packs the
// working tree and installs the package as a machine would (no privileges, no
// namespaces, slow: it builds the native addon once per package); `netns`
// builds network namespaces and needs root, as does `netns-beside` (below).
// Every namespace test file builds its testbed under a prefix of its own
// (test/helpers/testbed.ts), so files run side by side; those that run
// distnat as an unprivileged user run the installed package, as a unit does
// (test/helpers/package.ts, a global set-up of both projects).
/**
 * Long namespace tests (see the netns-beside project): the lease timers and
 * state loss, which mostly wait on real lease clocks, and the soak, the
 * malformed-packet run and bench:routers' smoke run, which make their own
 * `bn<pid>-` testbed through scripts/bench.
 */
const BESIDE_TESTS = [
  'test/netns/pap-lease-timers.test.ts',
  'test/netns/pap-state-loss.test.ts',
  'test/netns/soak.test.ts',
  'test/netns/malformed-volume.test.ts',
  'test/netns/bench-routers.test.ts',
];

/**
 * `unit` and `netns-beside` share one pool of this many workers (vitest puts
 * projects of one size in one group): the long namespace files spend their
 * minutes waiting on lease clocks while the unit files run beside them.
 */
const SHARED_WORKERS = 3;

/**
 * The other namespace files run after that pool, two at a time: each builds
 * its testbed under a prefix of its own (test/helpers/testbed.ts), and most
 * of a file's time is waiting on daemons and timers. Three at a time on two
 * cores was faster still, but loaded the machine enough to make tests that
 * watch real timers (the router's hold-off, a restarted router's programs
 * taking over) miss them.
 */
const NETNS_WORKERS = 2;

/**
 * In the first pool the long namespace files start first (minutes each,
 * mostly waiting), and the many short unit files fill the gaps after them;
 * vitest's own order (by project name, then by past duration or size) would
 * start the long files last and leave one worker running them alone.
 */
class LongFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (f: TestSpecification): number => (f.project.name === 'netns-beside' ? 0 : 1);
    return sorted
      .map((file, i) => ({ file, i }))
      .sort((a, b) => rank(a.file) - rank(b.file) || a.i - b.i)
      .map(({ file }) => file);
  }
}

export default defineConfig({
  test: {
    sequence: { sequencer: LongFirstSequencer },
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
          // One worker, so in vitest's queue of one-at-a-time files after the
          // shared pool, not in SHARED_WORKERS's group (vitest refuses one
          // group of two sizes).
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
          maxWorkers: NETNS_WORKERS,
          sequence: { groupOrder: 1 },
          pool: 'forks',
        },
      },
      {
        // The lease timers with real clocks spend minutes waiting out leases,
        // hold-offs and RFC 6888's 120 s quarantine, with little to do; the
        // soak runs for two minutes. They build testbeds under names of their
        // own and start first in the shared pool (LongFirstSequencer), so
        // their minutes pass while the unit files run.
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
