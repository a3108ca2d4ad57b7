/**
 * The Vagrant topology as four machines booted by systemd in systemd-nspawn
 * containers (scripts/nspawn/machines), for the tests that need a real
 * service manager: commands in a machine as root with a login's environment,
 * and the Vagrantfile's own provisioning steps, read from the Vagrantfile.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Background, ExecOptions, ExecResult } from './process.ts';
import { describe as describeResult, run, spawnBackground, waitUntil } from './process.ts';

export const CHECKOUT = resolve(import.meta.dirname, '../..');
export const IMAGE = process.env.DISTNAT_NSPAWN_IMAGE ?? '/var/cache/distnat/nspawn-image';
export const MACHINE_NAMES = ['router', 'h1', 'h2', 'server'] as const;
export type MachineName = (typeof MACHINE_NAMES)[number];

/** Why the machines cannot run here, or undefined when they can. */
export function machinesUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  if (spawnSync('systemd-nspawn', ['--version'], { stdio: 'ignore' }).status !== 0)
    return 'systemd-nspawn is not installed (scripts/setup installs systemd-container)';
  if (!existsSync(join(IMAGE, 'usr/bin/node')))
    return `no machine image at ${IMAGE}: scripts/setup builds it (scripts/nspawn/build-image)`;
  return undefined;
}

/** One step of the Vagrantfile's `vm.provision "NAME", type: "shell", inline: ..., args: [...]`. */
export interface Provisioner {
  readonly inline: string;
  readonly args: readonly string[];
}

/** The Vagrantfile's shell provisioners per machine, by name, as Vagrant would run them with DISTNAT_START=1. */
export function vagrantProvisioners(): Record<string, Record<string, Provisioner>> {
  const r = spawnSync(
    'ruby',
    [join(CHECKOUT, 'test/unit/ops/vagrantfile-calls.rb'), join(CHECKOUT, 'Vagrantfile')],
    { encoding: 'utf8', env: { ...process.env, DISTNAT_START: '1' } },
  );
  if (r.status !== 0) throw new Error(`reading the Vagrantfile: ${r.stderr || r.error?.message}`);
  const calls = JSON.parse(r.stdout) as { path: string[]; args: unknown[]; kw: Record<string, unknown> }[];
  const out: Record<string, Record<string, Provisioner>> = {};
  for (const c of calls) {
    if (c.path.at(-1) !== 'provision' || c.kw.type !== 'shell') continue;
    const machine = c.path[2]!;
    (out[machine] ??= {})[String(c.args[0])] = {
      inline: String(c.kw.inline),
      args: ((c.kw.args as unknown[] | undefined) ?? []).map(String),
    };
  }
  return out;
}

export class Machines {
  private constructor(
    private readonly supervisor: Background,
    private readonly runDir: string,
    private readonly leaders: Record<MachineName, number>,
  ) {}

  /** Boots the four machines with `source` at /vagrant; resolves once each has reached multi-user.target. */
  static async boot(source: string = CHECKOUT): Promise<Machines> {
    const runDir = mkdtempSync(join(tmpdir(), 'distnat-machines-'));
    const supervisor = spawnBackground(undefined, [
      'setpriv',
      '--pdeathsig',
      'TERM',
      join(CHECKOUT, 'scripts/nspawn/machines'),
      runDir,
      source,
    ]);
    const envFile = join(runDir, 'machines.env');
    try {
      await waitUntil(
        'the machines to boot',
        () => {
          if (!supervisor.running())
            throw new Error(`scripts/nspawn/machines exited: ${supervisor.stderr()}`);
          return existsSync(envFile);
        },
        { timeoutMs: 180_000, intervalMs: 200 },
      );
    } catch (e) {
      await supervisor.stop({ timeoutMs: 60_000 });
      rmSync(runDir, { recursive: true, force: true });
      throw e;
    }
    const leaders = Object.fromEntries(
      readFileSync(envFile, 'utf8')
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), Number(l.slice(l.indexOf('=') + 1))]),
    ) as Record<MachineName, number>;
    return new Machines(supervisor, runDir, leaders);
  }

  /** What the machines reported at boot ("router=running" ...). */
  bootStates(): Record<string, string> {
    return Object.fromEntries(
      readFileSync(join(this.runDir, 'booted'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split('=') as [string, string]),
    );
  }

  /** `argv` in the machine as root, with the environment of a login shell (no variable of the test's). */
  exec(machine: MachineName, argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    return run(
      [
        'nsenter',
        '-t',
        String(this.leaders[machine]),
        '-a',
        '-r',
        '-w',
        '/usr/bin/env',
        '-i',
        'HOME=/root',
        'USER=root',
        'LOGNAME=root',
        'SHELL=/bin/bash',
        'TERM=dumb',
        'LANG=C.UTF-8',
        'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        ...argv,
      ],
      { timeoutMs: 30_000, ...options },
    );
  }

  /** A bash script in the machine; throws with its output unless it exits 0. */
  async sh(machine: MachineName, script: string, options: ExecOptions = {}): Promise<string> {
    const r = await this.exec(machine, ['bash', '-c', script], options);
    if (r.code !== 0) throw new Error(`${machine}: ${script}\n${describeResult(r)}`);
    return r.stdout;
  }

  /** A Vagrant shell provisioner, run as Vagrant runs it: the inline script with its arguments, as root. */
  provision(machine: MachineName, p: Provisioner, options: ExecOptions = {}): Promise<ExecResult> {
    return this.exec(machine, ['bash', '-c', p.inline, 'provision', ...p.args], options);
  }

  /** Halts the machines (poweroff inside) and removes what the supervisor made. */
  async halt(): Promise<void> {
    await this.supervisor.stop({ timeoutMs: 90_000 });
    rmSync(this.runDir, { recursive: true, force: true });
  }
}
