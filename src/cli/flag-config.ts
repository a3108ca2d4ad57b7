/**
 * A daemon's configuration is a file with flags on top, validated as one.
 * A bad value is reported where it came from: a field of the file is a
 * configuration error (78, naming the file and the field path), a flag is
 * a usage error (64, naming the flag), so that a script and the person
 * reading the message know which of the two to fix.
 */
import type { z } from 'zod';
import { ConfigError, describeValue, type ConfigProblem } from '../config/config-error.ts';
import { checkConfig } from '../config/load.ts';
import { ExitCode, UserError } from '../util/exit-codes.ts';
import { helpHint } from './usage.ts';

/** A flag and the configuration field it sets, e.g. `--ca-port` and `pki.port`. */
export interface FlagField {
  readonly flag: string;
  readonly path: readonly string[];
}

const startsWith = (field: string | undefined, prefix: readonly string[]): boolean =>
  field !== undefined && (field === prefix.join('.') || field.startsWith(`${prefix.join('.')}.`));

/**
 * Validates `data` (the file's fields with the flags' values already in
 * place). `given` lists the flags that were on the command line, with the
 * value each had; `command` is named in the hint of a usage error.
 */
export function validateWithFlags<S extends z.ZodType>(
  schema: S,
  data: unknown,
  given: readonly (FlagField & { readonly value: unknown })[],
  source: string,
  command: string,
): z.infer<S> {
  const checked = checkConfig(schema, data);
  if (checked.config !== undefined) return checked.config;
  const fromFlags: string[] = [];
  const fromFile: ConfigProblem[] = [];
  for (const problem of checked.problems) {
    // The most specific flag: --ca-port over a flag that set the whole pki section, were there one.
    const by = given
      .filter((g) => startsWith(problem.field, g.path))
      .sort((a, b) => b.path.length - a.path.length)[0];
    if (by !== undefined) fromFlags.push(`--${by.flag}: got ${describeValue(by.value)}; ${problem.expected}`);
    else fromFile.push(problem);
  }
  if (fromFlags.length === 0) throw new ConfigError(source, fromFile);
  // The file's problems as well, so that one run shows everything there is to fix.
  const alsoFile = fromFile.length === 0 ? '' : `\n${new ConfigError(source, fromFile).message}`;
  throw new UserError(
    `${[...new Set(fromFlags)].join('\n')}${alsoFile}\n${helpHint(command)}`,
    ExitCode.USAGE,
  );
}
