import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ExitCode, UserError } from '../util/exit-codes.ts';
import { forJournal } from '../util/journal.ts';
import { registerCommands } from './commands/index.ts';

/**
 * `distnat`: one command with a subcommand per role. Errors meant for people
 * print one clear message and a sysexits code; anything else is a bug and
 * prints its stack.
 */
export async function main(args: string[]): Promise<number> {
  let cli = yargs(args)
    .scriptName('distnat')
    .usage(
      '$0 <command> [options]\n\nDistributed NAT: many hosts share one public IPv4 address, no packet rewritten.',
    )
    .strict()
    .demandCommand(1, 'Name a command; `distnat <command> --help` explains each.')
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version()
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .epilogue(
      'Exit codes: 0 ok, 1 failure, 64 bad command line, 69 daemon or router unreachable,\n' +
        '77 missing privilege (root or CAP_NET_ADMIN/CAP_NET_RAW), 78 bad configuration.',
    )
    .fail((msg, err, y) => {
      // A check() that returns a string hands it over as `err`: a usage error. A thrown Error is a bug.
      if ((err as unknown) instanceof Error) throw err;
      y.showHelp();
      throw new UserError(`\n${msg}`, ExitCode.USAGE);
    });
  cli = await registerCommands(
    cli,
    args.find((a) => !a.startsWith('-')),
  );
  try {
    await cli.parseAsync();
    return process.exitCode === undefined ? ExitCode.OK : Number(process.exitCode);
  } catch (e) {
    if (e instanceof UserError) {
      process.stderr.write(forJournal(`distnat: ${e.message.replace(/^\n/, '')}\n`, 'error'));
      return e.exitCode;
    }
    process.stderr.write(
      forJournal(`distnat: internal error: ${(e as Error).stack ?? String(e)}\n`, 'error'),
    );
    return ExitCode.SOFTWARE;
  }
}

const code = await main(hideBin(process.argv));
// Daemons keep the loop alive and exit on their own; one-shot commands end here.
if (code !== ExitCode.OK) process.exit(code);
