import type { IapttRow } from './iaptt.ts';
import type { PortBlockRow } from './port-table.ts';
import type { SpiBlockRow } from './spi-table.ts';

/**
 * Text tables for `distnat status`, with the patent's column headings so the
 * output can be read against FIG. 8, FIG. 21 and FIG. 12.
 */

function render(headings: readonly string[], cells: readonly (readonly string[])[]): string[] {
  const widths = headings.map((h, c) => Math.max(h.length, ...cells.map((row) => row[c]!.length)));
  const line = (row: readonly string[]) =>
    row
      .map((cell, c) => cell.padEnd(widths[c]!))
      .join('  ')
      .trimEnd();
  return [line(headings), ...cells.map(line)];
}

/** FIG. 8: PORT-TO-INTERNAL-NETWORK ADDRESS TABLE. */
export function formatPortTable(rows: readonly PortBlockRow[]): string[] {
  return render(
    ['INTERNAL NETWORK ADDRESS', 'LOWEST PORT', 'NUMBER OF PORTS'],
    rows.map((r) => [r.address, String(r.first), String(r.count)]),
  );
}

/** FIG. 21: SPI-TO-INTERNAL-NETWORK ADDRESS TABLE. */
export function formatSpiTable(rows: readonly SpiBlockRow[]): string[] {
  return render(
    ['INTERNAL NETWORK ADDRESS', 'LOWEST SPI', 'NUMBER OF SPIs'],
    rows.map((r) => [r.address, String(r.first), String(r.count)]),
  );
}

const PROTOCOL_NAMES: Readonly<Record<number, string>> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP' };

/** FIG. 12 / Table 9: IAPTT rows, with the idle time next to the timestamp. */
export function formatIaptt(rows: readonly IapttRow[], now: number): string[] {
  return render(
    ['DESTINATION PORT', 'INTERNAL DESTINATION IP ADDRESS', 'PROTOCOL', 'TIMESTAMP', 'IDLE'],
    rows.map((r) => [
      String(r.port),
      r.address,
      `${r.protocol} (${PROTOCOL_NAMES[r.protocol] ?? '?'})`,
      String(Math.round(r.lastUse)),
      `${Math.max(0, Math.round((now - r.lastUse) / 1000))}s`,
    ]),
  );
}
