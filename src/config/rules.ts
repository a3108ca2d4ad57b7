import type { z } from 'zod';
import type { Settled } from './schema-walk.ts';

/**
 * Rules between the fields of a configuration file, which a schema of
 * single fields cannot say (the shared address is not the LAN address; the
 * block size divides the port range). A file kind's rules are kept with its
 * schema (withRules), so that whatever validates that schema, `distnat
 * check` or a daemon at start, runs them too.
 */

/** Says that the field at `path` is wrong and what was expected of it. */
export type Report = (path: readonly (string | number)[], expected: string) => void;

/**
 * One rule. It sees only the fields that are valid on their own (the others
 * are reported already), so it must let a missing field pass.
 */
export type Rule<T> = (config: Settled<T>, report: Report) => void;

const RULES = new WeakMap<z.ZodType, readonly unknown[]>();

/** Keeps `rules` with `schema`; validateConfig runs them after the schema. */
export function withRules<S extends z.ZodType>(schema: S, rules: readonly Rule<z.output<S>>[]): S {
  RULES.set(schema, rules);
  return schema;
}

/** The rules kept with a schema ([] for none). */
export function rulesOf<S extends z.ZodType>(schema: S): readonly Rule<z.output<S>>[] {
  return (RULES.get(schema) ?? []) as readonly Rule<z.output<S>>[];
}
