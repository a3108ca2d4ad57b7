/**
 * The units booted by real systemd: the Vagrant topology's four machines
 * (router, h1, h2, server; scripts/nspawn/machines) as systemd-nspawn
 * containers on the testbed's addresses, each provisioned by the
 * Vagrantfile's own steps (install.sh with the machine's arguments, then its
 * check step, read from the Vagrantfile), and then what only a service
 * manager shows: Type=notify readiness, `systemctl reload`, the journal's
 * priorities, the watchdog, `systemctl stop` giving the leases back, and the
 * peer's unit carrying IPsec end to end.
 *
 * The machines have no network: the image scripts/setup builds
 * (scripts/nspawn/build-image) holds the Debian packages, Node.js and an npm
 * cache for the lock file. Everything runs in namespaces, cgroups and
 * overlays of this file's own, removed at the end whatever happens. A few
 * minutes: install.sh builds the package from the checkout on the router,
 * as `vagrant up` does on each machine; the other three install the package
 * this run packed from the same working tree (install.sh --package), so that
 * the tree is built once, not four times side by side on the same cores.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { TOPOLOGY } from '../../scripts/lib/topology.ts';
import type { MachineName, Provisioner } from '../helpers/machines.ts';
import { MACHINE_NAMES, Machines, machinesUnavailable, vagrantProvisioners } from '../helpers/machines.ts';
import { describe as describeResult, sleep, waitUntil } from '../helpers/process.ts';
import { H1_KEYS, hostKeying } from './ipsec-keys.ts';

const ROLE: Record<MachineName, 'router' | 'host' | 'server'> = {
  router: 'router',
  h1: 'host',
  h2: 'host',
  server: 'server',
};
const HOSTS = ['h1', 'h2'] as const;
/**
 * The machine that builds the package from /vagrant, exactly as `vagrant up`
 * provisions every machine; the router, which Vagrant provisions first.
 */
const BUILDER: MachineName = 'router';
/** Where the others receive the package this run packed, for install.sh --package. */
const PACKAGE = '/var/tmp/distnat.tgz';
const { shared: SHARED } = TOPOLOGY;
const SERVER = TOPOLOGY.server.wan;

let machines: Machines;
let provisioners: Record<string, Record<string, Provisioner>>;

interface Entry {
  MESSAGE: string;
  PRIORITY: string;
}

/** The journal's entries of a unit (this boot), parsed. */
async function journal(m: MachineName, unit: string, extra: string[] = []): Promise<Entry[]> {
  const out = await machines.sh(m, `journalctl -b -u ${unit} -o json --no-pager ${extra.join(' ')}`);
  return out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Entry)
    .map((e) => ({
      ...e,
      MESSAGE: Array.isArray(e.MESSAGE) ? Buffer.from(e.MESSAGE).toString() : e.MESSAGE,
    }));
}

/** A daemon's JSON log line's message, or the line. */
const message = (e: Entry): string => {
  try {
    return (JSON.parse(e.MESSAGE) as { message: string }).message;
  } catch {
    return e.MESSAGE;
  }
};

async function show(m: MachineName, unit: string, props: string[]): Promise<Record<string, string>> {
  const out = await machines.sh(m, `systemctl show ${unit} ${props.map((p) => `-p ${p}`).join(' ')}`);
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

async function status(
  m: MachineName,
  role: string,
): Promise<{ summary: Record<string, string | number>; counters?: Record<string, number> }> {
  return JSON.parse(await machines.sh(m, `distnat status ${role} --json`)) as {
    summary: Record<string, string | number>;
    counters?: Record<string, number>;
  };
}

beforeAll(async () => {
  const why = machinesUnavailable();
  if (why !== undefined) throw new Error(`the systemd machines cannot run: ${why}`);
  provisioners = vagrantProvisioners();
  machines = await Machines.boot();
}, 240_000);

afterAll(async () => {
  await machines?.halt();
}, 120_000);

describe('the units under systemd, in machines provisioned as the Vagrantfile does', () => {
  it('boots router, h1, h2 and server to multi-user.target', async () => {
    expect(machines.bootStates()).toEqual({
      router: 'running',
      h1: 'running',
      h2: 'running',
      server: 'running',
    });
    expect(await machines.sh('router', 'systemctl --version | head -1')).toMatch(/^systemd 25\d/);
    expect((await machines.sh('h1', 'hostname')).trim()).toBe('distnat-h1');
  });

  it("provisions each with install.sh and the machine's arguments, then the Vagrantfile's check step", async () => {
    // The package this run packed and installed (test/helpers/package.ts),
    // for the machines that do not build their own.
    const tarball = readFileSync(inject('distnatPackage').tarball);
    const install = async (m: MachineName) => {
      const p = provisioners[m]!.install!;
      if (m === BUILDER) return machines.provision(m, p, { timeoutMs: 900_000 });
      await machines.sh(m, `cat >${PACKAGE}`, { input: tarball });
      return machines.provision(m, { ...p, args: [...p.args, '--package', PACKAGE] }, { timeoutMs: 900_000 });
    };
    // Vagrant provisions one machine after the other; the result is the same
    // at once (a host started before the router asks again until it answers).
    const installs = await Promise.all(MACHINE_NAMES.map(install));
    MACHINE_NAMES.forEach((m, i) => {
      const r = installs[i]!;
      expect(r.code, `${m}: install.sh\n${describeResult(r)}`).toBe(0);
      const built = /install\.sh: building the package from the checkout \/vagrant/;
      if (m === BUILDER) expect(r.stdout).toMatch(built);
      else expect(r.stdout).not.toMatch(built);
      expect(r.stdout).toMatch(/install-package\.sh: installed [\d.]+ in \/opt\/distnat/);
      expect(r.stdout).toContain(`install.sh: done: role ${ROLE[m]}`);
    });
    const checks = await Promise.all(
      MACHINE_NAMES.map((m) => machines.provision(m, provisioners[m]!.check!)),
    );
    MACHINE_NAMES.forEach((m, i) => {
      expect(checks[i]!.code, `${m}: the check step\n${describeResult(checks[i]!)}`).toBe(0);
    });
    // The package, not the checkout: no sources, no development tools.
    expect(await machines.sh('router', 'ls /opt/distnat')).not.toMatch(/^(src|test|scripts)$/m);
    expect(await machines.sh('router', 'ls /opt/distnat/node_modules')).not.toMatch(
      /^(typescript|esbuild|vitest|tsx)$/m,
    );
  }, 900_000);

  it('runs each daemon as a Type=notify unit, unprivileged: active means working', async () => {
    for (const m of ['router', 'h1', 'h2'] as const) {
      const unit = `distnat-${ROLE[m]}`;
      expect(
        await show(m, unit, ['Type', 'ActiveState', 'SubState', 'NRestarts', 'StatusText']),
      ).toMatchObject({
        Type: 'notify',
        ActiveState: 'active',
        SubState: 'running',
        NRestarts: '0',
      });
      const proc = await machines.sh(
        m,
        `grep -E '^(Uid|CapEff|NoNewPrivs):' /proc/$(systemctl show -p MainPID --value ${unit})/status`,
      );
      expect(proc).toMatch(/^CapEff:\s+0000000000003000$/m);
      expect(proc).toMatch(/^NoNewPrivs:\s+1$/m);
      expect(proc).not.toMatch(/^Uid:\s+0\s/m);
    }
    // READY=1 comes once the control socket is up: `systemctl restart`
    // returns when `distnat status` answers, with no wait in between.
    for (const [m, role] of [
      ['router', 'router'],
      ['h1', 'host'],
    ] as const) {
      const r = await machines.exec(m, [
        'bash',
        '-c',
        `systemctl restart distnat-${role} && distnat status ${role} --json`,
      ]);
      expect(r.code, describeResult(r)).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ role });
      expect((await show(m, `distnat-${role}`, ['StatusText'])).StatusText).toMatch(SHARED);
    }
  }, 120_000);

  it('lets both hosts download from the server through the shared address', async () => {
    await machines.sh(
      'server',
      `mkdir -p /srv/www && head -c 4194304 /dev/urandom >/srv/www/blob &&
       systemd-run --quiet --unit=test-http --property=WorkingDirectory=/srv/www python3 -m http.server 80 --bind ${SERVER}`,
    );
    const want = (await machines.sh('server', 'sha256sum /srv/www/blob')).split(' ')[0];
    await waitUntil(
      'the server to listen',
      async () => (await machines.sh('server', "ss -Htln 'sport = :80'")) !== '',
      {
        timeoutMs: 20_000,
        intervalMs: 200,
      },
    );
    for (const h of HOSTS) {
      await waitUntil(
        `${h} to hold ports`,
        async () => Number((await status(h, 'host')).summary['ports held'] ?? 0) > 0,
        { timeoutMs: 30_000, intervalMs: 300 },
      );
      const got = await machines.sh(h, `curl -sS --fail --max-time 30 http://${SERVER}/blob | sha256sum`);
      expect(got.split(' ')[0], `${h} downloaded the file`).toBe(want);
    }
    const log = await machines.sh('server', 'journalctl -u test-http -o cat --no-pager');
    const clients = [...log.matchAll(/^(\d+\.\d+\.\d+\.\d+) - - .*"GET \/blob/gm)].map((m) => m[1]);
    expect(clients).toEqual([SHARED, SHARED]);
  }, 120_000);

  it('reloads: the log level at once, a change that needs a restart named in a warning', async () => {
    const before = await show('router', 'distnat-router', ['MainPID']);
    await machines.sh(
      'router',
      "printf 'logLevel: debug\\npap: { blockSize: 64 }\\n' >>/etc/distnat/router.yaml",
    );
    const r = await machines.exec('router', ['systemctl', 'reload', 'distnat-router']);
    expect(r.code, describeResult(r)).toBe(0);
    let reread: Entry | undefined;
    await waitUntil(
      'the router to read its configuration again',
      async () => {
        reread = (await journal('router', 'distnat-router')).find(
          (e) => message(e) === 'configuration re-read',
        );
        return reread !== undefined;
      },
      { timeoutMs: 20_000, intervalMs: 300 },
    );
    expect(JSON.parse(reread!.MESSAGE)).toMatchObject({ logLevel: 'debug', waitingForRestart: ['pap'] });
    const after = await show('router', 'distnat-router', ['MainPID', 'ActiveState', 'StatusText']);
    expect(after).toMatchObject({ MainPID: before.MainPID, ActiveState: 'active' });
    expect(after.StatusText).toMatch(SHARED);
  }, 60_000);

  it('gives each log line its journald priority: journalctl -p warning shows warnings and errors only', async () => {
    const all = await journal('router', 'distnat-router');
    const byMessage = (text: string) => all.filter((e) => message(e).startsWith(text));
    expect(byMessage('router started').map((e) => e.PRIORITY)).toContain('6');
    expect(byMessage('configuration: pap changed').map((e) => e.PRIORITY)).toEqual(['4']);
    const warnings = await journal('router', 'distnat-router', ['-p', 'warning']);
    expect(warnings.map(message)).toContain(
      'configuration: pap changed; it takes effect at the next restart',
    );
    expect(warnings.map((e) => Number(e.PRIORITY)).every((p) => p <= 4)).toBe(true);
    expect(warnings.map(message)).not.toContain('router started');
    // On every machine, what distnat logged that -p warning shows is a warning or an error.
    for (const m of MACHINE_NAMES) {
      const lines = (
        await machines.sh(m, 'journalctl -q -b -p warning -o cat --no-pager _COMM=node || true')
      ).trim();
      for (const line of lines.split('\n').filter((l) => l.startsWith('{')))
        expect((JSON.parse(line) as { level: string }).level, `${m}: ${line}`).toMatch(/^(warn|error)$/);
    }
  }, 60_000);

  it("runs the peer's unit on the server, carrying h1's ESP end to end", async () => {
    const keying = hostKeying(H1_KEYS).yaml;
    for (const m of ['server', 'h1'] as const)
      await machines.sh(
        m,
        `cat >/etc/distnat/h1-ipsec.yaml <<'EOF'\n${keying}\nEOF\nchmod 0644 /etc/distnat/h1-ipsec.yaml`,
      );
    // A role added to an installed machine: the package's own install.sh, which keeps the package.
    const install = await machines.exec('server', [
      '/opt/distnat/native-setup/install.sh',
      'peer',
      '--wan-if',
      'eth1',
      '--gateway',
      TOPOLOGY.router.wan,
      '--shared',
      SHARED,
    ]);
    expect(install.code, describeResult(install)).toBe(0);
    expect(install.stdout).toMatch(/keeping the package installed in \/opt\/distnat/);
    await machines.sh(
      'server',
      `sed -i 's#^DN_PEER_KEYING=.*#DN_PEER_KEYING=--mirror /etc/distnat/h1-ipsec.yaml#' /etc/distnat/peer.env &&
       systemctl start distnat-peer`,
    );
    expect(await show('server', 'distnat-peer', ['Type', 'ActiveState'])).toEqual({
      Type: 'notify',
      ActiveState: 'active',
    });
    expect((await status('server', 'peer')).summary.keying).toMatch(/h1-ipsec\.yaml \(mirrored\)/);

    await machines.sh(
      'h1',
      "printf 'ipsec: /etc/distnat/h1-ipsec.yaml\\n' >>/etc/distnat/host.yaml && systemctl restart distnat-host",
    );
    await waitUntil(
      "h1's SAs to be installed",
      async () => String((await status('h1', 'host')).summary.ipsec ?? '').includes('SAs installed'),
      { timeoutMs: 30_000, intervalMs: 300 },
    );
    const port = H1_KEYS.base + 1; // ESP transport, AES-GCM-128
    await machines.sh(
      'server',
      `systemd-run --quiet --unit=test-esp --property=WorkingDirectory=/srv/www python3 -m http.server ${port} --bind ${SERVER}`,
    );
    await waitUntil(
      'the ESP server to listen',
      async () => (await machines.sh('server', `ss -Htln 'sport = :${port}'`)) !== '',
      {
        timeoutMs: 20_000,
        intervalMs: 200,
      },
    );
    const got = await machines.sh(
      'h1',
      `curl -sS --fail --max-time 30 http://${SERVER}:${port}/blob | wc -c`,
    );
    expect(Number(got)).toBe(4194304);
    const host = (await status('h1', 'host')).counters ?? {};
    expect(host['ipsec.outbound.protected'] ?? 0).toBeGreaterThan(0);
    expect(host['ipsec.inbound.accepted'] ?? 0).toBeGreaterThan(0);
    const stop = await machines.exec('server', ['systemctl', 'stop', 'distnat-peer']);
    expect(stop.code, describeResult(stop)).toBe(0);
    expect(await show('server', 'distnat-peer', ['Result', 'ExecMainStatus'])).toEqual({
      Result: 'success',
      ExecMainStatus: '0',
    });
    // The peer's routes are gone again: the shared address back to the router alone.
    const routes = await machines.sh('server', `ip route show ${SHARED}/32`);
    const journal = (): Promise<string> =>
      machines.sh('server', 'journalctl -u distnat-peer -u distnat-server --no-pager -n 40 -o short-precise');
    const seen = routes.includes(`via ${TOPOLOGY.router.wan} `) ? '' : await journal();
    expect(routes, seen).toMatch(new RegExp(`via ${TOPOLOGY.router.wan.replaceAll('.', '\\.')}`));
    expect(routes).not.toMatch(/dnp0/);
  }, 120_000);

  it('gives the leases back on systemctl stop, and undoes the set-up', async () => {
    expect((await status('router', 'router')).summary['hosts with leases']).toBe(2);
    for (const h of HOSTS) {
      const r = await machines.exec(h, ['systemctl', 'stop', 'distnat-host']);
      expect(r.code, describeResult(r)).toBe(0);
      expect(await show(h, 'distnat-host', ['Result', 'ExecMainStatus'])).toEqual({
        Result: 'success',
        ExecMainStatus: '0',
      });
      expect(
        (await journal(h, 'distnat-host')).map(message).some((t) => t.startsWith('released ports')),
      ).toBe(true);
      // ExecStopPost: no TUN device, no default route into it.
      expect(await machines.sh(h, 'ip -o link show; ip route show default')).not.toMatch(/dn0/);
    }
    await waitUntil(
      'the router to have no host with leases',
      async () => (await status('router', 'router')).summary['hosts with leases'] === 0,
      { timeoutMs: 10_000, intervalMs: 300 },
    );
  }, 60_000);

  it('restarts a router whose event loop stops: the watchdog', async () => {
    // A shorter watchdog than the unit's 20 s, for the test's sake.
    await machines.sh(
      'router',
      `mkdir -p /run/systemd/system/distnat-router.service.d &&
       printf '[Service]\\nWatchdogSec=3\\n' >/run/systemd/system/distnat-router.service.d/watchdog.conf &&
       systemctl daemon-reload && systemctl restart distnat-router`,
    );
    // Alive well past the watchdog's limit: the pings arrive.
    await sleep(7000);
    const alive = await show('router', 'distnat-router', [
      'MainPID',
      'ActiveState',
      'NRestarts',
      'WatchdogUSec',
    ]);
    expect(alive).toMatchObject({ ActiveState: 'active', NRestarts: '0', WatchdogUSec: '3s' });
    await machines.sh('router', `kill -STOP ${alive.MainPID}`);
    await waitUntil(
      'systemd to restart the stopped router',
      async () => (await show('router', 'distnat-router', ['NRestarts'])).NRestarts === '1',
      { timeoutMs: 40_000, intervalMs: 500 },
    );
    const log = await machines.sh('router', 'journalctl -b -u distnat-router -o cat --no-pager');
    expect(log).toMatch(/Watchdog timeout/);
    await waitUntil(
      'the router to run again',
      async () => (await show('router', 'distnat-router', ['ActiveState'])).ActiveState === 'active',
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    const r = await machines.exec('router', ['systemctl', 'stop', 'distnat-router']);
    expect(r.code, describeResult(r)).toBe(0);
  }, 120_000);
});
