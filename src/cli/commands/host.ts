import { readFileSync } from 'node:fs';
import type { Argv } from 'yargs';
import type { CommandMeta } from './command-meta.ts';
import { HostConfigSchema, withStartingRouter } from '../../config/host-config.ts';
import type { HostConfig } from '../../config/host-config.ts';
import { ConfigError } from '../../config/config-error.ts';
import { readIkeConfig } from '../../config/ike-config.ts';
import { readConfigFile } from '../../config/load.ts';
import { readManualKeying } from '../../ipsec/manual-config.ts';
import { startHost } from '../../host/daemon/start.ts';
import type { HostAgent } from '../../host/daemon/start.ts';
import { addressOf } from '../../io/interfaces.ts';
import { NativeAddonError } from '../../io/native.ts';
import { createLogger } from '../../util/log.ts';
import { ExitCode, UserError } from '../../util/exit-codes.ts';
import { validateWithFlags, type FlagField } from '../flag-config.ts';
import { usageError } from '../usage.ts';
import { configReloader } from '../reload.ts';
import { announceService } from '../service.ts';

/** CAP_NET_ADMIN (12): the TUN device and sysctls; CAP_NET_RAW (13): the raw sockets. */
const CAP_NET_ADMIN = 12n;
const CAP_NET_RAW = 13n;

/** What is missing to run the agent, or undefined when the process may. */
export function missingPrivilege(statusText?: string): string | undefined {
  if (process.geteuid?.() === 0) return undefined;
  let text = statusText;
  try {
    text ??= readFileSync('/proc/self/status', 'utf8');
  } catch {
    return 'root (or CAP_NET_ADMIN and CAP_NET_RAW)';
  }
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(text);
  const eff = m ? BigInt(`0x${m[1]}`) : 0n;
  const lacking = [
    ...((eff >> CAP_NET_ADMIN) & 1n ? [] : ['CAP_NET_ADMIN']),
    ...((eff >> CAP_NET_RAW) & 1n ? [] : ['CAP_NET_RAW']),
  ];
  return lacking.length === 0 ? undefined : lacking.join(' and ');
}

interface HostArgs {
  config?: string | undefined;
  router?: string | undefined;
  routers?: string | undefined;
  'lan-address'?: string | undefined;
  'lan-if'?: string | undefined;
  'shared-address'?: string | undefined;
  tun?: string | undefined;
  mode?: string | undefined;
  datapath?: string | undefined;
  'pap-transport'?: string | undefined;
  'block-size'?: number | undefined;
  'state-dir'?: string | undefined;
  'run-dir'?: string | undefined;
  metrics?: string | undefined;
  pcap?: string | undefined;
  ipsec?: string | undefined;
  ike?: string | undefined;
  spis?: number | undefined;
  hairpin?: boolean | undefined;
  'hairpin-table'?: number | undefined;
  'log-level'?: string | undefined;
}

/**
 * The configuration from a file (if any) with the flags on top. A LAN
 * address can come from the interface named by --lan-if, and the shared
 * address from the TUN device when host-setup.sh has given it one.
 */
export function hostConfigFrom(argv: HostArgs): HostConfig {
  const source = argv.config ?? 'the command line';
  const data = (argv.config !== undefined ? readConfigFile(argv.config) : {}) as Record<string, unknown>;
  if (typeof data !== 'object' || data === null || Array.isArray(data))
    throw new ConfigError(source, ['expected a mapping of fields at the top level']);
  const given = givenHostFlags(argv);
  for (const { path, value } of given) {
    if (path.length === 1) {
      data[path[0]!] = value;
      continue;
    }
    // A flag inside a section (pap.*, hairpin.*): the file's other fields of the section stay.
    const section = data[path[0]!];
    data[path[0]!] = {
      ...(typeof section === 'object' && section !== null ? section : {}),
      [path[1]!]: value,
    };
  }
  if (data.lanAddress === undefined && argv['lan-if'] !== undefined) {
    const a = addressOf(argv['lan-if']);
    if (a === undefined)
      throw usageError(
        `--lan-if: got ${JSON.stringify(argv['lan-if'])}; no such interface, or it has no IPv4 address`,
        'distnat host',
      );
    data.lanAddress = a;
  }
  if (data.sharedAddress === undefined) {
    const a = addressOf(typeof data.tun === 'string' ? data.tun : 'dn0');
    if (a !== undefined) data.sharedAddress = a;
  }
  return validateWithFlags(HostConfigSchema, withStartingRouter(data), given, source, 'distnat host');
}

/** Flags that override the file, by configuration field (`pap.*` inside the pap section). */
const HOST_FLAGS = {
  router: ['router'],
  routers: ['routers'],
  'lan-address': ['lanAddress'],
  'shared-address': ['sharedAddress'],
  tun: ['tun'],
  mode: ['mode'],
  datapath: ['datapath'],
  'state-dir': ['stateDir'],
  'run-dir': ['runDir'],
  metrics: ['metrics'],
  pcap: ['pcap'],
  ipsec: ['ipsec'],
  ike: ['ike'],
  'log-level': ['logLevel'],
  spis: ['pap', 'spis'],
  'pap-transport': ['pap', 'transport'],
  'block-size': ['pap', 'blockSize'],
  hairpin: ['hairpin', 'enabled'],
  'hairpin-table': ['hairpin', 'table'],
} as const satisfies Record<string, readonly string[]>;

/** The override flags on the command line, each with the field it sets and its value. */
export function givenHostFlags(argv: HostArgs): (FlagField & { value: unknown })[] {
  return Object.entries(HOST_FLAGS)
    .map(([flag, path]) => {
      const value = argv[flag as keyof HostArgs];
      // --routers 10.0.0.7,10.0.0.8: one list, as in a file.
      return {
        flag,
        path,
        value: flag === 'routers' && typeof value === 'string' ? value.split(',') : value,
      };
    })
    .filter((g) => g.value !== undefined);
}

/**
 * The manual keying and IKE files the configuration names, checked as
 * `distnat check` checks them and before anything is opened (startHost
 * reads them again once the devices are up).
 */
export function checkNamedFiles(config: HostConfig): void {
  if (config.ipsec !== undefined) readManualKeying(config.ipsec);
  if (config.ike !== undefined) readIkeConfig(config.ike);
}

/** Turns start-up failures into messages a person can act on. */
function explain(e: unknown, config: HostConfig): unknown {
  if (e instanceof UserError || e instanceof ConfigError) return e;
  if (e instanceof NativeAddonError) return new UserError(e.message, ExitCode.UNAVAILABLE);
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'EPERM' || err.code === 'EACCES')
    return new UserError(
      `not permitted: ${err.message}\nRun as root, or with CAP_NET_ADMIN and CAP_NET_RAW.`,
      ExitCode.NOPERM,
    );
  if (err.code === 'EADDRNOTAVAIL')
    return new UserError(
      `the LAN address ${config.lanAddress} is not an address of this host (${err.message})`,
      ExitCode.CONFIG,
    );
  if (err.code === 'EADDRINUSE') return new UserError(err.message, ExitCode.CANTCREATE);
  return e;
}

export function hostCommand(y: Argv, meta: CommandMeta) {
  return y.command(
    meta.usage,
    meta.describe,
    (a) =>
      a
        .option('config', { type: 'string', describe: 'YAML or JSON configuration file (flags override it)' })
        .option('router', { type: 'string', describe: "the router's LAN address" })
        .option('routers', {
          type: 'string',
          describe:
            'routers sharing their leases on etcd, comma-separated; the host moves on when one stops answering',
        })
        .option('lan-address', {
          type: 'string',
          describe: "this host's LAN address (outer source of the tunnel)",
        })
        .option('lan-if', { type: 'string', describe: 'take the LAN address from this interface' })
        .option('shared-address', {
          type: 'string',
          describe: 'the shared public address (default: the TUN device address)',
        })
        .option('tun', {
          type: 'string',
          describe: 'TUN device (default dn0, made by native-setup/linux/host-setup.sh)',
        })
        .option('mode', {
          choices: ['translate', 'native'] as const,
          describe:
            'translate ports (Method 170/184, default) or set the kernel ephemeral range (Method 130)',
        })
        .option('datapath', {
          choices: ['ebpf', 'tun'] as const,
          describe:
            'ebpf: established TCP/UDP flows in the kernel, the rest here (default; without BPF, all here); tun: all here',
        })
        .option('pap-transport', {
          choices: ['udp', 'icmp'] as const,
          describe: 'PAP over UDP 7032 (default) or ICMP 32/33',
        })
        .option('block-size', { type: 'number', describe: 'ports to ask for per block (default 32)' })
        .option('state-dir', {
          type: 'string',
          describe: 'where state is kept (default /var/lib/distnat/host)',
        })
        .option('run-dir', {
          type: 'string',
          describe: 'where the control socket goes (default /run/distnat)',
        })
        .option('metrics', { type: 'string', describe: 'serve Prometheus metrics on host:port' })
        .option('pcap', {
          type: 'string',
          describe: 'record every packet read and written to this pcap file',
        })
        .option('ipsec', {
          type: 'string',
          describe:
            'manual keying file (docs/ipsec.md): ESP/AH applied after port translation, inbound SAs from leased SPIs',
        })
        .option('ike', {
          type: 'string',
          describe:
            'IKE file (docs/ike.md): key made here, certificate from the router, IKEv2 on a leased UDP port',
        })
        .option('spis', {
          type: 'number',
          describe: 'SPIs to lease at start (default 64 with --ipsec or --ike, else 0)',
        })
        .option('hairpin', {
          type: 'boolean',
          describe:
            "route other hosts' TCP/UDP ports of the shared address into the tunnel (default on; --no-hairpin: off)",
        })
        .option('hairpin-table', {
          type: 'number',
          describe: 'routing table for the hairpin route into the TUN device (default 7032)',
        })
        .option('log-level', { choices: ['error', 'warn', 'info', 'debug'] as const })
        .option('wait-seconds', {
          type: 'number',
          describe:
            'exit with status 69 if no lease is granted within this many seconds (default: keep trying)',
        })
        .example(
          '$0 host --router 10.0.0.7 --lan-if lan0',
          'lease ports from 10.0.0.7 and tunnel the traffic dn0 carries (after native-setup/linux/host-setup.sh up)',
        )
        .example('$0 host --config /etc/distnat/host.yaml --mode native', 'Method 130: no translation')
        .example(
          '$0 host --router 10.0.0.7 --lan-if lan0 --ike /etc/distnat/ike.yaml',
          'also negotiate ESP with the peers the IKE file names, with a certificate from the router',
        )
        .epilogue(
          'Stop with SIGTERM or Ctrl-C: the leased blocks are given back (PAP invalidate), kernel settings\n' +
            'restored. Exit codes: 69 router unreachable (--wait-seconds) or native addon missing, 73 another agent\n' +
            'has the run directory, ' +
            '77 missing privilege, 78 bad configuration.',
        ),
    async (argv) => {
      const config = hostConfigFrom(argv);
      checkNamedFiles(config);
      const lacking = missingPrivilege();
      if (lacking !== undefined)
        throw new UserError(
          `the host agent needs ${lacking}: it opens the TUN device ${config.tun} and raw IPv4 sockets.\n` +
            'Run it as root (e.g. sudo), or grant the capabilities (setcap or systemd AmbientCapabilities).',
          ExitCode.NOPERM,
        );
      const log = createLogger({ level: config.logLevel, component: 'host' });
      let agent: HostAgent;
      try {
        agent = await startHost(config, log);
      } catch (e) {
        throw explain(e, config);
      }
      const service = announceService({
        log,
        status: `sharing ${config.sharedAddress} through the router ${config.router} (TUN ${config.tun})`,
        reload: configReloader({ log, file: argv.config, running: config, read: () => hostConfigFrom(argv) }),
      });
      let signalled = false;
      const onSignal = (signal: NodeJS.Signals): void => {
        if (signalled) {
          log.warn(`second ${signal}: exiting without waiting`);
          process.exit(ExitCode.FAILURE);
        }
        signalled = true;
        log.info(`${signal}: stopping`);
        service.stopping();
        agent.stop().then(
          () => process.exit(ExitCode.OK),
          (e: Error) => {
            log.error('stop failed', { error: e.message });
            process.exit(ExitCode.SOFTWARE);
          },
        );
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      const wait = argv['wait-seconds'];
      if (wait !== undefined && !(await agent.whenLeased(wait * 1000)) && !signalled) {
        await agent.stop();
        throw new UserError(
          `no lease from the router ${config.router} within ${wait} s ` +
            `(PAP over ${config.pap.transport === 'udp' ? `UDP port ${config.pap.udpPort}` : 'ICMP types 32/33'}): ` +
            `is \`distnat router\` running there and reachable from ${config.lanAddress}?`,
          ExitCode.UNAVAILABLE,
        );
      }
    },
  );
}
