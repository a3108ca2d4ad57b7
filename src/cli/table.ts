/**
 * Aligned plain-text tables for `distnat status`: the live tables are printed
 * with the patent's columns (FIG. 8, 11, 12, 21) so they can be read beside it.
 */
import type { StatusTable } from '../control/status.ts';

export function formatTable(t: StatusTable): string {
  const cells = [t.columns, ...t.rows.map((r) => r.map(String))];
  const widths = t.columns.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  const out = [t.title, line(t.columns), line(widths.map((w) => '-'.repeat(w)))];
  if (t.rows.length === 0) out.push('(empty)');
  else for (const r of t.rows) out.push(line(r.map(String)));
  return out.join('\n');
}

export function formatCounters(title: string, counters: Record<string, number>): string {
  const names = Object.keys(counters).sort();
  if (names.length === 0) return `${title}\n(none)`;
  const w = Math.max(...names.map((n) => n.length));
  return [title, ...names.map((n) => `${n.padEnd(w)}  ${counters[n]}`)].join('\n');
}
