/**
 * The testbed's supervisor: starts the processes of the process table in
 * their namespaces, each in a session of its own, with a pid file and a log;
 * tells whether one still runs; stops them, and whatever else is left in the
 * testbed's namespaces.
 *
 * A pid file holds "PID START-TIME" (the process's start time in clock ticks
 * since boot, field 22 of /proc/PID/stat), so that a recycled pid never
 * passes for the process that died. A zombie counts as gone: it has
 * finished, only its parent's wait is missing.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { run, sleep } from '../../../test/helpers/process.ts';
import { ROOT, type TestbedLayout } from './layout.ts';
import type { ProcessSpec } from './process-table.ts';

/** Where the supervisor says what it did; the command line prints it unless --quiet. */
export type Note = (line: string) => void;

/** The fields of /proc/PID/stat after "(comm)", which may itself hold spaces and parentheses. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** The start time of a process (clock ticks after boot), or undefined if there is none. */
export function startTime(pid: number): string | undefined {
  return statFields(pid)?.[19];
}

/** Whether a process exists and has not finished (a zombie has). */
export function isRunning(pid: number): boolean {
  const state = statFields(pid)?.[0];
  return state !== undefined && state !== 'Z';
}

/** What a pid file says, whether or not that process still runs. */
export function readPidFile(file: string): { pid: number; start: string } | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const [pid, start] = text.trim().split(/\s+/);
  if (pid === undefined || !/^\d+$/.test(pid) || start === undefined) return undefined;
  return { pid: Number(pid), start };
}

/** The pid of a process of the table if it runs: its pid file names it and the start time matches. */
export function runningPid(layout: TestbedLayout, name: string): number | undefined {
  const recorded = readPidFile(layout.pidFile(name));
  if (recorded === undefined) return undefined;
  if (startTime(recorded.pid) !== recorded.start || !isRunning(recorded.pid)) return undefined;
  return recorded.pid;
}

/** A process's log so far ('' if none). */
export function readLog(layout: TestbedLayout, name: string): string {
  try {
    return readFileSync(layout.logFile(name), 'utf8');
  } catch {
    return '';
  }
}

function pidFileNames(layout: TestbedLayout): string[] {
  try {
    return readdirSync(layout.runDir)
      .filter((f) => f.endsWith('.pid'))
      .map((f) => f.slice(0, -'.pid'.length));
  } catch {
    return [];
  }
}

/** Pid files whose process is gone (a crash, a reboot) only mislead. */
export function removeStalePidFiles(layout: TestbedLayout, note: Note): void {
  for (const name of pidFileNames(layout)) {
    if (runningPid(layout, name) !== undefined) continue;
    rmSync(layout.pidFile(name), { force: true });
    note(`removed stale pid file ${layout.pidFile(name)}`);
  }
}

/**
 * Starts one process unless it runs: `sh -c "exec <command>"` in the node's
 * namespace, from the checkout's root, in a session of its own (so that
 * stopping its process group stops its children too). Throws, with the end
 * of its log, if it exits at once.
 */
export async function startProcess(layout: TestbedLayout, spec: ProcessSpec, note: Note): Promise<void> {
  const ns = layout.ns(spec.node);
  const running = runningPid(layout, spec.name);
  if (running !== undefined) {
    note(`${spec.name} already running (pid ${running})`);
    return;
  }
  rmSync(layout.pidFile(spec.name), { force: true });
  const logFile = layout.logFile(spec.name);
  const log = openSync(logFile, 'a');
  let pid: number | undefined;
  try {
    writeSync(log, `--- ${new Date().toISOString()} starting in ${ns}: ${spec.command}\n`);
    const child = spawn('ip', ['netns', 'exec', ns, 'sh', '-c', `exec ${spec.command}`], {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', log, log],
    });
    child.on('error', () => undefined);
    child.unref();
    pid = child.pid;
  } finally {
    closeSync(log);
  }
  if (pid === undefined) throw new Error(`could not start ${spec.name}: ip netns exec ${ns} ...`);
  const start = startTime(pid);
  if (start !== undefined) {
    const file = openSync(layout.pidFile(spec.name), 'w');
    writeSync(file, `${pid} ${start}\n`);
    closeSync(file);
  }
  await sleep(200);
  if (runningPid(layout, spec.name) === undefined) {
    process.stderr.write(`${readLog(layout, spec.name).trimEnd().split('\n').slice(-20).join('\n')}\n`);
    throw new Error(`${spec.name} exited at once; its log is ${logFile}`);
  }
  note(`started ${spec.name} in ${ns} (pid ${pid}, log ${logFile})`);
}

/** Starts the table's processes in order (the router before the hosts that lease from it). */
export async function startProcesses(
  layout: TestbedLayout,
  table: readonly ProcessSpec[],
  note: Note,
): Promise<void> {
  for (const spec of table) await startProcess(layout, spec, note);
}

/**
 * TERM to each one's process group (or to it alone if it leads none), up to
 * 5 s grace, then KILL.
 */
export async function killAndWait(pids: readonly number[]): Promise<void> {
  const signal = (pid: number, sig: NodeJS.Signals): void => {
    try {
      process.kill(-pid, sig);
    } catch {
      try {
        process.kill(pid, sig);
      } catch {
        // gone already
      }
    }
  };
  for (const pid of pids) signal(pid, 'SIGTERM');
  for (let i = 0; i < 50; i++) {
    if (!pids.some(isRunning)) return;
    await sleep(100);
  }
  for (const pid of pids) signal(pid, 'SIGKILL');
}

/** Stops every process that has a pid file, and removes the pid files. */
export async function stopProcesses(layout: TestbedLayout, note: Note): Promise<void> {
  for (const name of pidFileNames(layout)) {
    const pid = runningPid(layout, name);
    if (pid !== undefined) {
      await killAndWait([pid]);
      note(`stopped ${name} (pid ${pid})`);
    }
    rmSync(layout.pidFile(name), { force: true });
  }
}

/**
 * Whatever else still runs inside the testbed's namespaces (shells, captures
 * a test forgot) belongs to the testbed too: deleting a namespace does not
 * end its processes, it only hides them.
 */
export async function stopLeftovers(
  layout: TestbedLayout,
  nodes: readonly string[],
  note: Note,
): Promise<void> {
  // The command that runs this (scripts/testbed) may itself run in a namespace of the testbed.
  const spare = new Set([process.pid, process.ppid]);
  for (const node of nodes) {
    const ns = layout.ns(node);
    if (!existsSync(`/run/netns/${ns}`)) continue;
    const r = await run(['ip', 'netns', 'pids', ns]);
    const pids = r.stdout
      .split('\n')
      .filter((l) => /^\d+$/.test(l))
      .map(Number)
      .filter((p) => !spare.has(p));
    if (pids.length === 0) continue;
    await killAndWait(pids);
    note(`stopped processes left in ${ns}: ${pids.join(' ')}`);
  }
}

/** One line per process of the table that does not run. */
export function processProblems(layout: TestbedLayout, table: readonly ProcessSpec[]): string[] {
  return table
    .filter((spec) => runningPid(layout, spec.name) === undefined)
    .map((spec) => `process ${spec.name} (${spec.command}) is not running`);
}

/** The "processes:" section of `scripts/testbed status`. */
export function describeProcesses(layout: TestbedLayout, table: readonly ProcessSpec[]): string[] {
  if (table.length === 0)
    return ['processes:', '  none: no distnat process is part of the testbed (the process table is empty)'];
  const width = Math.max(8, ...table.map((spec) => spec.name.length));
  return [
    'processes:',
    ...table.map((spec) => {
      const pid = runningPid(layout, spec.name);
      const where = `in ${layout.ns(spec.node)}: ${spec.command}`;
      return pid === undefined
        ? `  ${spec.name.padEnd(width)} stopped  ${where}`
        : `  ${spec.name.padEnd(width)} running  pid ${String(pid).padEnd(7)} ${where}`;
    }),
  ];
}
