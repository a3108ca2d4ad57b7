/**
 * What a daemon publishes on its control socket for `distnat status`: a
 * summary, the live tables with the patent's columns (FIG. 8, 11, 12, 21) so
 * they can be read beside it, and its counters. Daemons build these values;
 * the command line only renders them.
 */

/** One table of a status answer, printed aligned by `distnat status`. */
export interface StatusTable {
  title: string;
  columns: string[];
  rows: (string | number)[][];
}

/** What a daemon answers to `status`: tables to print and counters. */
export interface DaemonStatus {
  role: string;
  summary: Record<string, string | number>;
  tables: StatusTable[];
  counters: Record<string, number>;
}
