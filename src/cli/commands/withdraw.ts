import type { Argv } from 'yargs';
import type { CommandMeta } from './command-meta.ts';
import { controlRequest } from '../../control/client.ts';
import { controlSocketPath, WITHDRAW_KINDS } from '../../control/protocol.ts';
import type { WithdrawKind, WithdrawOutcome } from '../../control/protocol.ts';
import { ExitCode, UserError } from '../../util/exit-codes.ts';
import { controlUnreachable, typedCommand } from '../control-access.ts';
import { ipv4Flags } from '../usage.ts';

/**
 * `distnat withdraw HOST`: the router takes the host's blocks back (the
 * patent's router-initiated invalidation) and its local CA revokes the
 * certificates naming them, reason privilegeWithdrawn. Asked over the running
 * router's control socket, so the change is journalled like every lease
 * change and the host is told with a PAP withdraw.
 */

/** One line per block and per revoked certificate, for the person who asked. */
export function describeWithdrawal(o: WithdrawOutcome): string {
  const lines = o.blocks.map(
    (b) =>
      `withdrew ${b.kind === 'port' ? 'ports' : 'SPIs'} ${b.address === undefined ? '' : `${b.address} `}${b.lowest}-${b.lowest + b.count - 1} from ${o.host}`,
  );
  for (const serial of o.revoked) lines.push(`revoked certificate ${serial} (privilegeWithdrawn)`);
  if (o.crlNumber !== undefined)
    lines.push(
      o.revoked.length > 0
        ? `CRL ${o.crlNumber} lists them and is published`
        : `no valid certificate named these blocks (CRL ${o.crlNumber})`,
    );
  return lines.join('\n');
}

export function withdrawCommand(y: Argv, meta: CommandMeta) {
  return y.command(
    meta.usage,
    meta.describe,
    (a) =>
      a
        .positional('host', { type: 'string', demandOption: true, describe: "the host's LAN address" })
        .option('kind', {
          choices: WITHDRAW_KINDS,
          default: 'all' as WithdrawKind,
          describe: 'port blocks, SPI blocks, or both',
        })
        .option('run-dir', {
          type: 'string',
          default: '/run/distnat',
          describe: "the router's run directory (its control socket router.sock)",
        })
        .option('json', { type: 'boolean', default: false, describe: 'print the outcome as JSON' })
        .check(ipv4Flags('<host>'))
        .example('$0 withdraw 10.0.0.1', 'every block of 10.0.0.1; the CRL lists its certificate at once')
        .example(
          '$0 withdraw 10.0.0.3 --kind spi --run-dir run/dn-/router',
          'only the SPI blocks, testbed router',
        )
        .epilogue(
          'The host hears of it at once by a PAP withdraw (or at its next renewal) and may lease again.\n' +
            'Exit codes: 0 withdrawn, 1 the host held no such block or the router refused, 64 bad command line,\n' +
            '69 no router answers on the control socket.',
        ),
    async (argv) => {
      const path = controlSocketPath(argv['run-dir'], 'router');
      const host = String(argv.host);
      let reply;
      try {
        reply = await controlRequest(path, { command: 'withdraw', host, kind: argv.kind }, 10_000);
      } catch (e) {
        throw controlUnreachable(
          'router',
          path,
          argv['run-dir'],
          typedCommand(process.argv.slice(2)),
          e as NodeJS.ErrnoException,
        );
      }
      if (!reply.ok) throw new UserError(`the router refused: ${reply.error}`);
      const outcome = reply.withdrawn;
      if (outcome === undefined)
        throw new UserError('the router answered without an outcome', ExitCode.SOFTWARE);
      if (argv.json) process.stdout.write(JSON.stringify(outcome, null, 2) + '\n');
      if (outcome.blocks.length === 0)
        throw new UserError(
          `${host} holds no ${argv.kind === 'all' ? '' : argv.kind + ' '}lease: nothing withdrawn`,
          ExitCode.FAILURE,
        );
      if (!argv.json) process.stdout.write(describeWithdrawal(outcome) + '\n');
    },
  );
}
