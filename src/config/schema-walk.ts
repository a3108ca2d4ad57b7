import { z } from 'zod';

/**
 * Reading a configuration schema's structure: the object at a path (to name
 * the keys an unknown one could have meant) and the part of some data that
 * is valid field by field (so that rules between fields still run when an
 * unrelated field is wrong, and every problem is reported at once).
 */

/** An object schema inside optional, default and prefault wrappers, or undefined. */
function objectOf(schema: z.ZodType): z.ZodObject | undefined {
  let s: z.ZodType = schema;
  for (;;) {
    if (s instanceof z.ZodObject) return s;
    if (
      s instanceof z.ZodOptional ||
      s instanceof z.ZodNullable ||
      s instanceof z.ZodDefault ||
      s instanceof z.ZodPrefault
    )
      s = s.unwrap() as z.ZodType;
    else return undefined;
  }
}

function arrayOf(schema: z.ZodType): z.ZodArray | undefined {
  let s: z.ZodType = schema;
  for (;;) {
    if (s instanceof z.ZodArray) return s;
    if (s instanceof z.ZodOptional || s instanceof z.ZodDefault || s instanceof z.ZodPrefault)
      s = s.unwrap() as z.ZodType;
    else return undefined;
  }
}

/** The keys the object schema at `path` knows (array indexes step into the element), or []. */
export function knownKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let s: z.ZodType | undefined = schema;
  for (const key of path) {
    if (s === undefined) return [];
    const o = objectOf(s);
    s =
      o !== undefined
        ? (o.shape[String(key)] as z.ZodType | undefined)
        : (arrayOf(s)?.element as z.ZodType | undefined);
  }
  const o = s === undefined ? undefined : objectOf(s);
  return o === undefined ? [] : Object.keys(o.shape);
}

/**
 * A configuration as the rules between fields see it: every field may be
 * missing, because it was wrong (and is reported as such) or absent without
 * a default. Arrays keep their indexes; a wrong element is undefined.
 */
export type Settled<T> = T extends readonly unknown[]
  ? number extends T['length']
    ? readonly (Settled<T[number]> | undefined)[]
    : T
  : T extends object
    ? { readonly [K in keyof T]?: Settled<T[K]> }
    : T;

const WRONG = Symbol('wrong');

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function settleValue(schema: z.ZodType, value: unknown): unknown {
  const whole = schema.safeParse(value);
  if (whole.success) return whole.data;
  const o = objectOf(schema);
  if (o !== undefined && (value === undefined || isRecord(value))) {
    const out: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(o.shape)) {
      const v = settleValue(field as z.ZodType, value?.[key]);
      if (v !== WRONG && v !== undefined) out[key] = v;
    }
    return out;
  }
  const a = arrayOf(schema);
  if (a !== undefined && Array.isArray(value)) {
    return value.map((e) => {
      const v = settleValue(a.element as z.ZodType, e);
      return v === WRONG ? undefined : v;
    });
  }
  return WRONG;
}

/**
 * The fields of `data` that are valid on their own, with the schema's
 * defaults filled in; undefined when the data is not even a mapping.
 */
export function settle<S extends z.ZodType>(schema: S, data: unknown): Settled<z.output<S>> | undefined {
  const v = settleValue(schema, data);
  return v === WRONG ? undefined : (v as Settled<z.output<S>>);
}
