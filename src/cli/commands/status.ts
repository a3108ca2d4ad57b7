import type { Argv } from 'yargs';
import type { CommandMeta } from './command-meta.ts';
import { controlRequest } from '../../control/client.ts';
import { controlSocketPath } from '../../control/protocol.ts';
import { UserError } from '../../util/exit-codes.ts';
import { controlUnreachable, typedCommand } from '../control-access.ts';
import type { DaemonStatus } from '../../control/status.ts';
import { formatCounters, formatTable } from '../table.ts';

export function statusCommand(y: Argv, meta: CommandMeta) {
  return y.command(
    meta.usage,
    meta.describe,
    (a) =>
      a
        .positional('role', { choices: ['router', 'host', 'peer'] as const, default: 'router' as const })
        .option('run-dir', {
          type: 'string',
          default: '/run/distnat',
          describe: 'where the daemon keeps its control socket',
        })
        .option('name', {
          type: 'string',
          describe: 'instance name, when several run with one run directory',
        })
        .option('json', {
          type: 'boolean',
          default: false,
          describe: 'print the raw status as JSON, for scripts',
        })
        .example('$0 status router', 'port and SPI leases (FIG. 8, 21), flows (FIG. 12), counters')
        .example('$0 status host --json | jq .counters', "a host agent's counters for a script"),
    async (argv) => {
      const path = controlSocketPath(argv['run-dir'], argv.role, argv.name);
      let reply;
      try {
        reply = await controlRequest(path, { command: 'status' });
      } catch (e) {
        throw controlUnreachable(
          argv.role,
          path,
          argv['run-dir'],
          typedCommand(process.argv.slice(2)),
          e as NodeJS.ErrnoException,
        );
      }
      if (!reply.ok) throw new UserError(`the ${argv.role} answered with an error: ${reply.error}`);
      if (argv.json) {
        process.stdout.write(JSON.stringify(reply.status, null, 2) + '\n');
        return;
      }
      const s = reply.status as DaemonStatus;
      const parts = [
        Object.entries(s.summary)
          .map(([k, v]) => `${k}: ${v}`)
          .join('\n'),
        ...s.tables.map(formatTable),
        formatCounters('counters', s.counters),
      ];
      process.stdout.write(parts.join('\n\n') + '\n');
    },
  );
}
