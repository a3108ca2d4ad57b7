import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigError, type ConfigProblem } from './config-error.ts';
import { closestKey } from './did-you-mean.ts';
import { rulesOf } from './rules.ts';
import { knownKeysAt, settle, type Settled } from './schema-walk.ts';

export function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let cur = root;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key];
  }
  return cur;
}

const fieldName = (path: readonly PropertyKey[]): string => path.map(String).join('.');

/** A strict object's unknown keys, one problem each, with the key it was probably meant to be. */
function unknownKeys(
  schema: z.ZodType,
  data: unknown,
  issue: z.core.$ZodIssueUnrecognizedKeys,
): ConfigProblem[] {
  const known = knownKeysAt(schema, issue.path);
  return issue.keys.map((key) => {
    const path = [...issue.path, key];
    const near = closestKey(key, known);
    return {
      field: fieldName(path),
      value: valueAt(data, path),
      expected:
        near !== undefined
          ? `unknown field; did you mean ${near}?`
          : `unknown field; expected one of ${known.join(', ')}`,
    };
  });
}

/** Every problem of plain data against a schema and its rules, and the configuration when there are none. */
export function checkConfig<S extends z.ZodType>(
  schema: S,
  data: unknown,
):
  { config: z.output<S>; problems: readonly [] } | { config: undefined; problems: readonly ConfigProblem[] } {
  const result = schema.safeParse(data);
  const problems: ConfigProblem[] = result.success
    ? []
    : result.error.issues.flatMap((issue) =>
        issue.code === 'unrecognized_keys'
          ? unknownKeys(schema, data, issue)
          : issue.path.length === 0
            ? [
                {
                  expected:
                    issue.code === 'invalid_type'
                      ? 'expected a mapping of fields at the top level'
                      : issue.message,
                },
              ]
            : [{ field: fieldName(issue.path), value: valueAt(data, issue.path), expected: issue.message }],
      );
  const view = result.success ? (result.data as Settled<z.output<S>>) : settle(schema, data);
  if (view !== undefined) {
    for (const rule of rulesOf(schema)) {
      rule(view, (path, expected) => {
        const written = valueAt(data, path);
        const settled = valueAt(view, path);
        problems.push(
          written === undefined && settled !== undefined
            ? { field: fieldName(path), value: settled, defaulted: true, expected }
            : { field: fieldName(path), value: written, expected },
        );
      });
    }
  }
  if (problems.length === 0 && result.success) return { config: result.data, problems: [] };
  return { config: undefined, problems };
}

/** Validates plain data (from a file merged with flags) against a schema and its rules, naming every bad field. */
export function validateConfig<S extends z.ZodType>(schema: S, data: unknown, source: string): z.output<S> {
  const checked = checkConfig(schema, data);
  if (checked.config === undefined) throw new ConfigError(source, checked.problems);
  return checked.config;
}

/** Reads a YAML (or JSON, which is YAML) file; syntax errors name the line. */
export function readConfigFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(file, [`cannot read the file: ${(e as Error).message}`]);
  }
  try {
    return parseYaml(text) ?? {};
  } catch (e) {
    throw new ConfigError(file, [(e as Error).message]);
  }
}
