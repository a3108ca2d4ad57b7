/**
 * Namespace plumbing for the I/O namespace tests: each test file makes its
 * own namespaces under a prefix of its own (never the testbed's dn-), runs
 * small programs inside them, and removes everything in afterAll.
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export function sh(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function shQuiet(cmd: string, ...args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
  } catch {
    // cleanup of something that may not exist
  }
}

export function inNs(ns: string, cmd: string, ...args: string[]): string {
  return sh('ip', 'netns', 'exec', ns, cmd, ...args);
}

/** Creates namespaces (with lo up) and removes them again, leftovers of a crashed run included. */
export class NamespaceSet {
  private readonly names: string[] = [];

  add(name: string): string {
    shQuiet('ip', 'netns', 'del', name);
    sh('ip', 'netns', 'add', name);
    sh('ip', '-n', name, 'link', 'set', 'lo', 'up');
    this.names.push(name);
    return name;
  }

  /** A veth pair between two namespaces, addressed and up. */
  link(nsA: string, ifA: string, addrA: string, nsB: string, ifB: string, addrB: string): void {
    sh('ip', 'link', 'add', ifA, 'netns', nsA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB);
    sh('ip', '-n', nsA, 'addr', 'add', addrA, 'dev', ifA);
    sh('ip', '-n', nsB, 'addr', 'add', addrB, 'dev', ifB);
    sh('ip', '-n', nsA, 'link', 'set', ifA, 'up');
    sh('ip', '-n', nsB, 'link', 'set', ifB, 'up');
  }

  cleanup(): void {
    for (const n of this.names.splice(0)) shQuiet('ip', 'netns', 'del', n);
  }
}

/** A long-running program in a namespace that prints `ready` and a final JSON line. */
export class NsProgram {
  readonly child: ChildProcess;
  private out = '';
  private err = '';
  private readonly exited: Promise<number | null>;

  constructor(ns: string, script: string, args: string[]) {
    this.child = spawn(
      'ip',
      ['netns', 'exec', ns, process.execPath, '--import', 'tsx', resolve(ROOT, script), ...args],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    this.child.stdout!.on('data', (d: Buffer) => (this.out += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.err += d.toString()));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  /** Resolves when the program printed `ready`; rejects if it exits first or takes too long. */
  async ready(timeoutMs = 20_000): Promise<void> {
    const t0 = Date.now();
    while (!/^ready$/m.test(this.out)) {
      if (this.child.exitCode !== null)
        throw new Error(`program exited (${this.child.exitCode}): ${this.err}`);
      if (Date.now() - t0 > timeoutMs)
        throw new Error(`program not ready after ${timeoutMs} ms: ${this.err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Waits for exit (sending SIGTERM first when `stop`) and returns the last JSON line. */
  async result<T = Record<string, unknown>>(stop = false, timeoutMs = 60_000): Promise<T> {
    if (stop && this.child.exitCode === null) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    const line = this.out
      .trim()
      .split('\n')
      .reverse()
      .find((l) => l.startsWith('{'));
    if (code !== 0 || !line) throw new Error(`program failed (${code}): ${this.err}\n${this.out}`);
    return JSON.parse(line) as T;
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

const snippetDir = mkdtempSync(join(tmpdir(), 'distnat-io-snippet-'));
process.on('exit', () => rmSync(snippetDir, { recursive: true, force: true }));
let snippets = 0;

/**
 * Runs a TypeScript snippet in a namespace and returns what it printed as its
 * last JSON line. `$io` in the snippet stands for the absolute src/io path.
 */
export async function runTs<T = Record<string, unknown>>(ns: string, code: string): Promise<T> {
  return startTs(ns, code).result<T>();
}

/** Starts a snippet in a namespace without waiting for it (see runTs). */
export function startTs(ns: string, code: string): NsProgram {
  const file = join(snippetDir, `s${snippets++}.mts`); // .mts: ESM (top-level await) outside the package
  writeFileSync(file, code.replaceAll('$io', join(ROOT, 'src/io')));
  return new NsProgram(ns, file, []);
}
