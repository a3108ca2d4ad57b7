import type { Argv } from 'yargs';
import type { CommandMeta } from './command-meta.ts';
import { ConfigError } from '../../config/config-error.ts';
import { NativeAddonError } from '../../io/native.ts';
import { startPeer } from '../../peer/daemon/start.ts';
import type { Peer } from '../../peer/daemon/start.ts';
import { createLogger } from '../../util/log.ts';
import { ExitCode, UserError } from '../../util/exit-codes.ts';

export function peerCommand(y: Argv, meta: CommandMeta) {
  return y.command(
    meta.usage,
    meta.describe,
    (a) =>
      a
        .option('ipsec', {
          type: 'string',
          describe: 'manual keying file as this end sees it (docs/ipsec.md)',
        })
        .option('mirror', {
          type: 'string',
          array: true,
          describe:
            "a host's manual keying file, turned round (SA directions and selectors swapped); repeatable",
        })
        .option('ike', {
          type: 'string',
          describe:
            'IKE file (docs/ike.md): negotiate SAs with IKEv2 on UDP 500/4500 of the --wan-if address',
        })
        .option('tun', { type: 'string', default: 'dnp0', describe: 'TUN device (created if missing)' })
        .option('mtu', {
          type: 'number',
          default: 1400,
          describe: 'TUN MTU: the WAN MTU minus IPsec overhead',
        })
        .option('wan-if', {
          type: 'string',
          demandOption: true,
          describe: 'interface protected packets leave by',
        })
        .option('remote', { type: 'string', describe: 'the remote shared address to route into the TUN' })
        .option('via', { type: 'string', describe: 'next hop towards --remote on the WAN' })
        .option('run-dir', {
          type: 'string',
          default: '/run/distnat',
          describe: 'where the control socket goes',
        })
        .option('log-level', {
          choices: ['error', 'warn', 'info', 'debug'] as const,
          default: 'info' as const,
        })
        // A string, not a throw: main.ts takes a thrown error for a bug (exit 70), a string for usage (64).
        .check((argv) => {
          if (argv.ipsec !== undefined && argv.mirror !== undefined)
            return 'give --ipsec or --mirror, not both';
          if (argv.ipsec === undefined && argv.mirror === undefined && argv.ike === undefined)
            return 'give --ike, --ipsec or --mirror';
          if ((argv.remote === undefined) !== (argv.via === undefined))
            return '--remote and --via go together';
          return true;
        })
        .example(
          '$0 peer --mirror h1-ipsec.yaml --wan-if wan0 --remote 198.51.100.30 --via 203.0.113.1',
          "the testbed server as the other end of h1's SAs",
        )
        .example(
          '$0 peer --ike peer-ike.yaml --wan-if wan0 --remote 198.51.100.30 --via 203.0.113.1',
          'the same with IKEv2: SAs negotiated with the hosts, certificates checked against the root CA',
        )
        .epilogue(
          'Status: distnat status peer --run-dir DIR. Stop with SIGTERM or Ctrl-C (routes restored).',
        ),
    async (argv) => {
      if (process.geteuid?.() !== 0)
        throw new UserError('the peer needs root (TUN device, raw sockets, routes)', ExitCode.NOPERM);
      const log = createLogger({ level: argv['log-level'], component: 'peer' });
      let peer: Peer;
      try {
        peer = await startPeer(
          {
            ...(argv.ipsec !== undefined ? { ipsec: argv.ipsec } : {}),
            ...(argv.mirror !== undefined ? { mirror: argv.mirror.map(String) } : {}),
            ...(argv.ike !== undefined ? { ike: argv.ike } : {}),
            tun: argv.tun,
            mtu: argv.mtu,
            wan: argv['wan-if'],
            ...(argv.remote !== undefined && argv.via !== undefined
              ? { route: { remote: argv.remote, gateway: argv.via } }
              : {}),
            runDir: argv['run-dir'],
          },
          log,
        );
      } catch (e) {
        if (e instanceof ConfigError || e instanceof UserError) throw e;
        if (e instanceof NativeAddonError) throw new UserError(e.message, ExitCode.SOFTWARE);
        throw e;
      }
      const onSignal = (signal: NodeJS.Signals): void => {
        log.info(`${signal}: stopping`);
        void peer.stop().finally(() => process.exit(ExitCode.OK));
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
    },
  );
}
