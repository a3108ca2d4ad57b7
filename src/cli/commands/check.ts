import type { Argv } from 'yargs';
import type { CommandMeta } from './command-meta.ts';
import { ConfigError, formatProblem } from '../../config/config-error.ts';
import { ExitCode } from '../../util/exit-codes.ts';
import { FILE_KINDS, checkFiles, type FileKind, type FileReport } from './check-file.ts';

const WHAT: Record<FileKind, string> = {
  router: 'a `distnat router --config` file',
  host: 'a `distnat host --config` file (and the ipsec/ike files it names)',
  ipsec: 'a manual keying file (host --ipsec, peer --ipsec / --mirror)',
  ike: 'an IKE file (host --ike, peer --ike)',
};

const label = (r: FileReport): string =>
  r.namedBy === undefined ? r.file : `${r.file} (named by ${r.namedBy})`;

/** The text a person reads: one line per good file on stdout, the daemon's own message per bad one on stderr. */
function printText(reports: readonly FileReport[]): void {
  for (const r of reports) {
    if (r.ok) {
      const notes = r.notes.length > 0 ? `; ${r.notes.join('; ')}` : '';
      process.stdout.write(`${label(r)}: ok (${r.summary})${notes}\n`);
    } else {
      process.stderr.write(`${new ConfigError(label(r), r.problems).message}\n`);
    }
  }
}

function printJson(reports: readonly FileReport[]): void {
  const files = reports.map((r) => ({
    ...r,
    problems: r.problems.map((p) => ({ ...p, message: formatProblem(p) })),
  }));
  process.stdout.write(JSON.stringify({ ok: reports.every((r) => r.ok), files }, null, 2) + '\n');
}

export function checkCommand(y: Argv, meta: CommandMeta) {
  return y.command(
    meta.usage,
    meta.describe,
    (a) => {
      let b = a;
      for (const kind of FILE_KINDS)
        b = b.option(kind, { type: 'string', array: true, requiresArg: true, describe: WHAT[kind] });
      return (
        b
          .option('json', {
            type: 'boolean',
            default: false,
            describe: 'print the results as JSON, for scripts',
          })
          // A string, not a throw: main.ts takes a thrown error for a bug (exit 70), a string for usage (64).
          .check((argv) =>
            FILE_KINDS.some((k) => (argv[k] as unknown[] | undefined)?.length)
              ? true
              : 'name a file: --router, --host, --ipsec or --ike',
          )
          .example(
            '$0 check --router /etc/distnat/router.yaml',
            'what the router would refuse at start, all of it',
          )
          .example(
            '$0 check --host /etc/distnat/host.yaml --ike /etc/distnat/peer-ike.yaml',
            'a host file (with the IKE file it names) and another IKE file at once',
          )
          .example(
            '$0 check --json --router router.yaml | jq .files[0].problems',
            'the problems, for a script',
          )
          .epilogue(
            'Runs the checks the daemons run at start, without privileges and without touching anything:\n' +
              'files are read, nothing is bound, opened or written. Every problem is printed (field, value\n' +
              'found, what was expected); an unknown key names the known key closest to it.\n' +
              'Exit codes: 0 every file is valid (one "ok" line each), 78 any file is not, 64 bad command line.',
          )
      );
    },
    (argv) => {
      const given = FILE_KINDS.flatMap((kind) =>
        ((argv[kind] as unknown[] | undefined) ?? []).map((file) => ({ kind, file: String(file) })),
      );
      const reports = checkFiles(given);
      if (argv.json) printJson(reports);
      else printText(reports);
      if (!reports.every((r) => r.ok)) process.exitCode = ExitCode.CONFIG;
    },
  );
}
