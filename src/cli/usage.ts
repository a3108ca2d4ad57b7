/**
 * Usage errors (exit 64): one line that says what is wrong with the command
 * line, naming the flag, and one line that says where the help is. The
 * whole help screen is what `--help` is for; printed before an error it
 * pushes the error out of sight.
 */
import { isIPv4 } from 'node:net';
import { ExitCode, UserError } from '../util/exit-codes.ts';

/**
 * The width help is wrapped to: the terminal's, at most 110 so that lines
 * stay readable, or $COLUMNS when there is no terminal (as for ls), which is
 * how scripts/man.mjs gets one line per option; 100 otherwise.
 */
export function helpWidth(terminal: number | undefined, columnsVariable: string | undefined): number {
  if (terminal !== undefined) return Math.min(110, terminal);
  const n = Number(columnsVariable);
  return Number.isInteger(n) && n >= 40 ? n : 100;
}

/** "Try 'distnat ca init --help' for more information." */
export const helpHint = (command: string): string => `Try '${command} --help' for more information.`;

/**
 * The command a yargs usage line belongs to: "$0 ca init" and
 * "$0 status [role]" become "distnat ca init" and "distnat status".
 */
export function commandOfUsage(usage: string | undefined, scriptName = 'distnat'): string {
  const words: string[] = [];
  for (const word of (usage ?? '').split('\n')[0]!.trim().split(/\s+/)) {
    if (word === '' || /^[<[-]/.test(word)) break;
    words.push(word === '$0' ? scriptName : word);
  }
  return words.length === 0 || words[0] !== scriptName ? scriptName : words.join(' ');
}

/** A usage error with the hint; `command` is the command whose help explains the flag. */
export function usageError(message: string, command: string): UserError {
  return new UserError(`${message}\n${helpHint(command)}`, ExitCode.USAGE);
}

/**
 * A yargs check (return a string to fail) for every command: a number flag
 * given something that is not a number. yargs turns "--days ten" into NaN
 * and would let it through to the command.
 */
export function numbersAreNumbers(argv: Record<string, unknown>): true | string {
  const bad = Object.keys(argv).filter(
    // yargs also sets the camel-case alias of each dashed flag; name the flag as typed.
    (k) => Number.isNaN(argv[k]) && !(/[A-Z]/.test(k) && dashed(k) in argv),
  );
  if (bad.length === 0) return true;
  return bad.map((k) => `${flag(k)}: expected a number`).join('\n');
}

/** A yargs check that the named flags (or positional arguments, written "<name>") hold IPv4 addresses. */
export function ipv4Flags(...names: string[]): (argv: Record<string, unknown>) => true | string {
  return (argv) => {
    const key = (n: string): string => n.replace(/^<(.*)>$/, '$1');
    const bad = names.filter((n) => argv[key(n)] !== undefined && !isIPv4(String(argv[key(n)])));
    if (bad.length === 0) return true;
    return bad
      .map(
        (n) =>
          `${n.startsWith('<') ? n : flag(n)}: got ${JSON.stringify(argv[key(n)])}; ` +
          'expected an IPv4 address such as 198.51.100.30',
      )
      .join('\n');
  };
}

const dashed = (camel: string): string => camel.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const flag = (key: string): string => (key.length === 1 ? `-${key}` : `--${key}`);
