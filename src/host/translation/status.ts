import type { SpttRow } from './sptt.ts';

const PROTOCOL_NAMES: Readonly<Record<number, string>> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP' };

/** FIG. 11 / Table 7 as text for `distnat status`, with the timer class and time left. */
export function formatSptt(rows: readonly SpttRow[], now: number): string[] {
  const headings = ['DEFAULT PORT', 'TRANSLATED PORT', 'PROTOCOL', 'TIMESTAMP', 'TIMER', 'EXPIRES IN'];
  const cells = rows.map((r) => [
    String(r.localPort),
    String(r.leasedPort),
    `${r.protocol} (${PROTOCOL_NAMES[r.protocol] ?? '?'})`,
    String(Math.round(r.lastUse)),
    r.timer,
    `${Math.max(0, Math.round((r.expiresAt - now) / 1000))}s`,
  ]);
  const widths = headings.map((h, c) => Math.max(h.length, ...cells.map((row) => row[c]!.length)));
  const line = (row: readonly string[]) =>
    row
      .map((cell, c) => cell.padEnd(widths[c]!))
      .join('  ')
      .trimEnd();
  return [line(headings), ...cells.map(line)];
}
