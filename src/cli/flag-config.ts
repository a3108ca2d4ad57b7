/**
 * A daemon's configuration is a file with flags on top, validated as one.
 * A bad value is reported where it came from: a field of the file is a
 * configuration error (78, naming the file and the field path), a flag is
 * a usage error (64, naming the flag), so that a script and the person
 * reading the message know which of the two to fix.
 */
import type { z } from 'zod';
import { ConfigError } from '../config/config-error.ts';
import { describeValue, validateConfig, valueAt } from '../config/load.ts';
import { ExitCode, UserError } from '../util/exit-codes.ts';
import { helpHint } from './usage.ts';

/** A flag and the configuration field it sets, e.g. `--ca-port` and `pki.port`. */
export interface FlagField {
  readonly flag: string;
  readonly path: readonly string[];
}

const startsWith = (path: readonly PropertyKey[], prefix: readonly string[]): boolean =>
  prefix.every((p, i) => String(path[i]) === p);

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
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  const fromFlags: string[] = [];
  const fromFile: string[] = [];
  for (const issue of result.error.issues) {
    // The most specific flag: --ca-port over a flag that set the whole pki section, were there one.
    const by = given
      .filter((g) => startsWith(issue.path, g.path))
      .sort((a, b) => b.path.length - a.path.length)[0];
    if (by !== undefined) fromFlags.push(`--${by.flag}: got ${describeValue(by.value)}; ${issue.message}`);
    else {
      const path = issue.path.length ? issue.path.map(String).join('.') : '(top level)';
      fromFile.push(`field \`${path}\`: got ${describeValue(valueAt(data, issue.path))}; ${issue.message}`);
    }
  }
  if (fromFlags.length === 0) return validateConfig(schema, data, source);
  // The file's problems as well, so that one run shows everything there is to fix.
  const alsoFile = fromFile.length === 0 ? '' : `\n${new ConfigError(source, fromFile).message}`;
  throw new UserError(
    `${[...new Set(fromFlags)].join('\n')}${alsoFile}\n${helpHint(command)}`,
    ExitCode.USAGE,
  );
}
