/**
 * Commands and background processes inside network namespaces, for the
 * namespace tests. Everything started here is registered for a last-resort
 * synchronous cleanup when the test process exits or is signalled, so a
 * failing or interrupted test does not leave processes behind.
 */
import { spawn } from 'node:child_process';

export interface ExecOptions {
  /** Kill the command (its whole process group) after this long; default 10 s. */
  timeoutMs?: number;
  /** Written to the command's standard input, which is then closed. */
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit code, or null if a signal ended the command. */
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface Background {
  readonly pid: number;
  readonly argv: readonly string[];
  /** What the process wrote so far. */
  stdout(): string;
  stderr(): string;
  running(): boolean;
  readonly exited: Promise<ExitStatus>;
  /**
   * Resolves with the first match of `pattern` in the output (stdout and
   * stderr by default); rejects when the process exits first or on timeout,
   * with its output in the message.
   */
  waitForOutput(
    pattern: RegExp,
    options?: { timeoutMs?: number; stream?: 'stdout' | 'stderr' | 'both' },
  ): Promise<RegExpMatchArray>;
  /** `signal` (SIGTERM) to the process group, SIGKILL after `timeoutMs` (3 s). */
  stop(options?: { signal?: NodeJS.Signals; timeoutMs?: number }): Promise<ExitStatus>;
}

const DEFAULT_TIMEOUT_MS = 10_000;

// --- last-resort cleanup -----------------------------------------------------

const exitCleanups = new Set<() => void>();
let hooksInstalled = false;

function runExitCleanups(): void {
  for (const cleanup of [...exitCleanups].reverse()) {
    exitCleanups.delete(cleanup);
    try {
      cleanup();
    } catch {
      // keep going: the next cleanup may still succeed
    }
  }
}

function onSignal(signal: NodeJS.Signals): void {
  runExitCleanups();
  process.removeListener(signal, onSignal);
  // Terminate the way the signal would have, unless someone else handles it.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

/**
 * Registers a synchronous cleanup for the process's 'exit' and for SIGINT,
 * SIGTERM and SIGHUP; returns the function that unregisters it (call it once
 * the orderly teardown has run).
 */
export function onExitCleanup(cleanup: () => void): () => void {
  if (!hooksInstalled) {
    hooksInstalled = true;
    process.on('exit', runExitCleanups);
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
  }
  exitCleanups.add(cleanup);
  return () => exitCleanups.delete(cleanup);
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

// --- commands ------------------------------------------------------------------

/** Runs a command (in the current namespace) to completion. Never throws for a failing command. */
export function run(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error('run: empty command');
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      // Its own process group, so a timeout ends everything it started.
      detached: true,
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const pid = child.pid;
    const unregister = pid === undefined ? () => false : onExitCleanup(() => killGroup(pid, 'SIGKILL'));
    const timer = setTimeout(() => {
      timedOut = true;
      if (pid !== undefined) killGroup(pid, 'SIGKILL');
    }, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    child.stdout?.on('data', (d: Buffer) => out.push(d));
    child.stderr?.on('data', (d: Buffer) => err.push(d));
    if (options.input !== undefined) child.stdin?.end(options.input);
    child.on('error', (e) => {
      clearTimeout(timer);
      unregister();
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      unregister();
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        code,
        signal,
        timedOut,
      });
    });
  });
}

/** Runs `argv` inside network namespace `ns` to completion. */
export function execIn(ns: string, argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  return run(['ip', 'netns', 'exec', ns, ...argv], options);
}

/** Like execIn, but throws (with the output) unless the command exits 0. */
export async function execInOk(
  ns: string,
  argv: readonly string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  const result = await execIn(ns, argv, options);
  if (result.code !== 0) throw new Error(`${ns}: ${argv.join(' ')} failed: ${describe(result)}`);
  return result;
}

/** One line for error messages: how a command ended and what it said. */
export function describe(result: ExecResult): string {
  const how = result.timedOut
    ? 'timed out'
    : result.code !== null
      ? `exit ${result.code}`
      : `signal ${result.signal ?? '?'}`;
  return `${how}\nstdout: ${result.stdout.trim()}\nstderr: ${result.stderr.trim()}`;
}

// --- background processes --------------------------------------------------------

/** Starts `argv` in the background (in `ns` when given), in a process group of its own. */
export function spawnBackground(
  ns: string | undefined,
  argv: readonly string[],
  options: SpawnOptions = {},
): Background {
  const full = ns === undefined ? [...argv] : ['ip', 'netns', 'exec', ns, ...argv];
  const [cmd, ...args] = full;
  if (cmd === undefined) throw new Error('spawnBackground: empty command');
  const child = spawn(cmd, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${full.join(' ')}`);
  let out = '';
  let err = '';
  let status: ExitStatus | undefined;
  const waiters = new Set<() => void>();
  const notify = (): void => {
    for (const w of [...waiters]) w();
  };
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString('utf8');
    notify();
  });
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString('utf8');
    notify();
  });
  const unregister = onExitCleanup(() => killGroup(pid, 'SIGKILL'));
  const exited = new Promise<ExitStatus>((resolve) => {
    child.on('close', (code, signal) => {
      status = { code, signal };
      unregister();
      resolve(status);
      notify();
    });
  });

  const bg: Background = {
    pid,
    argv: full,
    stdout: () => out,
    stderr: () => err,
    running: () => status === undefined,
    exited,
    waitForOutput(pattern, { timeoutMs = DEFAULT_TIMEOUT_MS, stream = 'both' } = {}) {
      const text = (): string => (stream === 'stdout' ? out : stream === 'stderr' ? err : `${out}\n${err}`);
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const m = text().match(pattern);
          if (m) return finish(() => resolve(m));
          if (status !== undefined) {
            finish(() =>
              reject(
                new Error(
                  `${full.join(' ')} exited (${status?.code ?? status?.signal}) before printing ${pattern}\nstdout: ${out}\nstderr: ${err}`,
                ),
              ),
            );
          }
        };
        const timer = setTimeout(
          () =>
            finish(() =>
              reject(
                new Error(
                  `no ${pattern} from ${full.join(' ')} in ${timeoutMs} ms\nstdout: ${out}\nstderr: ${err}`,
                ),
              ),
            ),
          timeoutMs,
        );
        const finish = (settle: () => void): void => {
          clearTimeout(timer);
          waiters.delete(check);
          settle();
        };
        waiters.add(check);
        check();
      });
    },
    async stop({ signal = 'SIGTERM', timeoutMs = 3000 } = {}) {
      if (status !== undefined) return status;
      killGroup(pid, signal);
      const timer = setTimeout(() => killGroup(pid, 'SIGKILL'), timeoutMs);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
  return bg;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` every `intervalMs` until it returns true; throws `what` on timeout. */
export async function waitUntil(
  what: string,
  probe: () => Promise<boolean> | boolean,
  { timeoutMs = DEFAULT_TIMEOUT_MS, intervalMs = 25 } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}
