/**
 * test/unit/ike/ns-agent.ts as a child process in a network namespace:
 * commands go in as JSON lines, answers and events come out as JSON lines.
 *
 *   const a = new Agent('dxk-ours', '/tmp/ours.json');
 *   await a.wait('ready');
 *   const r = await a.call({ op: 'initiate', remote: { address: '203.0.113.3', port: 500 } });
 *   await a.stop();
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { ROOT } from './testbed.ts';

export class Agent {
  readonly events: Record<string, unknown>[] = [];
  readonly #child: ChildProcess;
  readonly #waiters: { op: string; resolve: (v: Record<string, unknown>) => void }[] = [];
  readonly #exited: Promise<void>;
  #stderr = '';

  constructor(ns: string, configPath: string) {
    this.#child = spawn(
      'ip',
      ['netns', 'exec', ns, process.execPath, '--import', 'tsx', 'test/unit/ike/ns-agent.ts', configPath],
      {
        cwd: ROOT,
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    this.#child.stderr!.on('data', (d: Buffer) => (this.#stderr += d.toString()));
    this.#child.stdin!.on('error', () => undefined);
    this.#exited = new Promise((resolve) => this.#child.on('exit', () => resolve()));
    createInterface({ input: this.#child.stdout! }).on('line', (line) => {
      let o: Record<string, unknown>;
      try {
        o = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      const i = this.#waiters.findIndex((w) => w.op === o.op || (o.event === 'ready' && w.op === 'ready'));
      if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(o);
      else this.events.push(o);
    });
  }

  wait(op: string, ms = 20_000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`agent: no "${op}" in ${ms} ms; stderr: ${this.#stderr}`)),
        ms,
      );
      this.#waiters.push({
        op,
        resolve: (v) => {
          clearTimeout(t);
          resolve(v);
        },
      });
    });
  }

  async call(cmd: Record<string, unknown>, ms?: number): Promise<Record<string, unknown>> {
    const p = this.wait(cmd.op as string, ms);
    this.#child.stdin!.write(JSON.stringify(cmd) + '\n');
    return p;
  }

  has(event: string): boolean {
    return this.events.some((e) => e.event === event);
  }

  /** Asks the agent to delete its SAs and exit; kills it (by its pid) if it takes longer than 10 s. */
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#child.stdin!.write(JSON.stringify({ op: 'close' }) + '\n');
    const timer = new Promise<'late'>((r) => setTimeout(() => r('late'), 10_000));
    if ((await Promise.race([this.#exited, timer])) === 'late' && this.#child.pid !== undefined) {
      process.kill(this.#child.pid, 'SIGKILL');
      await this.#exited;
    }
  }
}
