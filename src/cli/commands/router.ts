import type { Argv } from 'yargs';
import type { CommandMeta } from './command-meta.ts';
import { readConfigFile, validateConfig } from '../../config/load.ts';
import { RouterConfigSchema } from '../../config/router-config.ts';
import { sharedAddressesOf } from '../../config/router-config.ts';
import { startRouter } from '../../router/daemon/start.ts';
import { createLogger } from '../../util/log.ts';
import { ExitCode, UserError } from '../../util/exit-codes.ts';
import { missingPrivilege } from './host.ts';
import { validateWithFlags, type FlagField } from '../flag-config.ts';
import { configReloader } from '../reload.ts';
import { announceService } from '../service.ts';

const EXAMPLE_CONFIG = `Example configuration (YAML; every field but the two addresses has a default):

  sharedAddress: 198.51.100.30     # the public address the hosts share
                                   # (or sharedAddresses: [198.51.100.30, 198.51.100.31])
  lanAddress: 10.0.0.7             # the router's LAN address (PAP, IP-in-IP)
  tun: dn0                         # made by native-setup/linux/router-setup.sh
  stateDir: /var/lib/distnat/router
  pap: { udpPort: 7032, icmp: true, blockSize: 32, leaseSeconds: 300 }
  metrics: 127.0.0.1:9732
  pki:                             # optional: the router as local CA (docs/router.md)
    dir: /var/lib/distnat/router/ca   # made by 'distnat ca issue-local'
    port: 7033                     # POST /csr, GET /ca, GET /crl on lanAddress
    wanAddress: 203.0.113.1        # also GET /crl (and /ca) here, for remote peers
  etcd:                            # optional: leases shared with other routers (docs/multi-router.md)
    endpoints: [http://10.0.0.21:2379, http://10.0.0.22:2379, http://10.0.0.23:2379]

The local CA directory comes from the root CA, once:

  distnat ca init --dir root
  distnat ca issue-local --shared-address 198.51.100.30 --root root \\
      --out /var/lib/distnat/router/ca --crl-address 203.0.113.1

A router that finds no lease state in its state directory assumes it lost it
(wiped, a new machine) and holds off for half the longest lease plus the
quarantine: hosts reclaim the blocks they hold, new requests are told to try
later. On the very first start, when no host can hold a lease yet, add --fresh.

Exit codes: 0 stopped by SIGTERM/SIGINT, 69 native addon missing or no etcd member
answering (etcd.endpoints), 73 another
router holds the state directory, the control socket, UDP lanAddress:7032 or
TCP lanAddress:7033 (or a file could not be created), 77 missing privilege
(root, or CAP_NET_ADMIN and CAP_NET_RAW), 78 invalid configuration (also a
pki.dir / --ca-dir that holds no local CA).`;

/** Flags that override the file, by configuration field. */
const OVERRIDES = {
  'shared-address': 'sharedAddress',
  'shared-addresses': 'sharedAddresses',
  'lan-address': 'lanAddress',
  tun: 'tun',
  datapath: 'datapath',
  'wan-interface': 'wanInterface',
  workers: 'workers',
  'state-dir': 'stateDir',
  'run-dir': 'runDir',
  metrics: 'metrics',
  pcap: 'pcap',
  'log-level': 'logLevel',
} as const;

/** Flags that override fields of the pki section. */
const PKI_OVERRIDES = {
  'ca-dir': 'dir',
  'ca-port': 'port',
  'crl-address': 'wanAddress',
} as const;

/** Flags that override fields of the etcd section. */
const ETCD_OVERRIDES = {
  'etcd-endpoints': 'endpoints',
  'etcd-prefix': 'prefix',
} as const;

/** The file's data with the flags applied; the result is validated by the schema. */
export function mergeRouterFlags(
  data: Record<string, unknown>,
  argv: Record<string, unknown>,
): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...data };
  for (const [flag, field] of Object.entries(OVERRIDES)) {
    const v = argv[flag];
    if (v === undefined) continue;
    if (field === 'sharedAddresses') {
      // One flag, several addresses: comma-separated; it stands for the file's sharedAddress too.
      merged[field] = typeof v === 'string' ? v.split(',').filter((a) => a !== '') : v;
      delete merged.sharedAddress;
    } else {
      merged[field] = v;
      if (field === 'sharedAddress') delete merged.sharedAddresses;
    }
  }
  const pkiFlags = Object.entries(PKI_OVERRIDES).filter(([flag]) => argv[flag] !== undefined);
  if (pkiFlags.length > 0) {
    const pki = data.pki;
    const base = pki !== null && typeof pki === 'object' && !Array.isArray(pki) ? pki : {};
    merged.pki = { ...base, ...Object.fromEntries(pkiFlags.map(([flag, field]) => [field, argv[flag]])) };
  }
  const etcdFlags = Object.entries(ETCD_OVERRIDES).filter(([flag]) => argv[flag] !== undefined);
  if (etcdFlags.length > 0) {
    const etcd = data.etcd;
    const base = etcd !== null && typeof etcd === 'object' && !Array.isArray(etcd) ? etcd : {};
    merged.etcd = {
      ...base,
      ...Object.fromEntries(
        etcdFlags.map(([flag, field]) => {
          const v = argv[flag];
          // One flag, several members: comma-separated.
          return [
            field,
            field === 'endpoints' && typeof v === 'string' ? v.split(',').filter((e) => e !== '') : v,
          ];
        }),
      ),
    };
  }
  return merged;
}

/** The override flags on the command line, each with the field it sets and its value. */
export function givenRouterFlags(argv: Record<string, unknown>): (FlagField & { value: unknown })[] {
  return [
    ...Object.entries(OVERRIDES).map(([flag, field]) => ({ flag, path: [field], value: argv[flag] })),
    ...Object.entries(PKI_OVERRIDES).map(([flag, field]) => ({
      flag,
      path: ['pki', field],
      value: argv[flag],
    })),
    ...Object.entries(ETCD_OVERRIDES).map(([flag, field]) => ({
      flag,
      path: ['etcd', field],
      value: argv[flag],
    })),
  ].filter((g) => g.value !== undefined);
}

export function routerCommand(y: Argv, meta: CommandMeta) {
  return y.command(
    meta.usage,
    meta.describe,
    (a) =>
      a
        .option('config', {
          type: 'string',
          describe: 'YAML configuration file; the flags below override it',
        })
        .option('shared-address', { type: 'string', describe: 'the public IPv4 address all hosts share' })
        .option('shared-addresses', {
          type: 'string',
          describe: 'several shared addresses, comma-separated, each with its own ports',
        })
        .option('lan-address', { type: 'string', describe: "the router's LAN address (PAP and IP-in-IP)" })
        .option('tun', { type: 'string', describe: 'TUN device the shared address is routed into [dn0]' })
        .option('datapath', {
          choices: ['ebpf', 'tun'] as const,
          describe:
            'ebpf: BPF programs forward the common case, the TUN path the rest (tun when BPF is unavailable); tun: all through the TUN [ebpf]',
        })
        .option('wan-interface', {
          type: 'string',
          describe: "where the shared address is reached from (eBPF) [the default route's interface]",
        })
        .option('workers', {
          type: 'number',
          describe:
            'forwarding threads of the TUN path, each with one queue of a multi-queue TUN and a share of the LAN (router-setup.sh up --multi-queue); 1 forwards on the main thread [1]',
        })
        .option('state-dir', { type: 'string', describe: 'lease journal and lock [/var/lib/distnat/router]' })
        .option('run-dir', { type: 'string', describe: 'control socket for `distnat status` [/run/distnat]' })
        .option('metrics', { type: 'string', describe: 'serve Prometheus metrics on host:port' })
        .option('pcap', {
          type: 'string',
          describe: 'record forwarded packets (both sides) to this pcap file',
        })
        .option('log-level', { type: 'string', describe: 'error, warn, info or debug [info]' })
        .option('fresh', {
          type: 'boolean',
          describe:
            'first start: no host holds a lease of an earlier router on this LAN, so with no saved ' +
            'lease state grant at once instead of holding off (docs/pap.md 6.3); ignored when state is recovered',
        })
        .option('etcd-endpoints', {
          type: 'string',
          describe:
            'keep the leases in etcd, shared with other routers: client URLs, comma-separated (http://10.0.0.21:2379,...)',
        })
        .option('etcd-prefix', { type: 'string', describe: 'key prefix of the leases in etcd [/distnat/]' })
        .option('ca-dir', {
          type: 'string',
          describe:
            "serve the local CA in this directory (made by 'distnat ca issue-local'): CSRs and CRL on lanAddress",
        })
        .option('ca-port', { type: 'number', describe: 'TCP port of the CA endpoint [7033]' })
        .option('crl-address', {
          type: 'string',
          describe: "the router's WAN address: publish the CRL there too, for remote peers (no CSRs)",
        })
        .example('$0 router --config /etc/distnat/router.yaml', 'run with a configuration file')
        .example(
          '$0 router --shared-address 198.51.100.30 --lan-address 10.0.0.7 --state-dir /tmp/dn-router',
          'run with flags only (after native-setup/linux/router-setup.sh up)',
        )
        .example(
          '$0 router --shared-address 198.51.100.30 --lan-address 10.0.0.7 --ca-dir /var/lib/distnat/router/ca --crl-address 203.0.113.1',
          'also be the local CA: hosts POST CSRs to http://10.0.0.7:7033/csr, peers GET http://203.0.113.1:7033/crl',
        )
        .epilogue(EXAMPLE_CONFIG),
    async (argv) => {
      const file = argv.config;
      // Also what SIGHUP reads again.
      const read = () => {
        const data = (file === undefined ? {} : readConfigFile(file)) as Record<string, unknown>;
        if (data === null || typeof data !== 'object' || Array.isArray(data)) {
          validateConfig(RouterConfigSchema, data, file ?? 'command line');
        }
        return validateWithFlags(
          RouterConfigSchema,
          mergeRouterFlags(data, argv),
          givenRouterFlags(argv),
          file ?? 'command line',
          'distnat router',
        );
      };
      const config = read();
      // Checked before anything is created, so that the refusal names the privilege, not a file.
      const lacking = missingPrivilege();
      if (lacking !== undefined)
        throw new UserError(
          `the router needs ${lacking}: it opens the TUN device ${config.tun} and raw IPv4 sockets.\n` +
            'Run it as root (e.g. sudo), or grant the capabilities (setcap or systemd AmbientCapabilities).',
          ExitCode.NOPERM,
        );
      const log = createLogger({ level: config.logLevel, component: 'router' });
      let router;
      try {
        router = await startRouter(config, log, { fresh: argv.fresh === true });
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        if (err.code === 'EACCES' || err.code === 'EPERM')
          throw new UserError(
            `not permitted: ${err.message}\nThe state directory ${config.stateDir} and the run directory ` +
              `${config.runDir} must be writable by this user.`,
            ExitCode.NOPERM,
          );
        throw e;
      }
      const service = announceService({
        log,
        status: `routing ${sharedAddressesOf(config).join(', ')} for the hosts of ${config.lanAddress} (TUN ${config.tun})`,
        reload: configReloader({ log, file, running: config, read }),
      });
      let failure: Error | undefined;
      await new Promise<void>((resolve) => {
        let signalled = false;
        // A forwarding worker that failed (docs/router.md, "Workers"): stop, and exit with an error for
        // the service manager to start the router again.
        void router.failed.then((e) => {
          if (signalled) return;
          signalled = true;
          failure = e;
          service.stopping();
          router.stop().then(resolve, resolve);
        });
        const onSignal = (signal: NodeJS.Signals) => {
          if (signalled) {
            log.warn(`second ${signal}: exiting without a clean stop`);
            process.exit(1);
          }
          signalled = true;
          log.info(`${signal} received`);
          service.stopping();
          router.stop().then(resolve, (e: unknown) => {
            log.error('stop failed', { error: (e as Error).message });
            resolve();
          });
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
      });
      if (failure !== undefined)
        throw new UserError(`the router stopped: ${failure.message}`, ExitCode.SOFTWARE);
      // Whatever a library left running must not keep a stopped router alive.
      setTimeout(() => process.exit(0), 2000).unref();
    },
  );
}
