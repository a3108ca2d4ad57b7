/**
 * The TypeScript half of scripts/testbed without namespaces: the process
 * table (its file format, the built-in table from the topology, shell
 * quoting of odd run directories) and the supervisor's judgement of pid
 * files (a recycled pid or a zombie never passes for the process that was
 * started). test/netns/testbed.test.ts runs all of it for real.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { TestbedLayout } from '../../../scripts/lib/testbed/layout.ts';
import {
  defaultProcessTable,
  hostArgs,
  parseProcessTable,
  routerArgs,
} from '../../../scripts/lib/testbed/process-table.ts';
import {
  describeProcesses,
  isRunning,
  killAndWait,
  processProblems,
  readPidFile,
  runningPid,
  startTime,
} from '../../../scripts/lib/testbed/supervisor.ts';
import { IPSEC_LEASES, ipsecKeying } from '../../../scripts/lib/testbed/provision.ts';
import { TOPOLOGY } from '../../../scripts/lib/topology.ts';
import { parseManualKeying } from '../../../src/ipsec/manual-config.ts';

const dir = mkdtempSync(join(tmpdir(), 'distnat supervisor '));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the process table', () => {
  it('reads "<name> <node> <command...>" lines, skipping comments and blank lines', () => {
    const table = parseProcessTable(
      "# name node command\n\n  sleeper router sleep 300\nagent\th1   sh -c 'echo in; exec sleep 300'  \n",
    );
    expect(table).toEqual([
      { name: 'sleeper', node: 'router', command: 'sleep 300' },
      { name: 'agent', node: 'h1', command: "sh -c 'echo in; exec sleep 300'" },
    ]);
    expect(() => parseProcessTable('a router run\nlonely h1\n', 'f')).toThrow(/^f:2: not "<name> <node>/);
  });

  it('runs the router with its local CA and each host of the topology, the peer only with IKE', () => {
    const layout = new TestbedLayout('dq-', '/srv/run');
    const plain = defaultProcessTable(layout);
    expect(plain.map((p) => [p.name, p.node])).toEqual([
      ['router', 'router'],
      ...TOPOLOGY.hosts.map((h) => [h, h]),
    ]);
    expect(plain[0]!.command).toBe(
      `bin/distnat ${routerArgs(layout, ['--ca-dir', layout.routerCa, '--crl-address', TOPOLOGY.router.wan]).join(' ')}`,
    );
    expect(plain[1]!.command).toBe(`bin/distnat ${hostArgs(layout, 'h1').join(' ')}`);
    expect(plain[1]!.command).toContain(
      `--router ${TOPOLOGY.router.lan} --lan-address ${TOPOLOGY.h1.lan} --shared-address ${TOPOLOGY.shared}`,
    );
    expect(plain[1]!.command).toContain('--state-dir /srv/run/dq-/h1/state --run-dir /srv/run/dq-/h1');

    const ike = defaultProcessTable(layout, { ike: true });
    expect(ike.map((p) => p.name)).toEqual(['router', ...TOPOLOGY.hosts, 'peer']);
    expect(ike[1]!.command).toMatch(/ --ike \/srv\/run\/dq-\/h1\/ike\.yaml$/);
    expect(ike.at(-1)).toMatchObject({ node: 'server' });
    expect(ike.at(-1)!.command).toContain(`--remote ${TOPOLOGY.shared} --via ${TOPOLOGY.router.wan}`);

    // Manual keying: each host its own file, the peer mirroring all of them.
    const ipsec = defaultProcessTable(layout, { ipsec: true });
    expect(ipsec.map((p) => p.name)).toEqual(['router', ...TOPOLOGY.hosts, 'peer']);
    expect(ipsec[1]!.command).toMatch(/ --ipsec \/srv\/run\/dq-\/h1\/ipsec\.yaml$/);
    expect(ipsec.at(-1)!.command).toContain(
      TOPOLOGY.hosts.map((h) => `--mirror /srv/run/dq-/${h}/ipsec.yaml`).join(' '),
    );
  });

  it('writes manual keying files the host agent accepts, with inbound SPIs in the block a fresh router leases', () => {
    const seen = new Set<number>();
    for (const host of TOPOLOGY.hosts) {
      const config = parseManualKeying(parseYaml(ipsecKeying(host)), `${host}.yaml`);
      const lease = IPSEC_LEASES[host]!;
      expect(config.policies.map((p) => [p.name, p.localPort, p.protect])).toEqual([
        ['ah', lease.ports, ['ah']],
        ['server', lease.ports, ['esp']],
      ]);
      for (const sa of config.sas) {
        expect(seen.has(sa.spi), `SPI ${sa.spi} used twice`).toBe(false);
        seen.add(sa.spi);
        if (sa.direction === 'inbound') expect(sa.spi - lease.inbound).toBeLessThan(64);
      }
    }
    // Random keys: two files for one host differ.
    expect(ipsecKeying('h1')).not.toBe(ipsecKeying('h1'));
  });

  it('quotes a run directory with spaces and quotes so that sh passes it as one word', () => {
    const layout = new TestbedLayout('dq-', join(dir, "it's here"));
    const command = defaultProcessTable(layout)[1]!.command;
    // What sh -c "exec <command>" would hand to distnat, one argument per line.
    const r = spawnSync('sh', ['-c', `printf '%s\\n' ${command.replace(/^bin\/distnat /, '')}`], {
      encoding: 'utf8',
    });
    expect(r.stdout.split('\n')).toContain(join(dir, "it's here", 'dq-', 'h1', 'state'));
    expect(r.stdout.split('\n')).toEqual([...hostArgs(layout, 'h1'), '']);
  });
});

describe('pid files', () => {
  const layout = new TestbedLayout('dq-', dir);
  const table = parseProcessTable('me router sleep 1\n');

  it('name a running process only with its start time: a recycled pid never passes', () => {
    rmSync(layout.runDir, { recursive: true, force: true });
    expect(runningPid(layout, 'me')).toBeUndefined();
    mkdirSync(layout.runDir, { recursive: true });

    writeFileSync(layout.pidFile('me'), `${process.pid} ${startTime(process.pid)}\n`);
    expect(readPidFile(layout.pidFile('me'))).toEqual({ pid: process.pid, start: startTime(process.pid) });
    expect(runningPid(layout, 'me')).toBe(process.pid);
    expect(processProblems(layout, table)).toEqual([]);
    expect(describeProcesses(layout, table)[1]).toMatch(
      new RegExp(`^  me +running  pid ${process.pid} +in dq-router: sleep 1$`),
    );

    // The same pid with another start time: a recycled pid.
    writeFileSync(layout.pidFile('me'), `${process.pid} 1\n`);
    expect(runningPid(layout, 'me')).toBeUndefined();
    expect(processProblems(layout, table)).toEqual(['process me (sleep 1) is not running']);
    expect(describeProcesses(layout, table)[1]).toBe('  me       stopped  in dq-router: sleep 1');

    writeFileSync(layout.pidFile('me'), 'garbage\n');
    expect(readPidFile(layout.pidFile('me'))).toBeUndefined();
  });

  it('count a zombie (finished, not yet waited for) as not running', async () => {
    // sh's background child outlives sh's exec into sleep, which never waits for it.
    const parent = spawn('sh', ['-c', 'sleep 0 & exec sleep 5'], { stdio: 'ignore' });
    try {
      let zombie: number | undefined;
      for (let i = 0; i < 50 && zombie === undefined; i++) {
        await new Promise((r) => setTimeout(r, 50));
        const children = readFileSync(`/proc/${parent.pid}/task/${parent.pid}/children`, 'utf8').trim();
        const pid = Number(children.split(' ')[0]);
        if (pid > 0 && readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ')) zombie = pid;
      }
      expect(zombie).toBeDefined();
      expect(startTime(zombie!)).toBeDefined();
      expect(isRunning(zombie!)).toBe(false);
      expect(isRunning(parent.pid!)).toBe(true);
    } finally {
      parent.kill('SIGKILL');
    }
  });

  it('killAndWait ends a process group: TERM, and KILL for one that ignores TERM', async () => {
    const signalOf = (p: ReturnType<typeof spawn>) =>
      new Promise<NodeJS.Signals | null>((resolve) => p.on('exit', (_code, signal) => resolve(signal)));
    const polite = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
    // The ignored TERM is inherited by sh's sleep: the whole group ignores it.
    const stubborn = spawn('sh', ['-c', "trap '' TERM; sleep 30 & wait"], {
      detached: true,
      stdio: 'ignore',
    });
    const [politeSignal, stubbornSignal] = [signalOf(polite), signalOf(stubborn)];
    await new Promise((r) => setTimeout(r, 200));
    expect(isRunning(polite.pid!)).toBe(true);
    await killAndWait([polite.pid!, stubborn.pid!]);
    expect(await politeSignal).toBe('SIGTERM');
    expect(await stubbornSignal).toBe('SIGKILL');
  }, 20_000);
});
