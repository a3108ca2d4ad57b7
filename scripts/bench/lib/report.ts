/** Plain-text tables and number formats for the benchmarks' output. */

export type Cell = string | number | undefined;

/** Numbers: thousands separated at >= 10000, else up to `digits` decimals; undefined: '-'. */
export function fmt(value: number | undefined, digits = 2): string {
  if (value === undefined || !Number.isFinite(value)) return '-';
  if (Math.abs(value) >= 10_000) return Math.round(value).toLocaleString('en-US');
  if (Math.abs(value) >= 100) return value.toFixed(0);
  return value.toFixed(digits);
}

/** A count: an integer with thousands separators. */
export const count = (value: number | undefined): string =>
  value === undefined || !Number.isFinite(value) ? '-' : Math.round(value).toLocaleString('en-US');

export const pct = (fraction: number | undefined): string =>
  fraction === undefined || !Number.isFinite(fraction) ? '-' : `${(fraction * 100).toFixed(1)}%`;

/** A table: the first column left-aligned, the others right-aligned. */
export function table(header: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const text = [header, ...rows].map((r) => r.map((c) => (typeof c === 'number' ? fmt(c) : (c ?? '-'))));
  const widths = header.map((_, i) => Math.max(...text.map((r) => (r[i] ?? '').length)));
  return text
    .map((r) =>
      r
        .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** "name = 0.xx (goal >= 0.70: met)" */
export function ratioLine(name: string, value: number | undefined, goal: number): string {
  const verdict = value === undefined || !Number.isFinite(value) ? 'n/a' : value >= goal ? 'met' : 'NOT met';
  return `${name} = ${fmt(value)} (goal >= ${goal.toFixed(2)}: ${verdict})`;
}
