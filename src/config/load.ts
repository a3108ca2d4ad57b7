import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from './config-error.ts';

export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + '...' : s;
}

export function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let cur = root;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key];
  }
  return cur;
}

/** Validates plain data (from a file merged with flags) against a schema, naming every bad field. */
export function validateConfig<S extends z.ZodType>(schema: S, data: unknown, source: string): z.infer<S> {
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const path = issue.path.length ? issue.path.map(String).join('.') : '(top level)';
    return `field \`${path}\`: got ${describeValue(valueAt(data, issue.path))}; ${issue.message}`;
  });
  throw new ConfigError(source, problems);
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
