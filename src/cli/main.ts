import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ExitCode, UserError } from '../util/exit-codes.ts';
import { COMMANDS, registerCommands } from './commands/index.ts';
import { commandOfUsage, helpWidth, numbersAreNumbers, usageError } from './usage.ts';
import { VERSION } from './version.ts';

/**
 * `distnat`: one command with a subcommand per role. Errors meant for people
 * print one clear message and a sysexits code; anything else is a bug and
 * prints its stack.
 */
export async function main(args: string[]): Promise<number> {
  // Shell completion runs `distnat --get-yargs-completions distnat <words so far>`.
  const completing = args[0] === '--get-yargs-completions';
  const word = (completing ? args.slice(2) : args).find((a) => !a.startsWith('-'));
  let cli = yargs(args)
    .scriptName('distnat')
    .usage(
      '$0 <command> [options]\n\nDistributed NAT: many hosts share one public IPv4 address, no packet rewritten.',
    )
    .strict()
    .demandCommand(1, `Name a command: ${COMMANDS.map((c) => c.name).join(', ')}.`)
    .recommendCommands()
    .completion('completion', 'print a bash or zsh completion script (docs/command-line.md)')
    .help()
    .alias('h', 'help')
    .version(`distnat ${VERSION}`)
    .wrap(helpWidth(process.stdout.columns, process.env.COLUMNS))
    .epilogue(
      'Exit codes: 0 ok, 1 failure, 64 bad command line, 69 daemon or router unreachable,\n' +
        '77 missing privilege (root or CAP_NET_ADMIN/CAP_NET_RAW), 78 bad configuration.',
    )
    // Every command: a number flag given something else is refused here, naming the flag.
    .check(numbersAreNumbers, true)
    .fail((msg, err, y) => {
      // A check() that returns a string hands it over as `msg`: a usage error. A thrown Error is a bug.
      if ((err as unknown) instanceof Error) throw err;
      // The third argument is yargs' usage instance, which knows the command that failed.
      const usage = (y as unknown as { getUsage?: () => [string, string][] }).getUsage?.()[0]?.[0];
      // recommendCommands() says only "Did you mean status?"; say what was not understood first.
      const message = msg.startsWith('Did you mean') ? `Unknown command: ${word}. ${msg}` : msg;
      throw usageError(message, commandOfUsage(usage));
    });
  cli = await registerCommands(cli, word);
  try {
    await cli.parseAsync();
    return process.exitCode === undefined ? ExitCode.OK : Number(process.exitCode);
  } catch (e) {
    if (e instanceof UserError) {
      process.stderr.write(`distnat: ${e.message}\n`);
      return e.exitCode;
    }
    process.stderr.write(`distnat: internal error: ${(e as Error).stack ?? String(e)}\n`);
    return ExitCode.SOFTWARE;
  }
}

const code = await main(hideBin(process.argv));
// Daemons keep the loop alive and exit on their own; one-shot commands end here.
if (code !== ExitCode.OK) process.exit(code);
