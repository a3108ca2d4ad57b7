/**
 * Start-up time of the `distnat` command line: `npm run bench:cli`.
 *
 * Runs each command N times, interleaved (one of each, then again), so that
 * a change in the machine's load touches every command alike, and prints
 * each one's median wall time beside `node -e ''` measured in the same run:
 * the ratio says how much distnat adds to starting Node at all, which stays
 * meaningful on a loaded machine where the absolute times do not. The load
 * average is printed with the figures for the same reason.
 *
 *   distnat --help                   yargs, the command table, no command module
 *   distnat status                   against a running router (below)
 *   distnat check --router FILE      when the command exists
 *   node -e ''                       the floor
 *
 * `distnat status` asks a real router daemon started for the run
 * (scripts/bench/lib/idle-router.ts): the router's own start-up and control
 * socket in a temporary run directory, with PAP on loopback and in-memory
 * devices in place of the TUN and raw sockets, so no root is needed.
 *
 * bin/distnat runs dist/, so the benchmark builds first (--no-build skips
 * it). Options: --runs N (default 20), --json, --profile DIR (also write a
 * CPU profile of one run of each distnat command, `node --cpu-prof`, into
 * DIR; open it in Chrome's DevTools or speedscope).
 *
 * Goal (docs/benchmarks.md): every distnat command under 0.3 s on the
 * project's 2-core machine. Not a test: it prints figures, nothing fails.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fmt, table } from './lib/report.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const DISTNAT = join(ROOT, 'bin/distnat');
const GOAL_SECONDS = 0.3;

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '20' },
    build: { type: 'boolean', default: true },
    json: { type: 'boolean', default: false },
    profile: { type: 'string' },
  },
  allowNegative: true,
});
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) {
  process.stderr.write(`bench:cli: --runs ${values.runs} is not a positive integer\n`);
  process.exit(64);
}

interface Case {
  readonly name: string;
  /** argv after `node` */
  readonly argv: readonly string[];
  /** The exit code a correct run ends with. */
  readonly exit: number;
  readonly distnat: boolean;
}

/** One run's wall time in seconds, from spawn to exit, checking the exit code. */
function timeOnce(c: Case, extraNodeArgs: readonly string[] = []): Promise<number> {
  return new Promise((done, fail) => {
    const start = process.hrtime.bigint();
    const child = spawn(process.execPath, [...extraNodeArgs, ...c.argv], {
      stdio: ['ignore', 'ignore', 'pipe'],
      cwd: ROOT,
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      if (code !== c.exit) fail(new Error(`${c.name} exited ${code}, expected ${c.exit}:\n${stderr}`));
      else done(seconds);
    });
  });
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** Starts the idle router; resolves once its control socket answers. */
function startRouter(runDir: string, stateDir: string): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [...process.execArgv, join(ROOT, 'scripts/bench/lib/idle-router.ts'), runDir, stateDir],
    { stdio: ['ignore', 'pipe', 'inherit'], cwd: ROOT },
  );
  return new Promise((done, fail) => {
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) done(child);
    });
    child.on('error', fail);
    child.on('exit', (code) => fail(new Error(`the idle router exited ${code} before it was ready`)));
  });
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((done) => {
    if (child.exitCode !== null) return done();
    child.once('exit', () => done());
    child.kill('SIGTERM');
  });
}

if (values.build) {
  const b = spawnSync(process.execPath, [join(ROOT, 'scripts/build.mjs')], { cwd: ROOT, stdio: 'inherit' });
  if (b.status !== 0) process.exit(b.status ?? 1);
}

const work = mkdtempSync(join(tmpdir(), 'dn-bench-cli-'));
const runDir = join(work, 'run');
const stateDir = join(work, 'state');
mkdirSync(runDir);
mkdirSync(stateDir);
let router: ChildProcess | undefined;
const cleanup = async () => {
  if (router !== undefined) await stop(router);
  rmSync(work, { recursive: true, force: true });
};
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
  process.once(signal, () => void cleanup().then(() => process.exit(130)));

try {
  router = await startRouter(runDir, stateDir);
  const hasCheck = existsSync(join(ROOT, 'src/cli/commands/check.ts'));
  const cases: Case[] = [
    { name: 'distnat --help', argv: [DISTNAT, '--help'], exit: 0, distnat: true },
    {
      name: 'distnat status',
      argv: [DISTNAT, 'status', 'router', '--run-dir', runDir],
      exit: 0,
      distnat: true,
    },
    ...(hasCheck
      ? [
          {
            name: 'distnat check --router',
            argv: [DISTNAT, 'check', '--router', join(ROOT, 'native-setup/config/router.yaml')],
            exit: 0,
            distnat: true,
          },
        ]
      : []),
    { name: "node -e ''", argv: ['-e', ''], exit: 0, distnat: false },
  ];
  const loadBefore = loadavg();
  // One warm-up round: the first run of each reads its files from disk.
  for (const c of cases) await timeOnce(c);
  const times = new Map(cases.map((c) => [c.name, [] as number[]]));
  for (let i = 0; i < runs; i++) for (const c of cases) times.get(c.name)!.push(await timeOnce(c));
  const loadAfter = loadavg();

  if (values.profile !== undefined) {
    mkdirSync(values.profile, { recursive: true });
    for (const c of cases.filter((x) => x.distnat)) {
      const name = c.name.replace(/[^a-z]+/g, '-').replace(/-$/, '');
      await timeOnce(c, [
        '--cpu-prof',
        '--cpu-prof-dir',
        values.profile,
        '--cpu-prof-name',
        `${name}.cpuprofile`,
      ]);
    }
  }

  const floor = median(times.get("node -e ''")!);
  const rows = cases.map((c) => {
    const t = times.get(c.name)!;
    const m = median(t);
    return {
      command: c.name,
      medianSeconds: m,
      minSeconds: Math.min(...t),
      maxSeconds: Math.max(...t),
      ratioToNode: m / floor,
      goalMet: c.distnat ? m < GOAL_SECONDS : undefined,
    };
  });
  if (values.json) {
    process.stdout.write(
      JSON.stringify({ runs, loadBefore, loadAfter, checkCommand: hasCheck, rows }, null, 2) + '\n',
    );
  } else {
    process.stdout.write(
      table(
        ['command', 'median s', 'min s', 'max s', "x node -e ''", `< ${GOAL_SECONDS} s`],
        rows.map((r) => [
          r.command,
          fmt(r.medianSeconds, 3),
          fmt(r.minSeconds, 3),
          fmt(r.maxSeconds, 3),
          fmt(r.ratioToNode, 2),
          r.goalMet === undefined ? '' : r.goalMet ? 'yes' : 'no',
        ]),
      ) + '\n',
    );
    const la = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
    process.stdout.write(
      `\n${runs} runs each, interleaved; load average ${la(loadBefore)} before, ${la(loadAfter)} after ` +
        `(${availableParallelism()} CPUs)\n` +
        `distnat status: against a router daemon on loopback (in-memory devices, temporary run dir)\n` +
        (hasCheck ? '' : 'distnat check: not measured, the command does not exist in this tree\n'),
    );
    if (values.profile !== undefined) process.stdout.write(`CPU profiles in ${values.profile}\n`);
  }
} finally {
  await cleanup();
}
